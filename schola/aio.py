"""Async helpers the engine shares: gather that fails fast, and running a coroutine from synchronous code whether
or not an event loop is already running (a notebook's is)."""

from __future__ import annotations

import asyncio
import threading
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


async def gather_all(coros: list[Awaitable[T]]) -> list[T]:
    """Like asyncio.gather, but the first failure cancels the rest and is raised as itself."""
    loop = asyncio.get_running_loop()  # a coroutine becomes a task directly: ensure_future's checks cost a fifth
    tasks = [loop.create_task(c) if type(c) is types.CoroutineType else asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()


class _Ready:
    """An awaitable that is already done (awaiting it returns None without suspending)."""

    def __await__(self) -> Generator[Any, None, None]:
        # await takes any iterator: an empty one returns at once, without a generator made per await
        return iter(())  # type: ignore[return-value]


READY = _Ready()


class Slots:
    """At most `n` holders at once, served first come first served: asyncio.Semaphore's contract for `async with`,
    at a fraction of its cost per request. Python 3.11's Semaphore walks its waiters in `locked()` on every acquire
    (O(waiters) with thousands queued) and enters through two coroutines; here entering a free slot is a counter,
    and a released slot is handed straight to the first waiter (so a newcomer never overtakes the queue)."""

    def __init__(self, n: int) -> None:
        self._value = n
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        """True when a newcomer would wait."""
        return self._value <= 0 or bool(self._waiters)

    def __aenter__(self) -> Awaitable[None]:
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return READY
        return self._wait()

    def __aexit__(self, *exc: object) -> Awaitable[None]:
        self.release()
        return READY

    async def _wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():  # the slot was handed over as this waiter was cancelled
                self.release()
            elif fut in self._waiters:  # (a release may have dropped it already)
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to it: the count of free ones is unchanged
                return
        self._value += 1


@types.coroutine
def resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """Await `coro` from where it stopped: it was stepped once by hand (`yielded = coro.send(None)`) to see whether
    it finishes without suspending. What the awaiting task sends or throws in goes on to `coro`, as `await` does."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as e:  # a cancel, or what the awaited future raised
            try:
                yielded = coro.throw(e)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


def in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `factory()` to completion and return its result.

    Outside an event loop this is `asyncio.run`; inside one (Jupyter, an async test) the coroutine runs in a
    fresh loop on a worker thread, so the caller's loop is never re-entered."""
    if not in_running_loop():
        return asyncio.run(factory())
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=work, name="schola-run", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
