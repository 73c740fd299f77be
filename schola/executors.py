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
import itertools
import logging
import math
import os
import threading
import time
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
    from schola.schema import RayConfig

log = logging.getLogger(__name__)
# What an executor calls as each episode ends: its results record (failed ones carry `error`) and, where it is at
# hand, what the episode raised. It may raise to stop the run (too many failed episodes).
Done = Callable[[dict[str, Any], BaseException | None], None]
ACTOR_THREADS = 4  # a worker's calls at once: collect() waiting, submit(), stop(), ready() (episodes run on its loop)


def import_ray() -> Any:
    """The `ray` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "run.executor=ray needs Ray: pip install 'schola[ray]' (or set run.executor=local)", key="run.executor"
        ) from None
    return ray


def start_ray(ray: Any, opts: RayConfig) -> None:
    """Connect to the cluster run.ray.address (or $RAY_ADDRESS) names, or, with neither, start a local Ray of this
    run's own (stopped with it): never a cluster Ray would otherwise join because `ray start` left it running here.
    A local Ray has the CPUs the workers reserve (or all of them, with run.ray.workers unset: Ray prestarts a worker
    process per CPU) and starts no dashboard; no working_dir is uploaded (the workers run in this folder)."""
    address = opts.address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address is None:
            cpus = math.ceil(opts.workers * opts.cpus_per_worker) if opts.workers else None
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
        else:
            ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    except ConnectionError as e:  # an address (or $RAY_ADDRESS) with no cluster behind it
        raise BackendError(
            f"no Ray cluster reachable ({e}); start one with `ray start --head` and set run.ray.address=auto "
            "(or its host:port), or leave run.ray.address and $RAY_ADDRESS unset for a local Ray in this process"
        ) from None


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
    """A Ray actor: the run's plan and backends, built in this process once for the whole run, on an event loop of
    its own (so the actor's threads only wait on it). The driver hands it episodes in batches (`submit`, which
    returns at once) and takes back every episode finished since its last call (`collect`), so a Ray call carries
    many episodes, not one."""

    def __init__(self, raw: dict[str, Any], files: dict[str, Any], cwd: str, keeper: Any) -> None:
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="schola-worker", daemon=True).start()
        self.error: dict[str, Any] | None = None
        self.sink, self.ledger = WorkerSink(), WorkerLedger(keeper=keeper)
        self.engine: EpisodeEngine | None = None
        self.outbox: list[dict[str, Any]] = []  # finished episodes the driver has not collected (loop thread only)
        self.filled = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
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

    def submit(self, batch: list[dict[str, Any]], graph: str | None, round: int) -> None:
        """Start these episodes (all at once: the driver sends no more than the worker's share of run.concurrency)."""
        self.loop.call_soon_threadsafe(_start, self, batch, graph, round)

    def collect(self) -> dict[str, Any]:
        """Every episode finished since the last call (waiting for one), with the usage booked meanwhile."""
        out: dict[str, Any] = self._call(_collect(self))
        return out


# The worker's coroutines live outside its class: Ray makes an actor with a coroutine method an asyncio actor, and a
# budget check's ray.get must not block Ray's own loop.
async def _setup(w: EpisodeWorker, raw: dict[str, Any], files: dict[str, Any]) -> None:
    from schola.plan import build_plan
    from schola.schema import Files

    w.engine = EpisodeEngine(build_plan(raw, Files(**files)), sink=w.sink, ledger=w.ledger)
    await w.engine.preflight()


def _start(w: EpisodeWorker, batch: list[dict[str, Any]], graph: str | None, round: int) -> None:
    for inputs in batch:
        task = w.loop.create_task(_run(w, inputs, graph, round))
        w.tasks.add(task)  # held until done (the loop keeps only weak references)
        task.add_done_callback(w.tasks.discard)


async def _run(w: EpisodeWorker, inputs: dict[str, Any], graph: str | None, round: int) -> None:
    out: dict[str, Any] = {"episode": str(inputs.get("id")), "record": None, "error": None}
    try:
        assert w.engine is not None, "the worker was not set up (ready() says why)"
        out["record"] = await w.engine.run_episode(inputs, graph=graph, round=round)
    except EpisodeFailed as e:  # the driver counts it against run.max_failed
        out["record"] = e.record
    except BaseException as e:  # even a cancelled episode comes back: the driver waits for every one it sent
        out["error"] = encode_error(e)
    finally:
        out["lines"] = w.sink.take(out["episode"])
        w.outbox.append(out)
        w.filled.set()


async def _collect(w: EpisodeWorker) -> dict[str, Any]:
    await w.filled.wait()
    w.filled.clear()
    out, w.outbox = w.outbox, []
    return {"outputs": out, "usage": w.ledger.take()}


# -- the driver side ---------------------------------------------------------------------------------------
class RayExecutor:
    """The driver's end: starts the workers (and a budget keeper when the run has a budget), sends episodes,
    writes what comes back into the run directory as it comes."""

    def __init__(self, plan: Plan, *, sink: TranscriptSink, ledger: Ledger) -> None:
        self.ray = ray = import_ray()
        self.sink, self.ledger = sink, ledger
        cfg = plan.config
        opts = cfg.run.ray
        self.startup: dict[str, float] = {}  # seconds: Ray's own start (ray_start_s), the workers' (workers_ready_s)
        clock = time.perf_counter()
        self.started = not ray.is_initialized()
        if self.started:
            start_ray(ray, opts)
        self.startup["ray_start_s"] = time.perf_counter() - clock
        self._clock = time.perf_counter()
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
        # run.concurrency split over the workers: each keeps its share in flight, topped up as episodes come back
        self.shares = [self.concurrency // n + (i < self.concurrency % n) for i in range(n)]
        actor = ray.remote(EpisodeWorker).options(num_cpus=opts.cpus_per_worker, max_concurrency=ACTOR_THREADS)
        raw, files = ray.put(plan.raw), dataclasses.asdict(plan.files)  # the config sent once
        # made once for the whole run: every run_episodes (the run's and its stages') reuses them
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
        self.startup["workers_ready_s"] = time.perf_counter() - self._clock
        log.info(
            "Ray: %s in %.1f s, %d workers ready %.1f s later",
            "a local Ray started" if self.started else "connected",
            self.startup["ray_start_s"],
            len(self.workers),
            self.startup["workers_ready_s"],
        )

    async def _get(self, ref: Any, actor: str) -> Any:
        try:
            return await asyncio.wrap_future(ref.future())
        except self.ray.exceptions.RayError as e:  # the actor's process or its node is gone
            raise BackendError(f"{actor} was lost: {str(e).splitlines()[0]}") from None

    async def run(self, todo: Sequence[dict[str, Any]], *, graph: str | None, round: int, done: Done) -> None:
        """Run `todo` on the workers; the first failure stops them all (what finished is kept) and is raised.

        Each worker gets its share of run.concurrency in one call, and one `collect` waits on it at a time: what
        comes back is every episode it finished meanwhile, which are written here, and as many new episodes go out
        in one call. Ray's cost (a few hundred microseconds of this process's CPU a call) is paid per batch."""
        if not self._checked:
            await self._check_workers()
        ledger = self.ledger
        stopped = ledger.stopped  # a stopped run's stages start no new requests anywhere
        if stopped:
            self._stop_all(stopped)
        if self.keeper is not None:
            await self._get(self.keeper.seed.remote(ledger.to_dict()), "the budget keeper")
        queue = iter(todo)
        load = [0] * len(self.workers)  # episodes sent to each worker and not back yet
        collecting: dict[asyncio.Future[Any], int] = {}
        failure: Exception | None = None

        def top_up(w: int, most: int) -> None:
            batch = list(itertools.islice(queue, min(most, self.shares[w] - load[w]))) if failure is None else []
            if batch:
                self.workers[w].submit.remote(batch, graph, round)
                load[w] += len(batch)
            if load[w]:
                ref = self.workers[w].collect.remote()
                collecting[asyncio.ensure_future(self._get(ref, f"Ray worker {w}"))] = w

        even = math.ceil(len(todo) / len(self.workers))  # fewer episodes than run.concurrency: spread alike
        for w in range(len(self.workers)):
            top_up(w, even)
        try:
            while collecting:
                ended, _ = await asyncio.wait(collecting, return_when=asyncio.FIRST_COMPLETED)
                for fut in ended:
                    w = collecting.pop(fut)
                    error: Exception | None
                    try:
                        got = fut.result()
                    except Exception as e:  # a lost worker: what it had is not coming back
                        load[w], error = 0, e
                    else:
                        load[w] -= len(got["outputs"])
                        error = self._absorb_all(got, w, done)
                    if error is not None and failure is None:
                        failure = error
                        self._stop_all(f"episode failed on another worker: {error}")
                    top_up(w, len(todo))
        except asyncio.CancelledError:
            self._stop_all("the run was interrupted")
            for fut in collecting:
                fut.cancel()
            raise
        if failure is not None:
            raise failure

    def _absorb_all(self, got: dict[str, Any], worker: int, done: Done) -> Exception | None:
        """A batch from a worker: its usage, then each episode in it; the first error (all are written)."""
        for role, usage in got["usage"]:
            self.ledger.book(role, **usage)
        first: Exception | None = None
        for out in got["outputs"]:
            try:
                error = self._absorb(out, worker, done)
            except Exception as e:  # `done` stopping the run (too many failed episodes)
                error = e
            first = first or error
        return first

    def _absorb(self, out: dict[str, Any], worker: int, done: Done) -> Exception | None:
        """One finished (or failed) episode from a worker: its transcript lines, its results line."""
        for line in out["lines"]:
            self.sink.transcript(line)
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
