"""Where a run's episodes run. `run.executor=local` (the default) is the Runner's own event loop; `run.executor=ray`
shards them across Ray workers on one machine or a cluster, for runs larger than one machine.

The run stays one run: the driver (the `schola run` process) holds the run directory, the ledger and the
stages. Each worker builds the run's plan again from its plain config (`schola.plan.build_plan`, so every worker
has backends of its own; clients are never pickled) and runs the episodes the driver sends it, at most
`run.concurrency` in flight over all workers, each to the least busy worker. As each episode finishes, the
driver appends its transcript lines and its results line and books its usage in the run's ledger, so
`ledger.json`, `metrics.json` usage, the progress bar and `resume=` work as in a local run. With a `budget.*`
limit, every request first asks a budget keeper (a Ray actor holding the run's spending), so the budget stops a
Ray run at the same limit as a local one.

Needs `pip install 'schola[ray]'`. Workers must be able to import Schola and the run's plugins, and read the
scenario's data files (a relative path resolves from the driver's folder where the node has it)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from schola.errors import BackendError, BudgetExceeded, ConfigError, ScholaError
from schola.types import Budget, Ledger

if TYPE_CHECKING:
    from schola.runtime import Runner

EXTRA_CALLS = 2  # actor threads beyond the episodes it runs: for stop() and ready() while episodes run


def import_ray() -> Any:
    """The `ray` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "run.executor=ray needs Ray: pip install 'schola[ray]' (or set run.executor=local)", key="run.executor"
        ) from None
    return ray


# -- errors cross the process boundary as data (ScholaErrors take keyword arguments pickle does not keep) -----
def encode_error(e: BaseException) -> dict[str, Any]:
    if isinstance(e, ConfigError):
        return {"kind": "config", "message": e.detail, "key": e.key, "file": e.file}
    if isinstance(e, BudgetExceeded):
        return {"kind": "budget", "message": str(e), "key": e.key}
    if isinstance(e, BackendError):
        return {"kind": "backend", "message": str(e)}
    return {"kind": "error", "message": f"{type(e).__name__}: {e}"}


def decode_error(err: dict[str, Any], where: str) -> Exception:
    kind, message = err["kind"], err["message"]
    if kind == "config":
        return ConfigError(message, key=err.get("key"), file=err.get("file"))
    if kind == "budget":
        return BudgetExceeded(message, key=err.get("key"))
    if kind == "backend":
        return BackendError(message)
    return RuntimeError(f"{message} ({where})")


# -- the worker side ---------------------------------------------------------------------------------------
@dataclass
class WorkerLedger(Ledger):
    """A worker's ledger: it keeps every booking until the driver takes it, and with a budget asks the run's
    budget keeper before each request (and tells it each booking), so concurrent workers share one budget."""

    keeper: Any = None
    bookings: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def begin(self) -> None:
        super().begin()  # refuses once the driver has stopped this worker
        if self.keeper is not None:
            import ray

            refused = ray.get(self.keeper.begin.remote())
            if refused is not None:
                super().end()
                raise BudgetExceeded(refused[0], key=refused[1])

    def end(self) -> None:
        super().end()
        if self.keeper is not None:
            self.keeper.end.remote()

    def book(self, role: str, **usage: Any) -> None:
        with self._lock:
            self.bookings.append((role, usage))
        if self.keeper is not None:
            self.keeper.book.remote(role, usage)

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            out, self.bookings = self.bookings, []
        return out


class BudgetKeeper:
    """A Ray actor holding the run's spending against its budget (the driver's ledger, copied at each start)."""

    def __init__(self, budget: dict[str, Any]) -> None:
        self.ledger = Ledger(budget=Budget(**budget))

    def seed(self, saved: dict[str, Any]) -> None:
        self.ledger.seed(saved)

    def begin(self) -> tuple[str, str | None] | None:
        try:
            self.ledger.begin()
        except BudgetExceeded as e:
            return str(e), e.key
        return None

    def end(self) -> None:
        self.ledger.end()

    def book(self, role: str, usage: dict[str, Any]) -> None:
        self.ledger.book(role, **usage)


class TranscriptSink:
    """A worker's stand-in for the run directory: transcript lines kept per episode until the driver takes them."""

    def __init__(self) -> None:
        self.lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.dir = os.getcwd()

    def transcript(self, line: dict[str, Any]) -> None:
        self.lines[line["episode"]].append(line)

    def take(self, episode: str) -> list[dict[str, Any]]:
        return self.lines.pop(episode, [])


class EpisodeWorker:
    """A Ray actor: the run's plan and backends, built in this process, on an event loop of its own (so the
    actor's threads only wait on it), running the episodes the driver sends."""

    def __init__(self, raw: dict[str, Any], files: dict[str, Any], cwd: str, keeper: Any) -> None:
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="schola-worker", daemon=True).start()
        self.error: dict[str, Any] | None = None
        self.sink, self.ledger = TranscriptSink(), WorkerLedger(keeper=keeper)
        self.runner: Any = None
        try:
            self._call(_setup(self, raw, files))
        except BaseException as e:  # reported by ready(), so the driver can say which worker and why
            self.error = encode_error(e)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def ready(self) -> dict[str, Any] | None:
        return self.error

    def stop(self, reason: str) -> None:
        self.ledger.stop(reason)

    def run(self, inputs: dict[str, Any], graph: str | None, round: int) -> dict[str, Any]:
        return self._call(_run(self, inputs, graph, round))  # type: ignore[no-any-return]


# The worker's coroutines live outside its class: Ray makes an actor with a coroutine method an asyncio actor, and a
# budget check's ray.get must not block Ray's own loop.
async def _setup(w: EpisodeWorker, raw: dict[str, Any], files: dict[str, Any]) -> None:
    from schola.plan import build_plan
    from schola.runtime import Runner
    from schola.schema import Files

    class WorkerRunner(Runner):
        def finished(self, record: dict[str, Any]) -> None:  # the driver writes and counts it
            pass

    w.runner = WorkerRunner(build_plan(raw, Files(**files)), w.sink)  # type: ignore[arg-type]
    w.runner.ledger = w.ledger
    for client in w.runner.clients.values():
        client.ledger = w.ledger
    await w.runner.preflight()


async def _run(w: EpisodeWorker, inputs: dict[str, Any], graph: str | None, round: int) -> dict[str, Any]:
    out: dict[str, Any] = {"episode": str(inputs["id"]), "record": None, "error": None}
    try:
        out["record"] = await w.runner.run_episode(inputs, graph=graph, round=round)
    except Exception as e:
        out["error"] = encode_error(e)
    out["lines"] = w.sink.take(out["episode"])
    out["usage"] = w.ledger.take()
    return out


# -- the driver side ---------------------------------------------------------------------------------------
class RayExecutor:
    """The driver's end: starts the workers (and a budget keeper when the run has a budget), sends episodes,
    writes what comes back into the run directory as it comes."""

    def __init__(self, runner: Runner) -> None:
        self.ray = ray = import_ray()
        self.runner = runner
        cfg = runner.plan.config
        opts = cfg.run.ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=opts.address, include_dashboard=False, logging_level="WARNING")
        cpus = float(ray.cluster_resources().get("CPU", 0))
        n = opts.workers or max(1, int(cpus // opts.cpus_per_worker))
        if n * opts.cpus_per_worker > cpus:  # the workers would wait for CPUs forever
            if self.started:
                ray.shutdown()
            raise ConfigError(
                f"{n} workers x {opts.cpus_per_worker} CPUs need more than the Ray cluster's {cpus:g} CPUs; "
                "lower run.ray.workers or run.ray.cpus_per_worker",
                key="run.ray.workers",
            )
        self.keeper = None
        if any(v is not None for v in cfg.budget.model_dump().values()):
            self.keeper = ray.remote(BudgetKeeper).options(num_cpus=0).remote(cfg.budget.model_dump())
        self.concurrency = cfg.run.concurrency or 8  # the plan has set it (null: from the backends' limits)
        per_worker = math.ceil(self.concurrency / n)
        actor = ray.remote(EpisodeWorker).options(
            num_cpus=opts.cpus_per_worker, max_concurrency=per_worker + EXTRA_CALLS
        )
        raw, files = ray.put(runner.plan.raw), dataclasses.asdict(runner.plan.files)  # the config sent once
        self.workers = [actor.remote(raw, files, os.getcwd(), self.keeper) for _ in range(n)]
        self._checked = False

    async def _check_workers(self) -> None:
        """Every worker built its plan and reached its backends, or the run stops naming the first that did not."""
        for i, w in enumerate(self.workers):
            try:
                err = await self._get(w.ready.remote(), f"Ray worker {i}")
            except BackendError as e:
                raise BackendError(f"{e} (does every Ray node have Schola and the run's plugins installed?)") from None
            if err is not None:
                raise decode_error(err, f"on Ray worker {i}")
        self._checked = True

    async def _get(self, ref: Any, actor: str) -> Any:
        try:
            return await asyncio.wrap_future(ref.future())
        except self.ray.exceptions.RayError as e:  # the actor's process or its node is gone
            raise BackendError(f"{actor} was lost: {str(e).splitlines()[0]}") from None

    async def run(self, todo: list[dict[str, Any]], *, graph: str | None, round: int) -> None:
        """Run `todo` on the workers; the first failure stops them all (what finished is kept) and is raised."""
        if not self._checked:
            await self._check_workers()
        ledger = self.runner.ledger
        stopped = ledger.stopped  # a stopped run's stages start no new requests anywhere
        if stopped:
            self._stop_all(stopped)
        if self.keeper is not None:
            await self._get(self.keeper.seed.remote(ledger.to_dict()), "the budget keeper")
        queue = list(reversed(todo))
        load = [0] * len(self.workers)
        pending: dict[asyncio.Future[Any], int] = {}
        failure: Exception | None = None
        try:
            while pending or (queue and failure is None):
                while queue and failure is None and len(pending) < self.concurrency:
                    w = load.index(min(load))
                    ref = self.workers[w].run.remote(queue.pop(), graph, round)
                    pending[asyncio.ensure_future(self._get(ref, f"Ray worker {w}"))] = w
                    load[w] += 1
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    w = pending.pop(fut)
                    load[w] -= 1
                    try:
                        error = self._absorb(fut.result(), w)
                    except ScholaError as e:
                        error = e
                    if error is not None and failure is None:
                        failure = error
                        self._stop_all(f"episode failed on another worker: {error}")
        except asyncio.CancelledError:
            self._stop_all("the run was interrupted")
            for fut in pending:
                fut.cancel()
            raise
        if failure is not None:
            raise failure

    def _absorb(self, out: dict[str, Any], worker: int) -> Exception | None:
        """One finished (or failed) episode from a worker: its transcript lines, its usage, its results line."""
        for line in out["lines"]:
            self.runner.store.transcript(line)
        for role, usage in out["usage"]:
            self.runner.ledger.book(role, **usage)
        if out["error"] is not None:
            return decode_error(out["error"], f"episode '{out['episode']}' on Ray worker {worker}")
        self.runner.finished(out["record"])
        return None

    def _stop_all(self, reason: str) -> None:
        for w in self.workers:
            w.stop.remote(reason)

    def close(self) -> None:
        for a in [*self.workers, *([self.keeper] if self.keeper is not None else [])]:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(a)
        if self.started:
            self.ray.shutdown()
