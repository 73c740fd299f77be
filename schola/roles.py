"""A role is a persona (name, system prompt, backend, sampling) that can `act`. Built-in roles live in
`schola.agents`; every role, built-in or a plugin's, is found through the `schola.roles` entry points."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from autogen_core.models import ChatCompletionClient, SystemMessage, UserMessage
from pydantic import BaseModel, ConfigDict, Field

from schola import templates
from schola.backends.base import ScholaClient
from schola.types import CallInfo


class RoleConfig(BaseModel):
    """Keys of a role in `scenario.roles`; a role class may subclass it with keys of its own."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="a registered role: teacher, student, judge, or a plugin's")
    name: str | None = Field(None, description="name of a member of a role group (default: group.index)")
    persona: str = ""
    system: str | None = Field(None, description="system prompt template; default: the role's own")
    backend: str | None = Field("default", description="a backend name; null for a role without a model")
    sampling: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens, top_p, stop")
    samples: int = Field(1, ge=1, description="how many samples a scenario draws from this role")


@dataclass
class Reply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    latency_s: float = 0.0


class Role:
    """A persona that answers prompts through a model client (any AutoGen ChatCompletionClient).

    Args:
        name: the role's name in the scenario (`teacher`, `students.1`).
        config: its validated config.
        client: the model client, or None for a role without a model.
        seed: the run seed, passed to the backend for cache keys and sampling.
    """

    Config: ClassVar[type[RoleConfig]] = RoleConfig
    system_prompt: ClassVar[str] = "{{ persona }}"

    def __init__(self, name: str, config: RoleConfig, client: ChatCompletionClient | None, *, seed: int = 0) -> None:
        self.name, self.config, self.client, self.seed = name, config, client, seed
        self.system = templates.render(config.system or self.system_prompt, {"persona": config.persona, "name": name})
        self._system = [SystemMessage(content=self.system)] if self.system.strip() else []

    def describe(self) -> dict[str, Any]:
        """What templates see as `roles.<name>`."""
        return {**self.config.model_dump(exclude={"system"}), "name": self.name}

    async def act(self, prompt: str, *, sample: int = 0, sampling: dict[str, Any] | None = None) -> Reply:
        """Answer `prompt` in character. Override for a role without a model."""
        if self.client is None:
            raise NotImplementedError(f"role '{self.name}' has no backend and does not override act()")
        messages = [*self._system, UserMessage(content=prompt, source="user")]
        args: dict[str, Any] = {**self.config.sampling, **(sampling or {})}
        if isinstance(self.client, ScholaClient):
            args["schola"] = CallInfo(role=self.name, sample=sample, seed=self.seed)
        else:  # another AutoGen client: K samples still get K seeds
            args["seed"] = self.seed * 1_000_003 + sample
        start = time.perf_counter()
        out = await self.client.create(messages, extra_create_args=args)
        return Reply(
            text=out.content if isinstance(out.content, str) else str(out.content),
            prompt_tokens=out.usage.prompt_tokens,
            completion_tokens=out.usage.completion_tokens,
            cached=out.cached,
            latency_s=time.perf_counter() - start,
        )
