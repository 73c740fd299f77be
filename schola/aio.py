"""Async helpers the engine shares: gather that fails fast, and running a coroutine from synchronous code whether
or not an event loop is already running (a notebook's is)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def gather_all(coros: list[Awaitable[T]]) -> list[T]:
    """Like asyncio.gather, but the first failure cancels the rest and is raised as itself."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()


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
