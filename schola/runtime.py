"""Runs a plan: episodes through the graph concurrently under limits, then the run-level stages.

Every model reply is a transcript line; every finished episode a results line. Budget, a backend failure or
Ctrl-C stop the run cleanly: what finished stays on disk and `resume=<run dir>` continues from there."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schola.backends.cache import Cache, default_cache_dir
from schola.config import Plan
from schola.errors import BackendError, BudgetExceeded, ConfigError
from schola.graph import gather_all
from schola.metrics import MetricRow, mean_row
from schola.roles import Role
from schola.store import RunStore
from schola.types import Budget, Ledger

log = logging.getLogger("schola")


@dataclass
class Outcome:
    status: str  # finished | budget | backend_error | config_error | interrupted
    exit_code: int
    run_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


class Episode:
    """One episode's context for the graph: roles answer, scorers score, replies go to the transcript."""

    def __init__(self, run: Runner, episode_id: str) -> None:
        self.run, self.id = run, episode_id
        self.scores: dict[str, list[Any]] = {}

    async def act(self, role: str, prompt: str, *, node: str = "-", sample: int = 0, sampling: dict[str, Any] | None = None) -> str:
        actor = self.run.roles.get(role)
        if actor is None:
            raise ConfigError(f"step '{node}' names unknown role '{role}'; the scenario has {', '.join(self.run.roles)}")
        reply = await actor.act(prompt, sample=sample, sampling=sampling)
        self.run.store.transcript(
            {
                "episode": self.id, "node": node, "agent": role, "sample": sample, "prompt": prompt, "text": reply.text,
                "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                "latency_s": round(reply.latency_s, 6), "cached": reply.cached,
            }
        )  # fmt: skip
        return reply.text

    async def score(self, scorer: str, inputs: dict[str, Any], params: dict[str, Any], *, node: str) -> Any:
        fn, wants_ctx = self.run.scorer(scorer)
        out = fn(self, **inputs, **params) if wants_ctx else fn(**inputs, **params)
        return await out if inspect.isawaitable(out) else out

    def record(self, name: str, value: Any) -> None:
        self.scores.setdefault(name, []).append(value)


class Runner:
    """Runs one plan into one run directory.

    Args:
        plan: the validated plan.
        store: the run directory.
        progress: a callback(done, total, ledger) after each episode, for a progress bar.
    """

    def __init__(self, plan: Plan, store: RunStore, *, progress: Any = None, debug: bool = False) -> None:
        self.plan, self.store, self.progress, self.debug = plan, store, progress, debug
        cfg = plan.config
        self.seed = cfg.seed
        self.ledger = Ledger(budget=Budget(**cfg.budget.model_dump()))
        self.cache = Cache(cfg.cache.dir or default_cache_dir()) if cfg.cache.enabled else None
        self.clients = {
            name: cls(bcfg, name=name, ledger=self.ledger, cache=self.cache) for name, (cls, bcfg) in plan.backends.items()
        }
        used = {rc.backend for _, rc in plan.roles.values()}
        self.roles: dict[str, Role] = {
            name: cls(name, rc, self.clients[rc.backend] if rc.backend else None, seed=self.seed)
            for name, (cls, rc) in plan.roles.items()
        }
        self._used = [self.clients[n] for n in self.clients if n in used]
        self._scorers: dict[str, tuple[Any, bool]] = {}
        described = {n: r.describe() for n, r in self.roles.items()}
        self.globals = {
            "params": plan.params.model_dump(),
            "roles": {**described, **{g: [described[m] for m in ms] for g, ms in plan.groups.items() if len(ms) > 1 or g not in described}},
            "seed": self.seed,
            "scenario": {"name": cfg.scenario.name, "variant": cfg.scenario.variant},
        }  # fmt: skip
        self.results: list[dict[str, Any]] = []
        self.total = 0

    def scorer(self, name: str) -> tuple[Any, bool]:
        if name not in self._scorers:
            fn = self.plan.find_scorer(name)
            self._scorers[name] = (fn, "ctx" in inspect.signature(fn).parameters)
        return self._scorers[name]

    async def run_episode(self, inputs: dict[str, Any]) -> dict[str, Any]:
        ep = Episode(self, str(inputs["id"]))
        state: dict[str, Any] = {**self.globals, **inputs, "episode_id": ep.id}
        assert self.plan.graph is not None
        await self.plan.graph.run(state, ep)
        outputs = {k: state.get(k) for k in self.plan.graph.outputs()}
        scores = {k: (v[0] if len(v) == 1 else _mean(v)) for k, v in ep.scores.items()}
        record = {"episode": ep.id, "inputs": inputs, "outputs": outputs, "scores": scores}
        self.store.result(record)
        self.results.append(record)
        if self.progress:
            self.progress(len(self.results), self.total, self.ledger)
        return record

    async def run_episodes(self, episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run episodes with at most `run.concurrency` in flight; the first failure stops the others."""
        queue = list(reversed(episodes))
        out: dict[str, dict[str, Any]] = {}

        async def worker() -> None:
            while queue:
                inputs = queue.pop()
                out[str(inputs["id"])] = await self.run_episode(inputs)

        n = min(self.plan.config.run.concurrency, len(episodes)) or 1
        await gather_all([worker() for _ in range(n)])
        return [out[str(e["id"])] for e in episodes]

    async def act(self, role: str, prompt: str, *, sample: int = 0) -> str:
        """For stages: a role answers outside any episode (booked in the transcript as episode '-stage-')."""
        return await Episode(self, "-stage-").act(role, prompt, node="stage", sample=sample)

    @property
    def output_dir(self) -> Path:
        return self.store.dir

    @property
    def params(self) -> Any:
        return self.plan.params

    async def execute(self) -> Outcome:
        cfg = self.plan.config
        start = time.perf_counter()
        status, code, message = "finished", 0, ""
        episodes = self.plan.selected
        done = self.store.prepare_resume() if cfg.resume else []
        finished = {r["episode"] for r in done}
        self.results = list(done)
        todo = [e for e in episodes if str(e["id"]) not in finished]
        self.total = len(episodes)
        if finished:
            log.info("resuming %s: %d of %d episodes already finished", self.store.dir, len(finished), len(episodes))
        self.store.open()
        if self.progress:
            self.progress(len(self.results), self.total, self.ledger)
        rows: list[MetricRow] = []
        try:
            await self.preflight()
            await self.run_episodes(todo)
            rows = await self.stages()
        except BudgetExceeded as e:
            status, code, message = "budget", e.exit_code, str(e)
        except BackendError as e:
            status, code, message = "backend_error", e.exit_code, str(e)
        except ConfigError as e:
            status, code, message = "config_error", e.exit_code, str(e)
        except (KeyboardInterrupt, asyncio.CancelledError):
            status, code, message = "interrupted", 130, "interrupted"
        except Exception as e:  # a bug, in Schola or a plugin: still keep what finished
            log.debug("unexpected error", exc_info=True)
            status, code, message = "error", 1, f"unexpected {type(e).__name__}: {e} (run with --debug for the traceback)"
            if self.debug:
                raise
        try:
            if status != "finished" and self.results:
                rows = await self.partial_rows()
        finally:
            self.store.close()
            await self.close()
        metrics = [r.to_dict() for r in rows]
        wall = time.perf_counter() - start
        self.store.write_metrics(
            cfg.scenario.name,
            metrics,
            status=status,
            episodes={"finished": len(self.results), "total": len(episodes)},
            usage=self.ledger.to_dict(),
            wall_s=round(wall, 3),
        )
        self.store.write_status(status=status, exit_code=code, message=message)
        return Outcome(status=status, exit_code=code, run_dir=self.store.dir, metrics=metrics, message=message)

    async def preflight(self) -> None:
        """Every backend a role uses answers before the first episode (seconds, not minutes of retries)."""
        await gather_all([asyncio.wait_for(c.preflight(), timeout=max(30.0, c.config.timeout_s)) for c in self._used])

    async def partial_rows(self) -> list[MetricRow]:
        """What the finished episodes of a stopped run say, for `schola show`: the stages over them where they
        can run without the model, else the episode scores alone."""
        self.ledger.stop("the run has stopped")  # a stage must not reach a failed backend or spend more budget
        try:
            return await self.stages()
        except Exception as e:
            log.info("stages skipped on a stopped run: %s", e)
            return self.episode_rows()

    def episode_rows(self) -> list[MetricRow]:
        names = sorted({k for r in self.results for k in r["scores"]})
        return [mean_row(k, [r["scores"].get(k) for r in self.results], seed=self.seed) for k in names]

    async def stages(self) -> list[MetricRow]:
        rows = self.episode_rows()
        for st in self.plan.config.scenario.stages:
            fn = self.plan.find_stage(st.fn)
            out = fn(self, **(st.model_extra or {}))
            out = await out if inspect.isawaitable(out) else out
            rows += list(out or [])
        return rows

    async def close(self) -> None:
        for c in self.clients.values():
            try:
                await c.close()
            except Exception as e:  # closing must not hide the run's own outcome
                log.warning("closing backend %s: %s", c.name, e)
        if self.cache is not None:
            self.cache.close()


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if v is not None]
    return sum(nums) / len(nums) if nums else None


def run_plan(plan: Plan, store: RunStore, *, progress: Any = None, debug: bool = False) -> Outcome:
    """Run a plan to completion in a fresh event loop (the CLI's entry into async)."""
    runner = Runner(plan, store, progress=progress, debug=debug)
    try:
        return asyncio.run(runner.execute())
    except KeyboardInterrupt:
        return Outcome(status="interrupted", exit_code=130, run_dir=store.dir, message="interrupted")

