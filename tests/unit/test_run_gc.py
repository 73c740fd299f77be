"""A run keeps the garbage collector off the start-up heap (issue 18, a client that holds its ratio when CPU is short).

On a 10,000-request `schola run` against the 50 ms stub the collector took about 1.0 s of the run's 3.3 s of CPU:
full collections walking the ~100,000 objects of the interpreter, Hydra, pydantic and AutoGen again and again, and
young collections every 700 allocations promoting the requests in flight. A run freezes the heap it starts with and
collects young objects less often, and gives both back when it ends."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import schola
from schola import runtime


def test_a_run_freezes_its_start_up_heap_and_gives_the_collector_back(tmp_path: Path) -> None:
    before = gc.get_threshold()
    during: list[tuple[int, tuple[int, int, int]]] = []

    def progress(done: int, total: int, ledger: Any) -> None:
        during.append((gc.get_freeze_count(), gc.get_threshold()))

    result = schola.run("lbt", ["backend=scripted", "run.episodes=3"], run_dir=tmp_path / "r", progress=progress)
    assert result.status == "finished", result.message
    assert during, "the progress callback was never called"
    for frozen, threshold in during:
        assert frozen > 10_000  # the interpreter and every module imported so far
        assert threshold[0] == runtime.YOUNG_COLLECTION_EVERY
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_runs_that_overlap_leave_the_collector_to_the_last_one_to_end() -> None:
    """Two API runs in one event loop: the first to end must not give the collector back under the other, nor the
    last restore the raised threshold."""
    before = gc.get_threshold()
    first, second = runtime.quiet_gc(), runtime.quiet_gc()
    first.__enter__()
    frozen = gc.get_freeze_count()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_freeze_count() == frozen and gc.get_threshold()[0] == runtime.YOUNG_COLLECTION_EVERY
    second.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_a_heap_its_process_froze_itself_stays_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()  # counts objects: one freed while frozen leaves it
        with runtime.quiet_gc():
            pass
        assert gc.get_freeze_count() > frozen - 1_000
    finally:
        gc.unfreeze()
