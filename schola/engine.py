"""The episode engine: a plan's clients, roles and scorers, and one episode run through its graph.

It writes only to what it is given (a transcript sink and a ledger), so the run driver (sink: the run
directory) and a Ray worker (sink: lines kept for the driver) use it alike, and it imports neither of them.

An episode that raises is a failed episode, not a failed run: `run_episode` raises `EpisodeFailed` carrying its
results record (inputs, the step that failed, the error). What is not the episode's own fault (a budget reached,
a backend down for good, Ctrl-C) is raised as itself and stops the run."""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
from collections.abc import Mapping, Sequence
from types import CoroutineType, MappingProxyType
from typing import Any, Protocol

from schola import plugins
from schola.aio import gather_all
from schola.backends.base import ScholaClient
from schola.backends.cache import Cache, default_cache_dir
from schola.errors import BackendError, BudgetExceeded, ConfigError, PluginError, ScholaError
from schola.graph import StepError
from schola.metrics import metric_key
from schola.plan import Plan, wants_context
from schola.roles import ActRequest, Reply, Role
from schola.scorers import Score
from schola.types import TIMING, Ledger, Timing

log = logging.getLogger("schola")


class TranscriptSink(Protocol):
    """Where the engine writes a transcript line per model reply (the run directory, or a Ray worker's buffer)."""

    def transcript(self, line: dict[str, Any]) -> object: ...  # (what it returns is its own)


class EpisodeFailed(Exception):
    """An episode raised: `record` is its results line (with `error`: step, type, message); `cause` what it raised
    (None once it has crossed a process boundary)."""

    def __init__(self, record: dict[str, Any], cause: BaseException | None = None) -> None:
        err = record["error"]
        super().__init__(f"episode '{record['episode']}' failed at step '{err['step']}': {err['message']}")
        self.record, self.cause = record, cause

    @property
    def config_error(self) -> bool:
        """A configuration problem (exit 2) rather than a bug in Schola or a plugin (exit 1)."""
        return bool(self.record["error"]["type"] == "ConfigError")


class Episode:
    """One episode's context for the graph: roles answer, scorers score, replies go to the transcript."""

    def __init__(self, engine: EpisodeEngine, episode_id: str, round: int = 0) -> None:
        self.engine, self.id, self.round = engine, episode_id, round
        self.scores: dict[str, list[Any]] = {}
        self.details: dict[str, list[dict[str, Any]]] = {}  # a score's answer, explanation, metadata, by key
        self.node = "-"

    async def act(
        self,
        role: str,
        prompt: str,
        *,
        node: str = "-",
        sample: int = 0,
        sampling: dict[str, Any] | None = None,
        options: Sequence[str] | None = None,
        state: Mapping[str, Any] | None = None,
        generate: bool = True,
    ) -> Reply:
        node = node if node != "-" else self.node
        engine = self.engine
        actor = engine.roles.get(role)
        if actor is None:
            raise ConfigError(
                f"step '{node}' of episode '{self.id}' names unknown role '{role}'; "
                f"the scenario has {', '.join(engine.roles)}"
            )
        request = ActRequest.of(
            prompt, sample, dict(sampling) if sampling else {}, tuple(options) if options is not None else None,
            generate, MappingProxyType(dict(state)) if actor.sees_state and state is not None else None,
        )  # fmt: skip
        iteration = state.get("iteration", 0) if state is not None else 0  # read before any await
        timing = Timing()  # the role's requests add their service and queue time to it
        token = TIMING.set(timing)
        try:  # plugins.call's contract, without its coroutine layer per reply
            reply: Any = actor.act(request)
            if type(reply) is CoroutineType or inspect.isawaitable(reply):
                reply = await reply
        except ScholaError:
            raise
        except Exception as e:
            code = plugins.where(actor.act)
            raise PluginError(f"{engine.asking[role]} ({code}) raised {type(e).__name__}: {e}", plugin=code) from e
        finally:
            TIMING.reset(token)
        if isinstance(reply, str):  # a plugin role may answer with plain text
            reply = Reply(text=reply)
        if not isinstance(reply, Reply):
            code = plugins.where(actor.act)
            raise PluginError(f"role '{role}' ({code}) returned a {type(reply).__name__}, not a Reply", plugin=code)
        if request.options and reply.option_probs is None:
            raise ConfigError(
                f"role '{role}' ({plugins.where(actor.act)}) gives no option probabilities, which this step's "
                "options ask for (a role with a model does; a role without one sets Reply.option_probs)"
            )
        # latency_s is service time: what the backends measured of the requests themselves; a role without a
        # model's client (none measured) reports its own. queue_s is the wait for a turn, apart.
        service = timing.service_s if timing.requests else reply.latency_s
        line = {
            "episode": self.id, "round": self.round, "node": node, "agent": role, "sample": sample, "prompt": prompt,
            "text": reply.text, "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "latency_s": round(service, 6), "queue_s": round(timing.queue_s, 6), "cached": reply.cached,
            "iteration": iteration,
        }  # fmt: skip
        if reply.cost_usd is not None:  # the backend prices its tokens
            line["cost_usd"] = reply.cost_usd
        if reply.option_probs is not None:
            line |= {"option_probs": reply.option_probs, "probs_source": reply.probs_source}
        engine.sink.transcript(line)
        return reply

    async def score(self, scorer: str, inputs: dict[str, Any], params: dict[str, Any], *, node: str) -> Any:
        fn, with_ctx = self.engine.scorer(scorer)
        # The scorer gets a copy that knows its step (scores shared), so its `act` calls are filed under this
        # step even while other steps of the episode run between its awaits.
        at = copy.copy(self)
        at.node = node
        # check_arguments bound the step's arguments before the run: what the scorer raises is its own
        return await plugins.call(f"scorer '{scorer}'", fn, *([at] if with_ctx else []), **inputs, **params)

    def record(self, name: str, score: Score, labels: dict[str, str] | None = None) -> None:
        """A score of this episode: its value for the metrics, its answer and explanation for results.jsonl."""
        key = metric_key(name, labels or {})
        self.scores.setdefault(key, []).append(score.value)
        if details := score.details():
            self.details.setdefault(key, []).append(details)


class EpisodeEngine:
    """A plan's clients (booking into `ledger`), roles and scorers; runs one episode at a time, many concurrently.

    Args:
        plan: the validated plan.
        sink: where transcript lines go.
        ledger: where every request is booked, and the budget checked.
    """

    def __init__(self, plan: Plan, *, sink: TranscriptSink, ledger: Ledger) -> None:
        cfg = plan.config
        self.plan, self.sink, self.ledger, self.seed = plan, sink, ledger, cfg.seed
        self.cache = Cache(cfg.cache.dir or default_cache_dir()) if cfg.cache.enabled else None
        self.clients: dict[str, ScholaClient] = {
            name: cls(backend_config, name=name, ledger=ledger, cache=self.cache)
            for name, (cls, backend_config) in plan.backends.items()
        }
        used = {role_config.backend for _, role_config in plan.roles.values()}
        self.roles: dict[str, Role] = {
            name: cls(
                name, role_config, self.clients[role_config.backend] if role_config.backend else None, seed=self.seed
            )
            for name, (cls, role_config) in plan.roles.items()
        }
        self._used = [self.clients[n] for n in self.clients if n in used]
        self.asking = {name: f"role '{name}'" for name in self.roles}  # what plugins.call names in an error
        self._scorers: dict[str, tuple[Any, bool]] = {}
        described = {n: r.describe() for n, r in self.roles.items()}
        groups = {g: [described[m] for m in ms] for g, ms in plan.groups.items() if len(ms) > 1 or g not in described}
        self.globals = {
            "params": plan.params.model_dump(),
            "roles": {**described, **groups},
            "seed": self.seed,
            "scenario": {"name": cfg.scenario.name, "variant": cfg.scenario.variant},
        }
        self.init = {**(plan.graph.init() if plan.graph else {}), **cfg.scenario.init}

    def scorer(self, name: str) -> tuple[Any, bool]:
        if name not in self._scorers:
            fn = self.plan.find_scorer(name)
            self._scorers[name] = (fn, wants_context(fn))
        return self._scorers[name]

    async def run_episode(self, inputs: dict[str, Any], *, graph: str | None = None, round: int = 0) -> dict[str, Any]:
        """One episode through the graph (`graph`: one of scenario.graphs); returns its results record. Raises
        EpisodeFailed for an episode that raised, BudgetExceeded or BackendError (naming episode and step) for
        what stops the run."""
        g = self.plan.graph_named(graph)
        ep = Episode(self, str(inputs["id"]), round)
        state: dict[str, Any] = {
            **(copy.deepcopy(self.init) if self.init else {}), **self.globals, **inputs, "episode_id": ep.id,
            "round": round, "dialogue": [],
        }  # fmt: skip
        record: dict[str, Any] = {"episode": ep.id, "round": round, "inputs": inputs}
        if graph is not None:
            record["graph"] = graph
        step = "-"  # where it failed
        try:
            await g.run(state, ep)
            record["outputs"] = {k: state.get(k) for k in g.output_names}
            record["scores"] = {k: (v[0] if len(v) == 1 else mean_of(v)) for k, v in ep.scores.items()}
            if ep.details:
                record["score_details"] = ep.details
            return record
        except StepError as e:
            step, cause = e.step, e.cause
        except Exception as e:  # outside any step (its scores, say)
            cause = e
        if isinstance(cause, BudgetExceeded):
            raise cause
        if isinstance(cause, BackendError):
            raise BackendError(f"episode '{ep.id}', step '{step}': {cause}") from cause
        log.debug("episode %s failed at step %s", ep.id, step, exc_info=cause)
        record["error"] = {"step": step, "type": type(cause).__name__, "message": str(cause)}
        record["outputs"] = {k: state[k] for k in g.output_names if k in state}  # what it had when it failed
        raise EpisodeFailed(record, cause) from cause

    async def preflight(self) -> None:
        """Every backend a role uses answers before the first episode (seconds, not minutes of retries)."""
        await gather_all([asyncio.wait_for(c.preflight(), timeout=max(30.0, c.config.timeout_s)) for c in self._used])

    async def close(self) -> None:
        for c in self.clients.values():
            try:
                await c.close()
            except Exception as e:  # closing must not hide the run's own outcome
                log.warning("closing backend %s: %s", c.name, e)
        if self.cache is not None:
            self.cache.close()


def mean_of(values: Sequence[Any]) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    nums = [float(v) for v in values if v is not None]
    return sum(nums) / len(nums) if nums else None
