"""benchmarks/client_saturation.py measures a real `schola run` over the run's own window (issue 18): its CPU per
request was the whole child process less a one-episode process, so start-up (~0.9 s of CPU, +-0.1 s from run to run)
moved the figure by a third of the bare loop's CPU and took a 200-request round negative."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def test_a_schola_runs_cpu_and_wall_are_its_run_windows_not_its_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "client_saturation", raising=False)
    import client_saturation
    from stub_server import start_stub

    proc, base = start_stub(delay_ms=1.0)
    try:
        run = asyncio.run(client_saturation.schola_run(base, 4, 12))
    finally:
        proc.kill()
    client_saturation.per_request_cpu([run], 12)
    # The window (preflight, the episodes, stages, closing the backends) is a sliver of a process whose start-up
    # (interpreter, imports, composition) is most of its CPU; the whole process's figure is kept beside it.
    assert 0 < run["cpu_window_fixed_s"] < run["cpu_fixed_s"] / 4
    assert 0 < run["cpu_window_s"] < run["cpu_total_s"] / 2
    assert 0 < run["seconds"] < 30 and run["requests"] == 12
