"""Runs a plan: episodes through the graph concurrently under limits, then the run-level stages (which may start
more episodes: rounds).

Every model reply is a transcript line; every finished episode a results line. Budget, a backend failure,
Ctrl-C or SIGTERM stop the run cleanly: what finished stays on disk, the ledger is saved, and
`resume=<run dir>` continues from there."""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from schola import templates
from schola.aio import gather_all, run_sync
from schola.backends.base import ScholaClient
from schola.backends.cache import Cache, default_cache_dir
from schola.errors import BackendError, BudgetExceeded, ConfigError
from schola.metrics import MetricRow, mean_row, metric_key, parse_metric_key
from schola.plan import Plan, build_plan, wants_context
from schola.resume import check_resume, same_inputs
from schola.roles import Reply, Role
from schola.schema import Files
from schola.store import STAGE_EPISODE, RunStore, check_run_dir, dumps, write_text_atomic
from schola.types import Budget, Ledger

log = logging.getLogger("schola")
Progress = Callable[[int, int, Ledger], None]
LEDGER_EVERY_S = 1.0  # the ledger is saved at most this often while a run goes (and always at its end)
EXPORT_FIELDS = {"sft": ({"messages"}, {"prompt", "completion"}), "dpo": ({"prompt", "chosen", "rejected"},)}


@dataclass
class Outcome:
    """How a run ended.

    Args:
        status: finished | budget | backend_error | config_error | interrupted | error.
        exit_code: the CLI's exit code for it (0, 4, 3, 2, 130, 1).
    """

    status: str
    exit_code: int
    run_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    hint: str = ""


class Episode:
    """One episode's context for the graph: roles answer, scorers score, replies go to the transcript."""

    def __init__(self, run: Runner, episode_id: str, round: int = 0) -> None:
        self.run, self.id, self.round = run, episode_id, round
        self.scores: dict[str, list[Any]] = {}
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
        actor = self.run.roles.get(role)
        if actor is None:
            raise ConfigError(
                f"step '{node}' of episode '{self.id}' names unknown role '{role}'; "
                f"the scenario has {', '.join(self.run.roles)}"
            )
        extra: dict[str, Any] = {}
        if options is not None:
            extra["options"] = options
        if actor.sees_state and state is not None:
            extra["state"] = MappingProxyType(dict(state))
        if not generate:
            extra["generate"] = False
        reply = await actor.act(prompt, sample=sample, sampling=sampling, **accepted(type(actor), extra))
        if isinstance(reply, str):  # a plugin role may answer with plain text
            reply = Reply(text=reply)
        line = {
            "episode": self.id, "round": self.round, "node": node, "agent": role, "sample": sample, "prompt": prompt,
            "text": reply.text, "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "latency_s": round(reply.latency_s, 6), "cached": reply.cached,
        }  # fmt: skip
        if reply.option_probs is not None:
            line |= {"option_probs": reply.option_probs, "probs_source": reply.probs_source}
        self.run.store.transcript(line)
        return reply

    async def score(self, scorer: str, inputs: dict[str, Any], params: dict[str, Any], *, node: str) -> Any:
        fn, with_ctx = self.run.scorer(scorer)
        self.node = node
        try:
            out = fn(self, **inputs, **params) if with_ctx else fn(**inputs, **params)
            return await out if inspect.isawaitable(out) else out
        except TypeError as e:
            if "argument" not in str(e):
                raise
            raise ConfigError(f"step '{node}' of episode '{self.id}': scorer '{scorer}': {e}") from None

    def record(self, name: str, value: Any, labels: dict[str, str] | None = None) -> None:
        self.scores.setdefault(metric_key(name, labels or {}), []).append(value)


class Runner:
    """Runs one plan into one run directory; also the context every run-level stage gets (`StageContext`).

    Args:
        plan: the validated plan.
        store: the run directory.
        progress: a callback(done, total, ledger) after each episode, for a progress bar.
    """

    def __init__(self, plan: Plan, store: RunStore, *, progress: Progress | None = None, debug: bool = False) -> None:
        self.plan, self.store, self.progress, self.debug = plan, store, progress, debug
        cfg = plan.config
        self.seed = cfg.seed
        self.scenario = cfg.scenario
        self.ledger = Ledger(budget=Budget(**cfg.budget.model_dump()))
        self.cache = Cache(cfg.cache.dir or default_cache_dir()) if cfg.cache.enabled else None
        self.clients: dict[str, ScholaClient] = {
            name: cls(backend_config, name=name, ledger=self.ledger, cache=self.cache)
            for name, (cls, backend_config) in plan.backends.items()
        }
        used = {role_config.backend for _, role_config in plan.roles.values()}
        self.roles: dict[str, Role] = {
            name: cls(name, role_config, self.clients[role_config.backend] if role_config.backend else None, seed=self.seed)
            for name, (cls, role_config) in plan.roles.items()
        }
        self._used = [self.clients[n] for n in self.clients if n in used]
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
        self.results: list[dict[str, Any]] = []
        self._finished: dict[str, dict[str, Any]] = {}
        self._rank: dict[str, int] = {}  # the order episodes were asked for: stages see results in it
        self._stage_rounds = 0
        self.exports: list[dict[str, Any]] = []
        self.total = 0
        self._wall_before = 0.0
        self._start = time.perf_counter()
        self._stage_rows: list[MetricRow] = []  # rows of the stages that finished, kept if a later one fails
        self._executor: Any = None  # run.executor=ray: schola.executors.RayExecutor, made at the first episodes

    # -- the stage context ------------------------------------------------------------------------
    @property
    def output_dir(self) -> Path:
        return self.store.dir

    @property
    def params(self) -> Any:
        return self.plan.params

    def scorer(self, name: str) -> tuple[Any, bool]:
        if name not in self._scorers:
            fn = self.plan.find_scorer(name)
            self._scorers[name] = (fn, wants_context(fn))
        return self._scorers[name]

    async def run_episodes(
        self, inputs: list[dict[str, Any]], *, graph: str | None = None, round: int | None = None
    ) -> list[dict[str, Any]]:
        """Run episodes with at most `run.concurrency` in flight; the first failure stops the others. Episodes
        finished before (a resumed run) are returned as they are, not run again."""
        if round is None:
            self._stage_rounds += 1
            round = self._stage_rounds
        g = self.plan.graph_named(graph)
        ids = [str(e.get("id", "")) for e in inputs]
        if "" in ids or len(set(ids)) != len(ids):
            raise ConfigError(f"run_episodes: every episode needs a unique id (got {ids[:5]}...)")
        todo = []
        for e, eid in zip(inputs, ids):
            done = self._finished.get(eid)
            if done is None:
                todo.append(e)
            elif not same_inputs(e, done["inputs"]) or done.get("round", 0) != round:
                raise ConfigError(
                    f"episode id '{eid}' was already run with other inputs or in another round; "
                    "episode ids must be unique across the run (and a resumed run must start the same episodes)"
                )
        queue = list(reversed(todo))

        async def worker() -> None:
            while queue:
                await self.run_episode(queue.pop(), graph=graph, graph_obj=g, round=round)

        for eid in ids:
            self._rank.setdefault(eid, len(self._rank))
        if self.plan.config.run.executor == "ray" and todo:  # on Ray workers; each finished one comes to finished()
            from schola.executors import RayExecutor

            self._executor = self._executor or RayExecutor(self)
            await self._executor.run(todo, graph=graph, round=round)
        else:
            await gather_all([worker() for _ in range(min(self.plan.config.run.concurrency or 1, len(todo)))])
        self._in_order()
        return [self._finished[eid] for eid in ids]

    def _in_order(self) -> None:
        """Results in the order their episodes were asked for, not the order they finished in (which varies
        with timing and across resumes): a stage's metrics, bootstrap CIs included, never depend on it."""
        self.results.sort(key=lambda r: self._rank.get(r["episode"], len(self._rank)))

    async def run_episode(
        self, inputs: dict[str, Any], *, graph: str | None = None, graph_obj: Any = None, round: int = 0
    ) -> dict[str, Any]:
        g = graph_obj or self.plan.graph_named(graph)
        ep = Episode(self, str(inputs["id"]), round)
        state: dict[str, Any] = {
            **copy.deepcopy(self.init), **self.globals, **inputs, "episode_id": ep.id, "round": round, "dialogue": [],
        }  # fmt: skip
        await g.run(state, ep)
        outputs = {k: state.get(k) for k in sorted(g.outputs())}
        scores = {k: (v[0] if len(v) == 1 else mean_of(v)) for k, v in ep.scores.items()}
        record = {"episode": ep.id, "round": round, "inputs": inputs, "outputs": outputs, "scores": scores}
        if graph is not None:
            record["graph"] = graph
        self.finished(record)
        return record

    def finished(self, record: dict[str, Any]) -> None:
        """A finished episode: its results line, the run's results, the ledger file now and then, progress."""
        self.store.result(record)
        self._add(record)
        self.store.write_ledger(self.ledger_dict, wall_s=self.wall_s, every_s=LEDGER_EVERY_S)
        if self.progress:
            self.progress(len(self.results), max(self.total, len(self.results)), self.ledger)

    def _add(self, record: dict[str, Any]) -> None:
        self.results.append(record)
        self._finished[record["episode"]] = record

    async def act(
        self,
        role: str,
        prompt: str,
        *,
        sample: int = 0,
        sampling: dict[str, Any] | None = None,
        options: Sequence[str] | None = None,
    ) -> Reply:
        """For stages: a role answers outside any episode (booked in the transcript as episode '-stage-')."""
        return await Episode(self, STAGE_EPISODE).act(
            role, prompt, node="stage", sample=sample, sampling=sampling, options=options
        )

    def export(self, name: str, records: Sequence[Mapping[str, Any]], *, kind: Literal["sft", "dpo"]) -> Path:
        """Write `<run dir>/<name>.jsonl` in TRL's format (SFT: `messages` or `prompt`/`completion`; DPO:
        `prompt`/`chosen`/`rejected`), after checking every record; it is listed in metrics.json `exports`."""
        if kind not in EXPORT_FIELDS:
            raise ConfigError(f"export '{name}': kind must be sft or dpo, not {kind!r}")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"export name {name!r}: letters, digits, _ and - only")
        for i, r in enumerate(records):
            if not any(need <= r.keys() for need in EXPORT_FIELDS[kind]):
                wanted = " or ".join("/".join(sorted(n)) for n in EXPORT_FIELDS[kind])
                raise ConfigError(f"export '{name}': record {i} has {sorted(r)}; a {kind} record needs {wanted}")
        path = self.output_dir / f"{name}.jsonl"
        write_text_atomic(path, "".join(dumps(dict(r)) + "\n" for r in records))
        self.exports = [e for e in self.exports if e["name"] != name]
        self.exports.append({"name": name, "kind": kind, "path": path.name, "records": len(records)})
        return path

    # -- the run -------------------------------------------------------------------------------------
    @property
    def wall_s(self) -> float:
        return self._wall_before + time.perf_counter() - self._start

    def ledger_dict(self) -> dict[str, Any]:
        return self.ledger.to_dict()

    async def execute(self) -> Outcome:
        cfg = self.plan.config
        self._start = time.perf_counter()
        status, code, message, hint = "finished", 0, "", ""
        episodes = self.plan.selected
        if cfg.resume:
            for r in self.store.prepare_resume():
                self._add(r)
            saved = self.store.read_json("ledger.json") or {}
            self.ledger.seed(saved)
            self._wall_before = float(saved.get("wall_s", 0.0))
        todo = [e for e in episodes if str(e["id"]) not in self._finished]
        for e in episodes:
            self._rank.setdefault(str(e["id"]), len(self._rank))
        self.total = len(episodes)
        if self._finished:
            log.info("resuming %s: %d episodes already finished", self.store.dir, len(self._finished))
        self.store.open()
        if self.progress:
            self.progress(len(self.results), self.total, self.ledger)
        rows: list[MetricRow] = []
        stop = self._on_sigterm()
        try:
            if exhausted := self.ledger.exhausted():
                key = exhausted.split("=")[0]
                raise BudgetExceeded(f"{exhausted}: raise {key} to continue", key=key)
            await self.preflight()
            await self.run_episodes(todo, round=0)
            rows = await self.stages()
        except BudgetExceeded as e:
            status, code, message = "budget", e.exit_code, str(e)
            hint = f"raise {e.key or 'the budget'} and continue with: schola run resume={self.store.dir} {e.key or 'budget.*'}=..."
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
        finally:
            stop()
        if status in ("budget", "backend_error", "interrupted", "error") and not hint:
            hint = f"continue with: schola run resume={self.store.dir}"
        try:
            if status != "finished" and self.results:
                rows = await self.partial_rows()
        finally:
            self.store.close()
            await self.close()
        metrics = [r.to_dict() for r in rows]
        self.store.write_ledger(self.ledger_dict, wall_s=round(self.wall_s, 3))
        self._write_metrics(metrics, status)
        self.store.write_status(status=status, exit_code=code, message=message, hint=hint)
        return Outcome(status=status, exit_code=code, run_dir=self.store.dir, metrics=metrics, message=message, hint=hint)

    def _on_sigterm(self) -> Callable[[], None]:
        """SIGTERM stops the run like Ctrl-C (main thread only); returns the undo."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            loop.add_signal_handler(signal.SIGTERM, lambda: task.cancel() if task else None)
        except (NotImplementedError, RuntimeError):
            return lambda: None

        def undo() -> None:
            loop.remove_signal_handler(signal.SIGTERM)

        return undo

    @property
    def usage(self) -> dict[str, Any]:
        """For stages: the run's usage so far (tokens, requests, cost, cache hits per role)."""
        return self.ledger.to_dict()

    def _write_metrics(self, metrics: list[dict[str, Any]], status: str) -> None:
        """metrics.json: what the run measured, the same bytes for the same run (timings live in ledger.json)."""
        usage = self.ledger.to_dict(timing=False)
        self.store.write_metrics(
            self.plan.config.scenario.name,
            metrics,
            status=status,
            episodes={"finished": len(self.results), "total": max(self.total, len(self.results))},
            usage=usage,
            exports=self.exports,
            **({"caption": self.plan.config.scenario.caption} if self.plan.config.scenario.caption else {}),
        )

    async def preflight(self) -> None:
        """Every backend a role uses answers before the first episode (seconds, not minutes of retries)."""
        await gather_all([asyncio.wait_for(c.preflight(), timeout=max(30.0, c.config.timeout_s)) for c in self._used])

    async def partial_rows(self) -> list[MetricRow]:
        """What the finished episodes of a stopped run say, for `schola show`: the stages over them where they
        can run without the model, else the episode scores alone."""
        self.ledger.stop("the run has stopped")  # a stage must not reach a failed backend or spend more budget
        kept = list(self._stage_rows)
        try:
            return await self.stages()
        except Exception as e:  # MemoryError included: the rows of the stages that finished are kept
            log.info("stages skipped on a stopped run: %s", e)
        try:
            return self.episode_rows() + kept
        except Exception as e:  # scores a stopped run cannot summarise must not hide why it stopped
            log.info("episode scores skipped on a stopped run: %s", e)
            return kept

    def episode_rows(self) -> list[MetricRow]:
        """A row per score key (mean, CI, n), per round where the run has several."""
        rounds = sorted({r.get("round", 0) for r in self.results})
        keys = sorted({k for r in self.results for k in r["scores"]})
        rows = []
        for key in keys:
            name, labels = parse_metric_key(key)
            for rnd in rounds:
                values = [r["scores"].get(key) for r in self.results if r.get("round", 0) == rnd]
                if len(rounds) > 1 and all(v is None for v in values):
                    continue
                extra = {"round": rnd} if len(rounds) > 1 else {}
                rows.append(mean_row(name, values, seed=self.seed, **labels, **extra))
        return rows

    async def stages(self) -> list[MetricRow]:
        """The run-level stages, then a row per episode score over every episode (rounds included). Rows are
        written to metrics.json as each stage ends (status "stages"), so a failing stage keeps the others'."""
        self._in_order()
        rows: list[MetricRow] = []
        for st in self.plan.config.scenario.stages:
            fn = self.plan.find_stage(st.fn)
            args = dict(st.model_extra or {})
            extra = stage_labels(fn, args, self.globals)
            out = fn(self, **args)
            out = await out if inspect.isawaitable(out) else out
            new = list(out or [])
            for row in new:
                row.labels = {**row.labels, **extra}
            rows += new
            self._stage_rows = list(rows)
            self._write_metrics([r.to_dict() for r in rows], "stages")
        return self.episode_rows() + rows

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
        for c in self.clients.values():
            try:
                await c.close()
            except Exception as e:  # closing must not hide the run's own outcome
                log.warning("closing backend %s: %s", c.name, e)
        if self.cache is not None:
            self.cache.close()


@functools.cache
def _act_parameters(cls: type[Role]) -> frozenset[str] | None:
    """The keyword arguments a role's `act` takes (None: it takes **kwargs)."""
    params = inspect.signature(cls.act).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(params)


def accepted(cls: type[Role], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` less what a role's `act` does not take (roles written before `options`/`state` keep working)."""
    names = _act_parameters(cls)  # type: ignore[arg-type]  # classes are hashable
    if names is None:
        return extra
    for needed in ("options", "generate"):
        if needed in extra and needed not in names:
            raise ConfigError(f"role class {cls.__name__} cannot answer with option probabilities (its act() takes no {needed})")
    return {k: v for k, v in extra.items() if k in names}


def stage_labels(fn: Any, args: dict[str, Any], context: Mapping[str, Any]) -> dict[str, str]:
    """`labels:` on a stage that takes none: popped from its arguments, rendered (values may be templates such
    as "{{ scenario.variant }}") and added to every row it returns, so a sweep's rows say which arm they are."""
    try:
        takes = "labels" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes = False
    if takes or "labels" not in args:
        return {}
    labels = args.pop("labels")
    if not isinstance(labels, dict):
        raise ConfigError(f"stage labels must be a mapping, got {labels!r}", key="scenario.stages")
    return {str(k): templates.render(str(v), context, key="scenario.stages.labels") for k, v in labels.items()}


def mean_of(values: Sequence[Any]) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    nums = [float(v) for v in values if v is not None]
    return sum(nums) / len(nums) if nums else None


def prepare(raw: dict[str, Any], run_dir: str | Path, files: Files, *, plan: Plan | None = None) -> tuple[Plan, RunStore]:
    """Check everything before a run writes anything: the plan, the run directory, and for a resume that the
    saved run is this experiment; then save the config. A directory that holds a run is only ever resumed."""
    plan = plan or build_plan(raw, files)
    directory = check_run_dir(run_dir)
    store = RunStore(directory)
    if plan.config.resume:
        check_resume(store.read_config(), plan, store.results(), run_dir=str(store.dir))
    elif store.has_run():
        raise ConfigError(f"{store.dir} already holds a run; continue it with resume={store.dir}", key="hydra.run.dir")
    store.write_config(raw)
    return plan, store


async def arun_plan(plan: Plan, store: RunStore, *, progress: Progress | None = None, debug: bool = False) -> Outcome:
    return await Runner(plan, store, progress=progress, debug=debug).execute()


def run_plan(plan: Plan, store: RunStore, *, progress: Progress | None = None, debug: bool = False) -> Outcome:
    """Run a plan to completion from synchronous code (in a fresh loop; on a worker thread inside a running one)."""
    try:
        return run_sync(lambda: arun_plan(plan, store, progress=progress, debug=debug))
    except KeyboardInterrupt:
        return Outcome(status="interrupted", exit_code=130, run_dir=store.dir, message="interrupted")
