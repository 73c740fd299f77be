"""Deterministic replies from rules or a recorded transcript: the backend of unit tests and engine benchmarks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from schola.backends.base import BackendConfig, Completion, ScholaClient
from schola.types import CallInfo

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class Rule(BaseModel):
    """Reply with `reply` (a Jinja2 template) when `match` (a regex) is found in the last user message."""

    model_config = ConfigDict(extra="forbid")
    match: str = ""
    role: str | None = Field(None, description="only for this role")
    reply: str


class ScriptedConfig(BackendConfig):
    kind: Literal["scripted"] = "scripted"
    max_concurrency: int = 1024
    rules: list[Rule] = Field(default_factory=list)
    default: str = "{{ prompt }}"
    transcript: str | None = Field(None, description="a transcript.jsonl whose replies are replayed by prompt")
    latency_s: float = Field(0.0, ge=0, description="simulated time per request")


class ScriptedClient(ScholaClient):
    """Replies are templates rendered with `prompt`, `system`, `match`, `role`, `sample`, `seed`, and the helpers
    `numbers(text)` (the numbers in a text) and `pick(items)` (one item, chosen by prompt, seed and sample)."""

    Config = ScriptedConfig
    config: ScriptedConfig

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        env = SandboxedEnvironment()
        self._rules = [(re.compile(r.match), r.role, env.from_string(r.reply)) for r in self.config.rules]
        self._default = env.from_string(self.config.default)
        self._constant = None if "{" in self.config.default else self.config.default
        self._replay: dict[str, str] = {}
        if self.config.transcript:
            for line in Path(self.config.transcript).read_text().splitlines():
                rec = json.loads(line)
                self._replay.setdefault(rec["prompt"], rec["text"])
        blob = self.config.model_dump_json(include={"rules", "default", "transcript"})
        self._identity = "scripted:" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def identity(self) -> str:
        return self._identity

    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        if self.config.latency_s:
            await asyncio.sleep(self.config.latency_s)
        prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        text = self._replay.get(prompt)
        if text is None:
            text = self._render(prompt, system, info)
        words = sum(len(m["content"].split()) for m in messages)
        return Completion(text=text, prompt_tokens=words, completion_tokens=len(text.split()))

    def _render(self, prompt: str, system: str, info: CallInfo) -> str:
        def pick(items: list[Any]) -> Any:
            if not items:
                return ""
            h = hashlib.sha256(f"{prompt}|{info.seed}|{info.sample}".encode()).digest()
            return list(items)[int.from_bytes(h[:4], "big") % len(items)]

        ctx = {"prompt": prompt, "system": system, "role": info.role, "sample": info.sample, "seed": info.seed}
        ctx |= {"pick": pick, "numbers": lambda s: [int(float(x)) for x in _NUMBER.findall(str(s))]}
        for pattern, role, template in self._rules:
            if role not in (None, info.role):
                continue
            if (m := pattern.search(prompt)) is not None:
                return template.render(ctx, match=m)
        if self._constant is not None:
            return self._constant
        return self._default.render(ctx, match=None)
