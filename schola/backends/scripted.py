"""Deterministic replies from rules or a recorded transcript: the backend of unit tests and engine benchmarks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autogen_core.models import LLMMessage

from schola import sandbox, templates
from schola.backends.base import Completion, ScholaClient, to_dicts
from schola.backends.config import ScriptedConfig
from schola.errors import ConfigError
from schola.types import CallInfo

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


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
        fixed = self._constant if not self._rules and not self._replay else None
        self._fixed = None if fixed is None else (fixed, len(fixed.split()))
        blob = self.config.model_dump_json(include={"rules", "default", "transcript"})
        self._identity = "scripted:" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def identity(self) -> str:
        return self._identity

    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        if self.config.latency_s:
            await asyncio.sleep(self.config.latency_s)
        prompt, system, words = "", None, 0
        for m in messages:  # the last user message, the first system message, and every message's words
            words += len(m["content"].split())
            if m["role"] == "user":
                prompt = m["content"]
            elif m["role"] == "system" and system is None:
                system = m["content"]
        if self._fixed is not None:  # a fixed reply (no rules, no transcript): its words counted once
            return Completion(self._fixed[0], words, self._fixed[1])
        text = self._replay.get(prompt)
        if text is None:
            text = self._render(prompt, system or "", info)
        return Completion(text=text, prompt_tokens=words, completion_tokens=len(text.split()))

    def _render(self, prompt: str, system: str, info: CallInfo) -> str:
        if not self._rules and self._constant is not None:  # a fixed reply: nothing to match or render
            return self._constant

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
