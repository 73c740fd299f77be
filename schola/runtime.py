"""Runs a plan (the run driver): episodes through an executor under limits, then the run-level stages (which may
start more episodes: rounds), each given a `StageContext`.

Every model reply is a transcript line; every episode that ends a results line (one that raised is recorded as
failed, and the run goes on while `run.max_failed` allows). Budget, a backend failure, too many failed episodes,
Ctrl-C or SIGTERM stop the run cleanly: what finished stays on disk, the ledger is saved, and `resume=<run dir>`
continues from there (failed episodes are run again)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from schola import plugins, templates
from schola.aio import run_sync
from schola.engine import Episode, EpisodeEngine, EpisodeFailed
from schola.errors import BackendError, BudgetExceeded, ConfigError, PluginError
from schola.executors import Executor, LocalExecutor, RayExecutor
from schola.metrics import MetricRow, mean_row, parse_metric_key
from schola.plan import Plan, build_plan
from schola.resume import check_resume, same_inputs
from schola.roles import Reply
from schola.schema import Files
from schola.store import STAGE_EPISODE, RunStore, check_run_dir
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


class RunDriver:
    """Runs one plan into one run directory: owns the ledger (and so the budget), runs the episodes through an
    executor (`run.executor`), counts those that fail against `run.max_failed`, then runs the run-level stages.

    Args:
        plan: the validated plan.
        store: the run directory.
        progress: a callback(done, total, ledger) after each episode, for a progress bar.
    """

    def __init__(self, plan: Plan, store: RunStore, *, progress: Progress | None = None, debug: bool = False) -> None:
        self.plan, self.store, self.progress, self.debug = plan, store, progress, debug
        self.seed = plan.config.seed
        self.ledger = Ledger(budget=Budget(**plan.config.budget.model_dump()))
        self.engine = EpisodeEngine(plan, sink=store, ledger=self.ledger)
        self.results: list[dict[str, Any]] = []  # finished episodes, in the order they were asked for
        self.failed: list[dict[str, Any]] = []  # results lines of episodes that raised
        self._finished: dict[str, dict[str, Any]] = {}
        self._rank: dict[str, int] = {}  # the order episodes were asked for: stages see results in it
        self._stage_rounds = 0
        self.total = 0
        self._wall_before = 0.0
        self._start = time.perf_counter()
        self._stage_rows: list[MetricRow] = []  # rows of the stages that finished, kept if a later one fails
        self._executor: Executor | None = None  # made at the first episodes
        self.stage = StageContext(self)

    def executor(self) -> Executor:
        if self._executor is None:
            cfg = self.plan.config
            if cfg.run.executor == "ray":  # each finished episode comes back to finished()
                self._executor = RayExecutor(self.plan, sink=self.store, ledger=self.ledger)
            else:
                self._executor = LocalExecutor(self.engine, cfg.run.concurrency or 1)
        return self._executor

    async def run_episodes(
        self, inputs: list[dict[str, Any]], *, graph: str | None = None, round: int | None = None
    ) -> list[dict[str, Any]]:
        """Run episodes with at most `run.concurrency` in flight. Episodes finished before (a resumed run) are
        returned as they are, not run again; failed ones (within run.max_failed) are left out."""
        if round is None:
            self._stage_rounds += 1
            round = self._stage_rounds
        self.plan.graph_named(graph)  # an unknown graph is the stage's error, not each episode's
        ids = [str(e.get("id", "")) for e in inputs]
        if "" in ids or len(set(ids)) != len(ids):
            raise ConfigError(f"run_episodes: every episode needs a unique id (got {ids[:5]}...)")
        failed = {r["episode"] for r in self.failed}
        todo = []
        for e, eid in zip(inputs, ids):
            done = self._finished.get(eid)
            if done is None and eid not in failed:
                todo.append(e)
            elif done is not None and (not same_inputs(e, done["inputs"]) or done.get("round", 0) != round):
                raise ConfigError(
                    f"episode id '{eid}' was already run with other inputs or in another round; "
                    "episode ids must be unique across the run (and a resumed run must start the same episodes)"
                )
        for eid in ids:
            self._rank.setdefault(eid, len(self._rank))
        if todo:
            await self.executor().run(todo, graph=graph, round=round, done=self.finished)
        self._in_order()
        return [self._finished[eid] for eid in ids if eid in self._finished]

    def _in_order(self) -> None:
        """Results in the order their episodes were asked for, not the order they finished in (which varies
        with timing and across resumes): a stage's metrics, bootstrap CIs included, never depend on it."""
        self.results.sort(key=lambda r: self._rank.get(r["episode"], len(self._rank)))

    def finished(self, record: dict[str, Any], cause: BaseException | None = None) -> None:
        """An episode ended: its results line, the run's results (or failures), the ledger file now and then,
        progress. Raises EpisodeFailed once more episodes failed than run.max_failed allows."""
        self.store.result(record)
        if "error" in record:
            self.failed.append(record)
        else:
            self._add(record)
        self.store.write_ledger(self.ledger_dict, wall_s=self.wall_s, every_s=LEDGER_EVERY_S)
        if self.progress:
            done = len(self.results) + len(self.failed)
            self.progress(done, max(self.total, done), self.ledger)
        if "error" in record and len(self.failed) > self.failures_allowed():
            raise EpisodeFailed(record, cause)

    def failures_allowed(self) -> int:
        """run.max_failed: a count, or a fraction of the episodes the run has asked for so far."""
        bound = self.plan.config.run.max_failed
        return int(bound * len(self._rank)) if isinstance(bound, float) else bound

    def _add(self, record: dict[str, Any]) -> None:
        self.results.append(record)
        self._finished[record["episode"]] = record

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
        signals = self._on_signals()
        try:
            if exhausted := self.ledger.exhausted():
                key = exhausted.split("=")[0]
                raise BudgetExceeded(f"{exhausted}: raise {key} to continue", key=key)
            await self.engine.preflight()
            await self.run_episodes(todo, round=0)
            rows = await self.stages()
        except EpisodeFailed as e:
            status, code, message = ("config_error", 2, str(e)) if e.config_error else ("error", 1, str(e))
            if self.debug and e.cause is not None:
                raise e.cause from e.cause.__cause__  # with its own cause (a plugin's exception) for the traceback
        except BudgetExceeded as e:
            status, code, message = "budget", e.exit_code, str(e)
            hint = f"raise {e.key or 'the budget'} and continue with: schola run resume={self.store.dir} {e.key or 'budget.*'}=..."
            if self.debug:
                raise
        except BackendError as e:
            status, code, message = "backend_error", e.exit_code, str(e)
            if self.debug:
                raise
        except ConfigError as e:
            status, code, message = "config_error", e.exit_code, str(e)
            if self.debug:
                raise
        except PluginError as e:  # a stage's own bug: named, no "unexpected"
            status, code, message = "error", e.exit_code, str(e)
            if self.debug:
                raise
        except (KeyboardInterrupt, asyncio.CancelledError):
            status, code, message = "interrupted", 130, "interrupted"
        except Exception as e:  # a bug, in Schola or a plugin: still keep what finished
            log.debug("unexpected error", exc_info=True)
            status, code, message = "error", 1, f"unexpected {type(e).__name__}: {e} (run with --debug for the traceback)"
            if self.debug:
                raise
        finally:
            signals.stopping()
        if status in ("budget", "backend_error", "interrupted", "error") and not hint:
            hint = f"continue with: schola run resume={self.store.dir}"
        elif self.failed and not hint:
            hint = f"resume retries the failed episodes: schola run resume={self.store.dir}"
            message = message or f"{len(self.failed)} episodes failed (run.max_failed allows {self.failures_allowed()})"
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
        signals.close()
        return Outcome(status=status, exit_code=code, run_dir=self.store.dir, metrics=metrics, message=message, hint=hint)

    def _on_signals(self) -> _Signals:
        """Ctrl-C and SIGTERM stop the run (main thread only)."""
        return _Signals(asyncio.current_task())

    def _write_metrics(self, metrics: list[dict[str, Any]], status: str) -> None:
        """metrics.json: what the run measured, the same bytes for the same run (timings live in ledger.json)."""
        usage = self.ledger.to_dict(timing=False)
        self.store.write_metrics(
            self.plan.config.scenario.name,
            metrics,
            status=status,
            episodes={"finished": len(self.results), "failed": len(self.failed),
                      "total": max(self.total, len(self.results) + len(self.failed))},
            usage=usage,
            exports=self.stage.exports,
            **({"caption": self.plan.config.scenario.caption} if self.plan.config.scenario.caption else {}),
        )

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
            extra = stage_labels(fn, args, self.engine.globals)
            out = await plugins.call(f"stage '{st.fn}'", fn, self.stage, **args)  # its arguments bound at check
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
        await self.engine.close()


class StageContext:
    """What a run-level stage gets as `ctx` (the plugin API: schola.scenario.StageContext): the finished episodes
    and the run's settings to read; episodes, a role's answer and exports to start or write."""

    def __init__(self, driver: RunDriver) -> None:
        self._driver = driver
        self.results = driver.results  # the driver's own list: it grows as episodes finish
        self.params = driver.plan.params
        self.seed = driver.plan.config.seed
        self.scenario = driver.plan.config.scenario
        self.output_dir = driver.store.dir
        self.store = driver.store  # stages write their files through the run's one writer (store.write_file)
        self.exports: list[dict[str, Any]] = []

    @property
    def usage(self) -> dict[str, Any]:
        """The run's usage so far (tokens, requests, cost, cache hits per role)."""
        return self._driver.ledger.to_dict()

    async def run_episodes(
        self, inputs: list[dict[str, Any]], *, graph: str | None = None, round: int | None = None
    ) -> list[dict[str, Any]]:
        """Run more episodes (ids unique in the run); on resume, finished ones are not run again."""
        return await self._driver.run_episodes(inputs, graph=graph, round=round)

    async def act(
        self,
        role: str,
        prompt: str,
        *,
        sample: int = 0,
        sampling: dict[str, Any] | None = None,
        options: Sequence[str] | None = None,
    ) -> Reply:
        """A role answers outside any episode (booked in the transcript as episode '-stage-')."""
        return await Episode(self._driver.engine, STAGE_EPISODE).act(
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
        path = self.store.write_jsonl(f"{name}.jsonl", [dict(r) for r in records])
        self.exports = [e for e in self.exports if e["name"] != name]
        self.exports.append({"name": name, "kind": kind, "path": path.name, "records": len(records)})
        return path


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


class _Signals:
    """Ctrl-C (SIGINT) and SIGTERM cancel the run's task once; after `stopping()` (the run is saving what
    finished), a signal only says to wait: a second Ctrl-C must not cut the writing of metrics.json and
    status.json. Handled by the event loop, so a signal never lands inside half-written state; the sandbox's
    time bounds keep the loop from being blocked for long. A SIGINT the process was started ignoring stays
    ignored."""

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task, self.running = task, True
        self.installed: dict[signal.Signals, Any] = {}
        self.loop = asyncio.get_running_loop()
        if threading.current_thread() is not threading.main_thread() or task is None:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if sig == signal.SIGINT and previous == signal.SIG_IGN:
                continue
            try:
                self.loop.add_signal_handler(sig, self._handle)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            self.installed[sig] = previous

    def _handle(self) -> None:
        if self.running:
            self.running = False
            assert self.task is not None
            self.task.cancel()
        else:
            log.warning("stopping: saving what finished")

    def stopping(self) -> None:
        self.running = False

    def close(self) -> None:
        """Give the signals back to whoever handled them before the run."""
        for sig, previous in self.installed.items():
            self.loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)
        self.installed = {}


async def arun_plan(plan: Plan, store: RunStore, *, progress: Progress | None = None, debug: bool = False) -> Outcome:
    return await RunDriver(plan, store, progress=progress, debug=debug).execute()


def run_plan(plan: Plan, store: RunStore, *, progress: Progress | None = None, debug: bool = False) -> Outcome:
    """Run a plan to completion from synchronous code (in a fresh loop; on a worker thread inside a running one)."""
    try:
        return run_sync(lambda: arun_plan(plan, store, progress=progress, debug=debug))
    except KeyboardInterrupt:
        return Outcome(status="interrupted", exit_code=130, run_dir=store.dir, message="interrupted")
