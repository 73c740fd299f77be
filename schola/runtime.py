"""Runs a plan (the run driver): episodes through an executor under limits, then the run-level stages (which may
start more episodes: rounds), each given a `StageContext`.

Every model reply is a transcript line; every episode that ends a results line (one that raised is recorded as
failed, and the run goes on while `run.max_failed` allows). Budget, a backend failure, too many failed episodes,
Ctrl-C or SIGTERM stop the run cleanly: what finished stays on disk, the ledger is saved, and `resume=<run dir>`
continues from there (failed episodes are run again)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from schola import findings, plugins, templates
from schola.aio import run_sync
from schola.data import id_hashes, take
from schola.engine import Episode, EpisodeEngine, EpisodeFailed, TranscriptSink
from schola.errors import BackendError, BudgetExceeded, ConfigError, PluginError
from schola.executors import Executor, LocalExecutor, RayExecutor
from schola.metrics import MetricRow, StreamingMean, parse_metric_key
from schola.plan import Plan, build_plan
from schola.resume import check_resume, same_inputs
from schola.roles import Reply
from schola.schema import Files
from schola.store import STAGE_EPISODE, RunStore, check_run_dir, kept_among
from schola.types import Budget, Ledger

if TYPE_CHECKING:
    import pandas

    from schola.view.blocks import EpisodeBlocks

log = logging.getLogger("schola")
Progress = Callable[[int, int, Ledger], None]
LEDGER_EVERY_S = 1.0  # the ledger is saved at most this often while a run goes (and always at its end)
EXPORT_FIELDS = {"sft": ({"messages"}, {"prompt", "completion"}), "dpo": ({"prompt", "chosen", "rejected"},)}


@dataclass
class RunResult:
    """How a run ended, as data: what `schola.run` returns and what the CLI prints and exits with (one type for
    both, `schola.RunResult`).

    Attributes:
        run_dir: the run directory.
        status: as in status.json: finished, decided (run.until=decided stopped early), budget, backend_error,
            config_error, interrupted or error.
        exit_code: the CLI's exit code for it (0, 4, 3, 2, 130, 1).
        message: why it stopped, when it did.
        metrics: the metric rows of metrics.json.
        hint: how to continue it, when it can be.
        blocks: report.html's episode entries, built as the run went (`RunDriver(report=True)`), for
            `schola.view.write_report`.
    """

    run_dir: Path
    status: str
    exit_code: int
    message: str = ""
    metrics: list[MetricRow] = field(default_factory=list)
    hint: str = ""
    blocks: EpisodeBlocks | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def episodes(self) -> list[dict[str, Any]]:
        """Every episode's results line (results.jsonl; a failed one has an `error`)."""
        from schola.store import read_jsonl

        return read_jsonl(self.run_dir / "results.jsonl")

    def metric(self, name: str, **labels: Any) -> MetricRow | None:
        """The row named `name` whose labels include `labels` (None when there is none)."""
        for row in self.metrics:
            if row.name == name and all(str(row.labels.get(k)) == str(v) for k, v in labels.items()):
                return row
        return None

    def to_pandas(self) -> pandas.DataFrame:
        """The metric rows as a DataFrame (one column per label); needs pandas."""
        import pandas as pd

        return pd.DataFrame([{"name": r.name, **r.labels, "value": r.value, "ci_low": r.ci_low,
                              "ci_high": r.ci_high, "n": r.n} for r in self.metrics])  # fmt: skip

    def episodes_frame(self) -> pandas.DataFrame:
        """One row per episode: `episode`, `round` and a column per input, output and score, named by the paths
        the statistics stages read (`inputs.question`, `outputs.answers`, `scores.correct`; a list stays one
        cell), plus `error.step`, `error.type`, `error.message` where an episode failed; needs pandas."""
        import pandas as pd

        return pd.DataFrame([{"episode": e["episode"], "round": e.get("round", 0),
                              **{f"{part}.{k}": v for part in ("inputs", "outputs", "scores", "error")
                                 for k, v in (e.get(part) or {}).items()}} for e in self.episodes])  # fmt: skip

    def _repr_html_(self) -> str:
        """What Jupyter shows for a result: its status and its metrics table, every text escaped (labels and
        messages may carry data or model output)."""
        from html import escape

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        why = "".join(f"<br>{escape(t)}" for t in (self.message, self.hint) if t)
        head = "".join(f"<th>{h}</th>" for h in ("metric", "labels", "value", "95% CI", "n"))
        rows = "".join(
            f"<tr><td>{escape(r.name)}</td><td>{escape(', '.join(f'{k}={v}' for k, v in r.labels.items()))}</td>"
            f"<td>{num(r.value)}</td><td>{'' if r.ci_low is None else f'[{num(r.ci_low)}, {num(r.ci_high)}]'}</td>"
            f"<td>{r.n}</td></tr>"
            for r in self.metrics
        )
        return (f"<p><b>{escape(self.status)}</b> {escape(str(self.run_dir))}{why}</p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")  # fmt: skip


class RunDriver:
    """Runs one plan into one run directory: owns the ledger (and so the budget), runs the episodes through an
    executor (`run.executor`), counts those that fail against `run.max_failed`, then runs the run-level stages.

    Args:
        plan: the validated plan.
        store: the run directory.
        progress: a callback(done, total, ledger) after each episode, for a progress bar.
    """

    def __init__(
        self,
        plan: Plan,
        store: RunStore,
        *,
        progress: Progress | None = None,
        debug: bool = False,
        report: bool = False,
    ) -> None:
        self.plan, self.store, self.progress, self.debug = plan, store, progress, debug
        self.seed = plan.config.seed
        self.ledger = Ledger(budget=Budget(**plan.config.budget.model_dump()))
        # report.html's episode entries, built from each line as it is written (a resume reads its files instead)
        self.blocks: EpisodeBlocks | None = None
        self.sink: TranscriptSink = store
        if report and not plan.config.resume:
            from schola.view.blocks import EpisodeBlocks

            self.blocks = EpisodeBlocks(masked=store.masks, folder=store.dir)
            self.sink = _Noted(store, self.blocks)
        self.engine = EpisodeEngine(plan, sink=self.sink, ledger=self.ledger)
        # A run is a stream: a finished episode is its results line, counted and summed here, then forgotten;
        # stages read results.jsonl (ctx.results). Nothing here grows with the number of episodes but the ids
        # of failed ones (at most run.max_failed of them).
        self.finished_count = 0
        self.failed: set[str] = set()  # ids of episodes that raised
        self._scores: dict[tuple[str, int], StreamingMean] = {}  # per score key and round
        self._asks: list[Sequence[dict[str, Any]]] = []  # the inputs of each run_episodes, in the order asked
        self._asked = 0
        self._unsorted = False  # results.jsonl has lines since it was last put in the order asked
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
                self._executor = RayExecutor(self.plan, sink=self.sink, ledger=self.ledger)
            else:
                self._executor = LocalExecutor(self.engine, self.plan.concurrency)
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
        asked = set(ids)
        finished = {r["episode"]: r for r in self.stage.results if r["episode"] in asked}  # before: a resume
        todo = []
        for e, eid in zip(inputs, ids):
            done = finished.get(eid)
            if done is None and eid not in self.failed:
                todo.append(e)
            elif done is not None and (not same_inputs(e, done["inputs"]) or done.get("round", 0) != round):
                why = "with other inputs" if not same_inputs(e, done["inputs"]) else f"in round {done.get('round', 0)}"
                raise ConfigError(
                    f"episode id '{eid}' was already run {why} (now asked for in round {round}); "
                    "episode ids must be unique across the run (and a resumed run must start the same episodes)"
                )
        self._ask(inputs)
        if todo and self.ledger.stopped:  # a stopped run's stages compute what its finished episodes allow
            log.info("%d episodes not run: %s", len(todo), self.ledger.stopped)
            todo = []
        if todo:
            await self._run(todo, graph=graph, round=round)
            finished = {r["episode"]: r for r in self.stage.results if r["episode"] in asked}
        return [finished[eid] for eid in ids if eid in finished]

    def _ask(self, inputs: Sequence[dict[str, Any]]) -> None:
        self._asks.append(inputs)  # the plan's own (a data file's FileRecords holds nothing per episode)
        self._asked += len(inputs)

    async def _run(self, todo: Sequence[dict[str, Any]], *, graph: str | None, round: int) -> None:
        self._unsorted = True
        await self.executor().run(todo, graph=graph, round=round, done=self.finished)

    def in_order(self) -> None:
        """results.jsonl in the order its episodes were asked for, not the order they finished in (which varies
        with timing and across resumes): a stage's metrics, bootstrap CIs included, never depend on it. Sorted
        on disk when a stage reads it after new episodes finished (`StageContext.results`)."""
        if self._unsorted:
            self._unsorted = False
            order = self.store.sort_results(self._ranks)
            if order is not None and self.blocks is not None:
                self.blocks.reorder(order, self.store.dir / "results.jsonl")

    def _ranks(self, hashes: Any) -> Any:
        """Each episode's place in the order asked (`hash(id)`s in, numpy; one never asked goes last)."""
        import numpy as np

        asked = np.fromiter(
            (hash(str(e["id"])) for inputs in self._asks for e in inputs), dtype=np.int64, count=self._asked
        )
        known, first = np.unique(asked, return_index=True)
        if not len(known):
            return np.zeros(len(hashes), dtype=np.int64)
        at = np.searchsorted(known, hashes).clip(0, len(known) - 1)
        return np.where(known[at] == hashes, first[at], len(asked))

    def finished(self, record: dict[str, Any], cause: BaseException | None = None) -> None:
        """An episode ended: its results line, the run's counts and score sums (or failures), the ledger file now
        and then, progress. Raises EpisodeFailed once more episodes failed than run.max_failed allows."""
        line = self.store.result(record)
        if self.blocks is not None:
            self.blocks.result(line, record)
        if "error" in record:
            self.failed.add(record["episode"])
        else:
            self._add(record)
        self.store.write_ledger(self.ledger_dict, wall_s=self.wall_s, every_s=LEDGER_EVERY_S)
        if self.progress:
            done = self.finished_count + len(self.failed)
            self.report_progress(done)
        if "error" in record and len(self.failed) > self.failures_allowed():
            raise EpisodeFailed(record, cause)

    def report_progress(self, done: int) -> None:
        """Tell the progress callback how many episodes have ended. What it raises is its own bug, named as a
        plugin's is: the run then stops as any run does (status.json written, the directory given back)."""
        if self.progress is None:
            return
        try:
            self.progress(done, max(self.total, done), self.ledger)
        except Exception as e:
            code = plugins.where(self.progress)
            raise PluginError(f"the progress callback ({code}) raised {type(e).__name__}: {e}", plugin=code) from e

    def failures_allowed(self) -> int:
        """run.max_failed: a count, or a fraction of the episodes the run has asked for so far."""
        bound = self.plan.config.run.max_failed
        return int(bound * self._asked) if isinstance(bound, float) else bound

    def _add(self, record: dict[str, Any]) -> None:
        """A finished episode into the counts and the score sums (then it is forgotten)."""
        self.finished_count += 1
        eid, rnd = record["episode"], record.get("round", 0)
        for key, value in (record.get("scores") or {}).items():
            acc = self._scores.get((key, rnd))
            if acc is None:
                acc = self._scores[(key, rnd)] = StreamingMean()
            acc.add(value, eid)

    # -- the run -------------------------------------------------------------------------------------
    @property
    def wall_s(self) -> float:
        return self._wall_before + time.perf_counter() - self._start

    def ledger_dict(self) -> dict[str, Any]:
        return self.ledger.to_dict()

    async def execute(self) -> RunResult:
        cfg = self.plan.config
        self._start = time.perf_counter()
        status, code, message, hint = "finished", 0, "", ""
        episodes = self.plan.selected
        todo = episodes
        if cfg.resume:
            kept = self.store.prepare_resume(self._add)  # one pass: counts and sums, no record held
            todo = not_kept(episodes, kept)
            self._unsorted = bool(len(kept))
            del kept
            saved = self.store.read_ledger()
            self.ledger.seed(saved)
            self._wall_before = float(saved.get("wall_s", 0.0))
        self._ask(episodes)
        self.total = len(episodes)
        if self.finished_count:
            log.info("resuming %s: %d episodes already finished", self.store.dir, self.finished_count)
        self.store.open()
        rows: list[MetricRow] = []
        signals = self._on_signals()
        try:
            self.report_progress(self.finished_count)
            if exhausted := self.ledger.exhausted():
                key = exhausted.split("=")[0]
                raise BudgetExceeded(f"{exhausted}: raise {key} to continue", key=key)
            await self.engine.preflight()
            decided = await self.run_first_episodes(todo)
            rows = await self.stages()
            status = "decided" if decided else status
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
            status, code, message = (
                "error",
                1,
                f"unexpected {type(e).__name__}: {e} (run with --debug for the traceback)",
            )
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
            if status not in ("finished", "decided") and self.finished_count:
                rows = await self.partial_rows()
        finally:
            self.store.close()
            await self.close()
        metrics = [r.to_dict() for r in rows]
        self.store.write_ledger(self.ledger_dict, wall_s=round(self.wall_s, 3))
        self._write_metrics(metrics, status, measured=self.findings(rows))
        self.store.write_status(status=status, exit_code=code, message=message, hint=hint)
        signals.close()
        return RunResult(self.store.dir, status, code, message=message, metrics=rows, hint=hint, blocks=self.blocks)

    def _on_signals(self) -> _Signals:
        """Ctrl-C and SIGTERM stop the run (main thread only)."""
        return _Signals(asyncio.current_task())

    async def run_first_episodes(self, todo: Sequence[dict[str, Any]]) -> bool:
        """The run's episodes: all at once, or with run.until=decided in batches of run.concurrency until every
        finding is decided (a resumed run first tests what it has: the sequence goes on, it does not restart).
        True when every finding was decided."""
        declared = self.plan.config.scenario.findings
        if self.plan.config.run.until != "decided":
            if todo:
                await self._run(todo, graph=None, round=0)
            return False
        batch = max(1, self.plan.concurrency)  # run.concurrency, or the derived one: each batch fills the backends
        if self.plan.config.resume:  # the kept episodes may come after some to run again in the order asked
            while not (decided := all(findings.decided(declared, self.stage.results).values())) and todo:
                await self._run(todo[:batch], graph=None, round=0)
                todo = todo[batch:]
            return decided
        # A fresh run asks its batches in order, each after the last ended: each batch's episodes are read once,
        # from where results.jsonl ended before it, put in the order asked, and added to the tests so far.
        decider = findings.Decider(declared)
        while not (decided := all(decider.decided().values())) and todo:
            asked, todo = todo[:batch], todo[batch:]
            since = self.store.results_size()
            await self._run(asked, graph=None, round=0)
            place = {str(e["id"]): i for i, e in enumerate(asked)}  # at most run.concurrency ids
            new = sorted(self.store.results(once=False, since=since), key=lambda r: place.get(r["episode"], len(place)))
            decider.add(new)
        return decided

    def findings(self, rows: list[MetricRow]) -> list[dict[str, Any]] | None:
        """The scenario's findings measured over this run (metrics.json `findings`); never changes its outcome."""
        declared = self.plan.config.scenario.findings
        if not declared:
            return None
        try:
            sequential = self.plan.config.run.until == "decided"
            return findings.measure_all(declared, self.stage.results, rows, seed=self.seed, sequential=sequential)
        except Exception as e:  # a finding that cannot be measured is reported; the run's results stand
            log.warning("findings not measured: %s", e)
            return None

    def _write_metrics(
        self, metrics: list[dict[str, Any]], status: str, *, measured: list[dict[str, Any]] | None = None
    ) -> None:
        """metrics.json: what the run measured, the same bytes for the same run (timings live in ledger.json)."""
        usage = self.ledger.to_dict(timing=False)
        self.store.write_metrics(
            self.plan.config.scenario.name,
            metrics,
            status=status,
            episodes={
                "finished": self.finished_count,
                "failed": len(self.failed),
                "total": max(self.total, self.finished_count + len(self.failed)),
            },
            usage=usage,
            exports=self.stage.exports,
            **({"caption": self.plan.config.scenario.caption} if self.plan.config.scenario.caption else {}),
            **({"findings": measured} if measured is not None else {}),
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
        """A row per score key (mean, CI, n), per round where the run has several: from the sums kept as episodes
        finished (`StreamingMean`: the same rows whatever order they finished in)."""
        rounds = sorted({rnd for _, rnd in self._scores})
        rows = []
        for key in sorted({k for k, _ in self._scores}):
            name, labels = parse_metric_key(key)
            for rnd in rounds:
                acc = self._scores.get((key, rnd))
                if acc is None or (len(rounds) > 1 and not acc.n):
                    continue
                extra = {"round": rnd} if len(rounds) > 1 else {}
                rows.append(acc.row(name, seed=self.seed, **labels, **extra))
        return rows

    async def stages(self) -> list[MetricRow]:
        """The run-level stages, then a row per episode score over every episode (rounds included). Rows are
        written to metrics.json as each stage ends (status "stages"), so a failing stage keeps the others'."""
        rows: list[MetricRow] = []
        self._stage_rounds = 0  # every pass (a stopped run's partial rows, a resume) asks in the same rounds
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


class _Noted:
    """The run directory as the engine's transcript sink, each line written also handed to report.html's blocks."""

    def __init__(self, store: RunStore, blocks: EpisodeBlocks) -> None:
        self.store, self.blocks = store, blocks

    def transcript(self, line: dict[str, Any]) -> None:
        self.blocks.line(self.store.transcript(line), line)


class StageContext:
    """What a run-level stage gets as `ctx` (the plugin API: schola.scenario.StageContext): the finished episodes
    and the run's settings to read; episodes, a role's answer and exports to start or write."""

    def __init__(self, driver: RunDriver) -> None:
        self._driver = driver
        self.results = Results(driver)  # read from results.jsonl as it grows
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


class Results(Sequence[dict[str, Any]]):
    """The run's finished episodes for its stages (`ctx.results`): read from results.jsonl at each pass, in the
    order they were asked for, never held. Indexing `ctx.results[i]` reads up to item i; `list(ctx.results)` is
    the way to hold them when a stage needs them all at once."""

    def __init__(self, driver: RunDriver) -> None:
        self._driver = driver

    def __len__(self) -> int:
        return self._driver.finished_count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._driver.in_order()
        for r in self._driver.store.results(once=False):
            if "error" not in r:
                yield r

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return list(self)[i]
        n = len(self)
        at = i + n if i < 0 else i
        if not 0 <= at < n:
            raise IndexError(f"results index {i} out of range ({n} episodes)")
        return next(itertools.islice(iter(self), at, None))


def not_kept(episodes: Sequence[dict[str, Any]], kept: Any) -> Sequence[dict[str, Any]]:
    """The episodes whose ids are not among `kept` (sorted hashes of ids: `RunStore.prepare_resume`), still unread
    where they were (a `FileRecords` stays one)."""
    if not len(kept):
        return episodes
    import numpy as np

    left = np.flatnonzero(~kept_among(kept, id_hashes(episodes)))
    return take(episodes, left)


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


def prepare(
    raw: dict[str, Any], run_dir: str | Path, files: Files, *, plan: Plan | None = None
) -> tuple[Plan, RunStore]:
    """Check everything before a run writes anything: the plan, the run directory, and for a resume that the
    saved run is this experiment; then save the config. A directory that holds a run is only ever resumed."""
    plan = plan or build_plan(raw, files)
    directory = check_run_dir(run_dir)
    store = RunStore(directory)
    if plan.config.resume:
        check_resume(store.read_config(), plan, store.results(), run_dir=str(store.dir))  # one pass, as read
    elif store.has_run():
        raise ConfigError(f"{store.dir} already holds a run; continue it with resume={store.dir}", key="hydra.run.dir")
    store.write_config(raw)
    return plan, store


class _Signals:
    """Ctrl-C (SIGINT) and SIGTERM cancel the run's task once; after `stopping()` (the run is saving what
    finished), a signal only says to wait: a second Ctrl-C must not cut the writing of metrics.json and
    status.json. The task is cancelled from the signal handler itself, as asyncio's own first Ctrl-C does: a
    handler queued behind the event loop's ready callbacks would wait for every episode already in flight (with
    a backend that never suspends, the whole run). Rendering is bounded in time (schola.sandbox), so the
    cancellation lands within about a second. A SIGINT the process was started ignoring stays ignored."""

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task, self.running = task, True
        self.installed: dict[signal.Signals, Any] = {}
        if threading.current_thread() is not threading.main_thread() or task is None:
            return
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if sig == signal.SIGINT and previous == signal.SIG_IGN:
                continue
            self.installed[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.running:
            self.running = False
            assert self.task is not None
            self.task.cancel()
            self.loop.call_soon_threadsafe(lambda: None)  # wake the loop if it is waiting
        else:
            os.write(2, b"schola: stopping: saving what finished\n")  # print/logging are not safe in a handler

    def stopping(self) -> None:
        self.running = False

    def close(self) -> None:
        """Give the signals back to whoever handled them before the run."""
        for sig, previous in self.installed.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self.installed = {}


YOUNG_COLLECTION_EVERY = 20_000  # allocations between young collections during a run (Python's default: 700)
_quiet_runs, _threshold_before, _froze = 0, gc.get_threshold(), False  # runs under quiet_gc now; as the first found


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """The garbage collector kept off what a run starts with. On a 10,000-request run against the 50 ms stub it took
    ~1.0 s of the run's ~3.3 s of CPU (benchmarks/client_saturation.py, issue 18): full collections walking the
    start-up heap (the interpreter, Hydra, pydantic, AutoGen: ~100,000 objects) again and again, and a young one every
    700 allocations promoting the requests in flight to older generations; ~0.15 s with the heap frozen and young
    collections every 20,000. Both are given back when the last of the runs in one process ends; a heap its process
    froze itself (a server about to fork) is left as it was."""
    global _quiet_runs, _threshold_before, _froze
    if _quiet_runs == 0:
        _threshold_before, _froze = gc.get_threshold(), gc.get_freeze_count() == 0
        if _froze:
            gc.freeze()
        gc.set_threshold(YOUNG_COLLECTION_EVERY, *_threshold_before[1:])
    _quiet_runs += 1
    try:
        yield
    finally:
        _quiet_runs -= 1
        if _quiet_runs == 0:
            gc.set_threshold(*_threshold_before)
            if _froze:
                gc.unfreeze()


async def arun_plan(
    plan: Plan, store: RunStore, *, progress: Progress | None = None, debug: bool = False, report: bool = False
) -> RunResult:
    """Run a plan; `report`: build report.html's episode entries as it goes (`RunResult.blocks`)."""
    with quiet_gc():
        return await RunDriver(plan, store, progress=progress, debug=debug, report=report).execute()


def run_plan(
    plan: Plan, store: RunStore, *, progress: Progress | None = None, debug: bool = False, report: bool = False
) -> RunResult:
    """Run a plan to completion from synchronous code (in a fresh loop; on a worker thread inside a running one)."""
    try:
        return run_sync(lambda: arun_plan(plan, store, progress=progress, debug=debug, report=report))
    except KeyboardInterrupt:
        return RunResult(store.dir, "interrupted", 130, message="interrupted")
