"""Deterministic replies from rules or a recorded transcript: the backend of unit tests and engine benchmarks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from autogen_core.models import LLMMessage
from pydantic import BaseModel, ConfigDict, Field, field_validator

from schola import sandbox, templates
from schola.backends.base import BackendConfig, Completion, Concurrency, Retries, ScholaClient, TimeoutS, to_dicts
from schola.errors import ConfigError
from schola.types import CallInfo

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
#: The names a reply template sees.
REPLY_NAMES = frozenset({"prompt", "system", "role", "sample", "seed", "match", "pick", "numbers"})


def _template(source: str) -> str:
    """A reply template, checked as a prompt is (the same sandbox: a scenario's scripted rules are untrusted too):
    what `check` refuses in a prompt, or a name a reply does not see, is refused here, before the run."""
    try:
        templates.check(source)
        unknown = templates.variables(source) - REPLY_NAMES
    except ConfigError as e:
        raise ValueError(e.detail) from None
    if unknown:
        raise ValueError(
            f"reply template {source[:60]!r} reads {', '.join(sorted(unknown))}; a reply sees "
            f"{', '.join(sorted(REPLY_NAMES))}"
        )
    return source


class Rule(BaseModel):
    """Reply with `reply` (a Jinja2 template) when `match` (a regex) is found in the last user message; with
    `probs`, a step asking for option probabilities gets these (normalised over its options)."""

    model_config = ConfigDict(extra="forbid")
    match: str = ""
    role: str | None = Field(None, description="only for this role")
    reply: str = ""
    probs: dict[str, float] | None = Field(None, description="option -> probability, for steps with options")

    @field_validator("match")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            sandbox.pattern(v)
        except ConfigError as e:
            raise ValueError(e.detail) from None
        return v

    @field_validator("reply")
    @classmethod
    def _reply(cls, v: str) -> str:
        return _template(v)


class ScriptedConfig(BackendConfig):
    kind: Literal["scripted"] = "scripted"
    max_concurrency: Concurrency = 1024
    timeout_s: TimeoutS = 60.0
    max_retries: Retries = 0
    rules: list[Rule] = Field(default_factory=list)
    default: str = Field("{{ prompt }}", description="the reply when no rule matches (echo)")
    transcript: str | None = Field(None, description="a transcript.jsonl whose replies are replayed by prompt")
    latency_s: float = Field(0.0, ge=0, le=3600, description="simulated time per request")

    @field_validator("default")
    @classmethod
    def _default(cls, v: str) -> str:
        return _template(v)

    @field_validator("transcript")
    @classmethod
    def _transcript(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"transcript {v!r} is not a file")
        return v


class ScriptedClient(ScholaClient):
    """Replies are templates rendered with `prompt`, `system`, `match`, `role`, `sample`, `seed`, and the helpers
    `numbers(text)` (the numbers in a text) and `pick(items)` (one item, chosen by prompt, seed and sample)."""

    Config = ScriptedConfig
    config: ScriptedConfig

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._where = "backend" if self.name == "default" else f"backends.{self.name}"
        self._rules = [(r.match, r.role, r.reply, r.probs) for r in self.config.rules]
        self._constant = None if "{" in self.config.default else self.config.default
        self._replay: dict[str, str] = {}
        if self.config.transcript:
            for line in Path(self.config.transcript).read_bytes().splitlines():
                try:
                    rec = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue  # a torn or damaged line replays nothing
                if isinstance(rec, dict) and isinstance(rec.get("prompt"), str) and isinstance(rec.get("text"), str):
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
        for i, (pattern, role, reply, _) in enumerate(self._rules):
            if role not in (None, info.role):
                continue
            if (m := self._search(i, pattern, prompt)) is not None:
                return self._render_safely(reply, {**ctx, "match": m}, key=f"{self._where}.rules[{i}].reply")
        if self._constant is not None:
            return self._constant
        return self._render_safely(self.config.default, {**ctx, "match": None}, key=f"{self._where}.default")

    def _search(self, i: int, pattern: str, prompt: str) -> Any:
        try:
            return sandbox.search(pattern, prompt)
        except ConfigError as e:  # a pattern too slow on this prompt: the rule's fault, not the backend's
            raise ConfigError(e.detail, key=f"{self._where}.rules[{i}].match") from None

    @staticmethod
    def _render_safely(reply: str, ctx: dict[str, Any], *, key: str) -> str:
        """A rule's template failing on this prompt is the rule's fault: a config error (a backend error would
        end the run with a resume hint, and resuming the same rules cannot help)."""
        try:
            return templates.render(reply, ctx, key=key)
        except ConfigError as e:
            raise ConfigError(f"scripted rule failed on this prompt: {e.detail}", key=key) from None

    async def option_probs(
        self, messages: Sequence[LLMMessage], options: Sequence[str], *, info: CallInfo
    ) -> tuple[dict[str, float], str] | None:
        """The first matching rule's `probs`, normalised over the options (none: estimate from samples)."""
        prompt = next((m["content"] for m in reversed(to_dicts(messages)) if m["role"] == "user"), "")
        for i, (pattern, role, _, probs) in enumerate(self._rules):
            if role in (None, info.role) and self._search(i, pattern, prompt) is not None:
                if probs is None:
                    return None
                mass = {o: max(0.0, float(probs.get(o, 0.0))) for o in options}
                total = sum(mass.values())
                return (
                    {o: m / total for o, m in mass.items()} if total else {o: 1 / len(options) for o in options}
                ), "scripted"
        return None
