"""Where a run's episodes run: the `Executor` protocol. `run.executor=local` (the default) runs them on the run's
own event loop; `run.executor=ray` shards them across Ray workers on one machine or a cluster, for runs larger than
one machine. Both depend on the episode engine (schola.engine) only, never on the run driver.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from schola.aio import gather_all
from schola.engine import EpisodeEngine, EpisodeFailed, TranscriptSink
from schola.errors import BackendError, BudgetExceeded, ConfigError
from schola.types import Budget, Ledger

if TYPE_CHECKING:
    from schola.plan import Plan

# What an executor calls as each episode ends: its results record (failed ones carry `error`) and, where it is at
# hand, what the episode raised. It may raise to stop the run (too many failed episodes).
Done = Callable[[dict[str, Any], BaseException | None], None]
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


class Executor(Protocol):
    """Runs episodes of one run, handing each to `done` as it ends; the first error that stops the run stops the
    episodes in flight and is raised (what finished is kept)."""

    async def run(self, todo: Sequence[dict[str, Any]], *, graph: str | None, round: int, done: Done) -> None: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Episodes on this event loop, at most `concurrency` in flight."""

    def __init__(self, engine: EpisodeEngine, concurrency: int) -> None:
        self.engine, self.concurrency = engine, concurrency

    async def run(self, todo: Sequence[dict[str, Any]], *, graph: str | None, round: int, done: Done) -> None:
        queue = iter(todo)  # shared by the workers, never copied

        async def worker() -> None:
            for inputs in queue:
                await asyncio.sleep(0)  # the loop runs between episodes (a Ctrl-C), whether or not a backend suspends
                try:
                    record, cause = await self.engine.run_episode(inputs, graph=graph, round=round), None
                except EpisodeFailed as e:
                    record, cause = e.record, e.cause
                done(record, cause)

        await gather_all([worker() for _ in range(min(self.concurrency, len(todo)))])

    def close(self) -> None:
        pass


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


class WorkerSink:
    """A worker's stand-in for the run directory: transcript lines kept per episode until the driver takes them."""

    def __init__(self) -> None:
        self.lines: dict[str, list[dict[str, Any]]] = defaultdict(list)

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
        self.sink, self.ledger = WorkerSink(), WorkerLedger(keeper=keeper)
        self.engine: EpisodeEngine | None = None
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
        out: dict[str, Any] = self._call(_run(self, inputs, graph, round))
        return out


# The worker's coroutines live outside its class: Ray makes an actor with a coroutine method an asyncio actor, and a
# budget check's ray.get must not block Ray's own loop.
async def _setup(w: EpisodeWorker, raw: dict[str, Any], files: dict[str, Any]) -> None:
    from schola.plan import build_plan
    from schola.schema import Files

    w.engine = EpisodeEngine(build_plan(raw, Files(**files)), sink=w.sink, ledger=w.ledger)
    await w.engine.preflight()


async def _run(w: EpisodeWorker, inputs: dict[str, Any], graph: str | None, round: int) -> dict[str, Any]:
    out: dict[str, Any] = {"episode": str(inputs["id"]), "record": None, "error": None}
    try:
        assert w.engine is not None, "the worker was not set up (ready() says why)"
        out["record"] = await w.engine.run_episode(inputs, graph=graph, round=round)
    except EpisodeFailed as e:  # the driver counts it against run.max_failed
        out["record"] = e.record
    except Exception as e:
        out["error"] = encode_error(e)
    out["lines"] = w.sink.take(out["episode"])
    out["usage"] = w.ledger.take()
    return out


# -- the driver side ---------------------------------------------------------------------------------------
class RayExecutor:
    """The driver's end: starts the workers (and a budget keeper when the run has a budget), sends episodes,
    writes what comes back into the run directory as it comes."""

    def __init__(self, plan: Plan, *, sink: TranscriptSink, ledger: Ledger) -> None:
        self.ray = ray = import_ray()
        self.sink, self.ledger = sink, ledger
        cfg = plan.config
        opts = cfg.run.ray
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=opts.address, include_dashboard=False, logging_level="WARNING")
            except ConnectionError as e:  # an address (or $RAY_ADDRESS) with no cluster behind it
                raise BackendError(
                    f"no Ray cluster reachable ({e}); start one with `ray start --head` and set run.ray.address=auto "
                    "(or its host:port), or leave run.ray.address and $RAY_ADDRESS unset for a local Ray in this process"
                ) from None
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
        self.concurrency = plan.concurrency
        per_worker = math.ceil(self.concurrency / n)
        actor = ray.remote(EpisodeWorker).options(
            num_cpus=opts.cpus_per_worker, max_concurrency=per_worker + EXTRA_CALLS
        )
        raw, files = ray.put(plan.raw), dataclasses.asdict(plan.files)  # the config sent once
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

    async def run(self, todo: Sequence[dict[str, Any]], *, graph: str | None, round: int, done: Done) -> None:
        """Run `todo` on the workers; the first failure stops them all (what finished is kept) and is raised."""
        if not self._checked:
            await self._check_workers()
        ledger = self.ledger
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
                ended, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in ended:
                    w = pending.pop(fut)
                    load[w] -= 1
                    try:
                        error = self._absorb(fut.result(), w, done)
                    except Exception as e:  # a lost worker, or `done` stopping the run
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

    def _absorb(self, out: dict[str, Any], worker: int, done: Done) -> Exception | None:
        """One finished (or failed) episode from a worker: its transcript lines, its usage, its results line."""
        for line in out["lines"]:
            self.sink.transcript(line)
        for role, usage in out["usage"]:
            self.ledger.book(role, **usage)
        if out["error"] is not None:
            return decode_error(out["error"], f"episode '{out['episode']}' on Ray worker {worker}")
        done(out["record"], None)
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
