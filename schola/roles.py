"""A role is a persona (name, system prompt, backend, sampling) that can `act`. Built-in roles live in
`schola.agents`; every role, built-in or a plugin's, is found through the `schola.roles` entry points."""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from schola import templates
from schola.errors import ConfigError
from schola.types import CallInfo

if TYPE_CHECKING:  # autogen_core and the backends (aiohttp) load when a role is built, not for `schola check`
    from autogen_core.models import ChatCompletionClient, LLMMessage


class RoleConfig(BaseModel):
    """Keys of a role in `scenario.roles`; a role class may subclass it with keys of its own."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="a registered role: teacher, student, judge, or a plugin's")
    name: str | None = Field(None, description="name of a member of a role group (default: group.index)")
    persona: str = ""
    system: str | None = Field(None, description="system prompt template; default: the role's own")
    backend: str | None = Field("default", description="a backend name; null for a role without a model")
    sampling: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens, top_p, stop")
    samples: int = Field(1, ge=1, le=100_000, description="how many samples a scenario draws from this role")
    option_samples: int = Field(
        8, ge=1, le=1000, description="samples that estimate option probabilities when a backend has no logprobs"
    )


@dataclass
class Reply:
    """What a role says.

    Args:
        text: the reply's text (what the transcript shows).
        data: structured output of a role without a model (a step's output is `data` when it is not None).
        option_probs: the probability of each option, when the step asked for `options`.
        probs_source: how `option_probs` was found: logprobs, samples or scripted.
        cost_usd: what the reply cost, where the backend prices its tokens (0 from the cache).
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    latency_s: float = 0.0
    data: Any = None
    option_probs: dict[str, float] | None = None
    probs_source: str | None = None
    cost_usd: float | None = None


@dataclass(frozen=True, kw_only=True)
class ActRequest:
    """What a step asks of a role: one object, so a field added later never breaks a role written before it
    (a role reads the fields it knows).

    Args:
        prompt: the rendered prompt.
        sample: the sample index (a loop's passes and K samples are different samples).
        sampling: the step's sampling over the role's own (temperature, max_tokens, top_p, stop).
        options: answer options whose probabilities the reply should carry (`Reply.option_probs`).
        generate: False: no text, only the option probabilities; the reply is the most likely option.
        state: the episode's state, read-only, for a role class with `sees_state = True` (else None).
    """

    prompt: str
    sample: int = 0
    sampling: Mapping[str, Any] = field(default_factory=dict)
    options: tuple[str, ...] | None = None
    generate: bool = True
    state: Mapping[str, Any] | None = None

    @classmethod
    def of(
        cls, prompt: str, sample: int, sampling: Mapping[str, Any], options: tuple[str, ...] | None, generate: bool,
        state: Mapping[str, Any] | None,
    ) -> ActRequest:  # fmt: skip
        """The engine's request per reply, every field given: the same object as the constructor's, in half its time
        (a frozen dataclass's __init__ sets each field through object.__setattr__)."""
        request = object.__new__(cls)
        object.__setattr__(request, "__dict__", {"prompt": prompt, "sample": sample, "sampling": sampling,
                                                 "options": options, "generate": generate, "state": state})  # fmt: skip
        return request


class Role:
    """A persona that answers prompts through a model client (any AutoGen ChatCompletionClient).

    Args:
        name: the role's name in the scenario (`teacher`, `students.1`).
        config: its validated config.
        client: the model client, or None for a role without a model.
        seed: the run seed, passed to the backend for cache keys and sampling.

    A subclass that sets `sees_state = True` gets the episode's state (read-only) as `request.state`, so it
    can check its reply against the episode (a Socratic tutor that knows the answer) without the prompt
    carrying it.
    """

    Config: ClassVar[type[RoleConfig]] = RoleConfig
    system_prompt: ClassVar[str] = "{{ persona }}"
    sees_state: ClassVar[bool] = False

    def __init__(self, name: str, config: RoleConfig, client: ChatCompletionClient | None, *, seed: int = 0) -> None:
        from autogen_core.models import SystemMessage

        from schola.backends.base import ScholaClient

        self.name, self.config, self.client, self.seed = name, config, client, seed
        self.system = templates.render(config.system or self.system_prompt, {"persona": config.persona, "name": name})
        self._system: list[LLMMessage] = [SystemMessage(content=self.system)] if self.system.strip() else []
        self._dicts = [{"role": "system", "content": self.system}] if self._system else []  # as to_dicts gives them
        # Found once, not per reply (an import statement and an ABC's isinstance took a fiftieth of a message):
        self._schola: ScholaClient | None = client if isinstance(client, ScholaClient) else None
        self._info0 = CallInfo(name, 0, seed)  # sample 0's (most replies)

    def describe(self) -> dict[str, Any]:
        """What templates see as `roles.<name>`."""
        return {**self.config.model_dump(exclude={"system"}), "name": self.name}

    async def act(self, request: ActRequest) -> Reply:
        """Answer `request.prompt` in character; with `request.options`, also the probability of each option
        (with `generate=False` only that: the reply is the most likely option). A role without a model
        overrides this."""
        start = time.perf_counter()
        info = self._info0 if request.sample == 0 else CallInfo(self.name, request.sample, self.seed)
        if (client := self._schola) is not None and client is self.client and not request.options:
            # dicts in, no AutoGen objects built
            sampling = request.sampling
            args = {**self.config.sampling, **sampling} if sampling or self.config.sampling else {}
            done, cached = await client.reply([*self._dicts, {"role": "user", "content": request.prompt}], args, info)
            cost = done.cost_usd  # (cost_of: none without a price, nothing from the cache)
            return Reply(done.text, done.prompt_tokens, done.completion_tokens, cached, time.perf_counter() - start,
                         cost_usd=None if cost is None else 0.0 if cached else cost)  # fmt: skip
        from schola.backends.base import ScholaClient

        if self.client is None:  # check_role_class refuses this before a run
            raise ConfigError(f"role '{self.name}' has no backend and its class does not override act()")
        args = {**self.config.sampling, **request.sampling}
        from autogen_core.models import UserMessage

        messages: list[LLMMessage] = [*self._system, UserMessage(content=request.prompt, source="user")]
        if isinstance(self.client, ScholaClient):
            args["schola"] = info
        else:  # another AutoGen client: K samples still get K seeds
            args["seed"] = self.seed * 1_000_003 + request.sample
        options = list(request.options or ())
        if options and not request.generate:
            probs, source = await self.option_probs(messages, options, info, args)
            best = max(options, key=lambda o: probs.get(o, 0.0))
            return Reply(text=best, latency_s=time.perf_counter() - start, option_probs=probs, probs_source=source)
        out = await self.client.create(messages, extra_create_args=args)
        reply = Reply(
            text=out.content if isinstance(out.content, str) else str(out.content),
            prompt_tokens=out.usage.prompt_tokens,
            completion_tokens=out.usage.completion_tokens,
            cached=out.cached,
            latency_s=time.perf_counter() - start,
            cost_usd=getattr(out, "cost_usd", None),
        )
        if options:
            reply.option_probs, reply.probs_source = await self.option_probs(messages, options, info, args)
        return reply

    async def option_probs(
        self, messages: list[Any], options: list[str], info: CallInfo, args: dict[str, Any]
    ) -> tuple[dict[str, float], str]:
        """The model's probability of each option: from token log-probabilities where the backend has them,
        else the share of `option_samples` samples that answer with each option."""
        from schola.backends.base import ScholaClient, option_of

        if isinstance(self.client, ScholaClient):
            found = await self.client.option_probs(messages, options, info=info)
            if found is not None:
                return found
        assert self.client is not None
        counts = dict.fromkeys(options, 0)
        k = self.config.option_samples
        for i in range(k):
            sample_args = {**args, "temperature": 1.0, "max_tokens": 8}
            if isinstance(self.client, ScholaClient):
                sample_args["schola"] = CallInfo(role=info.role, sample=info.sample * 10_007 + 1 + i, seed=info.seed)
            else:
                sample_args["seed"] = self.seed * 1_000_003 + info.sample * 10_007 + 1 + i
            out = await self.client.create(messages, extra_create_args=sample_args)
            picked = option_of(str(out.content), options)
            if picked is not None:
                counts[picked] += 1
        total = sum(counts.values())
        if total == 0:
            return {o: 1.0 / len(options) for o in options}, "samples"
        return {o: c / total for o, c in counts.items()}, "samples"


LEGACY_ACT = frozenset({"prompt", "sample", "sampling"})


def check_role_class(cls: type[Role], config: RoleConfig, *, key: str, file: str | None = None) -> None:
    """Before any model call: the class's `act` takes an ActRequest, and a role without a backend has an `act`
    of its own. ConfigError naming the role key and the class otherwise."""
    name = f"{cls.__module__}:{cls.__qualname__}"
    try:
        params = list(inspect.signature(cls.act).parameters)
    except (TypeError, ValueError):
        params = []
    if LEGACY_ACT & set(params[1:]):
        raise ConfigError(
            f"role class {name} defines act({', '.join(params[1:])}), the contract before ActRequest; write "
            "`async def act(self, request: ActRequest) -> Reply` and read request.prompt, request.sample, "
            "request.sampling, request.options, request.state (from schola import ActRequest)",
            key=key,
            file=file,
        )
    if config.backend is None and cls.act is Role.act:
        raise ConfigError(
            f"role class {name} answers through a model and this role has backend: null; give it a backend",
            key=f"{key}.backend",
            file=file,
        )
