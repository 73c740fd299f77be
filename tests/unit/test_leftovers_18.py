"""Issue 18's review leftovers: one home for the sequential test, results.jsonl read in one pass, the live
viewer's walk cached, `schola report` reading a sweep once."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import schola.store
from schola.findings import Wealth, log_capital
from schola.store import RunStore


def test_log_capital_carried_in_batches_is_the_whole_series() -> None:
    """The batch path (`log_capital` over a series) and the incremental one (`run.until=decided`: the same call
    fed batch after batch with a carried `Wealth`) are one computation: the same numbers, bit for bit, also with
    several series at once and a grid of candidate means."""
    rng = np.random.default_rng(4)
    m = np.linspace(0, 1, 21)[1:-1]
    for _ in range(20):
        x = rng.random((3, int(rng.integers(1, 200))))
        whole = log_capital(x, m)
        wealth, parts, at = Wealth(), [], 0
        while at < x.shape[-1]:
            size = int(rng.integers(1, 30))
            parts.append(log_capital(x[:, at : at + size], m, wealth=wealth))
            at += size
        for side in (0, 1):
            assert np.array_equal(np.concatenate([p[side] for p in parts], axis=-2), whole[side])
        assert wealth.t == x.shape[-1]


def results_file(tmp_path: Path, ids: list[str]) -> Path:
    lines = [json.dumps({"episode": e, "inputs": {"i": i}, "scores": {"s": 1}}) for i, e in enumerate(ids)]
    lines.insert(len(lines) // 2, '{"episode": "torn')  # a damaged line, dropped
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_results_once_reads_the_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """results(once=True) reads each line of results.jsonl once (it read the whole file twice: a first pass for
    the ids that repeat); a repeated line is read back once more to compare its id."""
    ids = [f"e{i}" for i in range(10_000)] + ["e5", "e9999"]
    run = results_file(tmp_path, ids)
    read = 0

    def counted(f: Any) -> Iterator[Any]:
        nonlocal read
        for x in real(f):
            read += 1
            yield x

    real = schola.store.jsonl_lines
    monkeypatch.setattr(schola.store, "jsonl_lines", counted)
    got = [r["episode"] for r in RunStore(run).results()]
    assert got == ids[:10_000]
    assert read <= len(ids) + 2, read  # 2 * 10,002 before


def test_results_once_drops_a_repeat_by_its_id_not_its_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ids that share a hash are both kept, each once, before and after the remembered hashes are merged into
    their sorted arrays (here 30,000 ids, every one then met again, in another order)."""
    import builtins

    def shared(value: Any) -> int:  # "a" and "b", and "c" and "d", share a hash
        return {"a": 1, "b": 1, "c": 2, "d": 2}.get(value, builtins.hash(value))

    monkeypatch.setattr(schola.store, "hash", shared, raising=False)
    first = ["a", *(f"e{i}" for i in range(30_000)), "b", "c"]
    again = ["b", "a", *(f"e{i}" for i in range(29_999, -1, -1)), "d", "c", "d"]
    run = results_file(tmp_path, first + again)
    assert [r["episode"] for r in RunStore(run).results()] == [*first, "d"]
    assert [r["episode"] for r in RunStore(run).results(once=False)] == first + again


def test_the_live_viewer_lists_nothing_again_for_an_unchanged_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request for an unchanged sweep lists no folder (it walked the tree and listed every run at each request);
    a run's file that grows, and a run that appears, are seen at the next request."""
    from schola.view.serve import Live
    from tests.browser.runs import quiz_spec, run, write_yaml

    sweep = tmp_path / "sweep"
    spec = write_yaml(tmp_path / "quiz.yaml", quiz_spec(2))
    for name in ("a", "b"):
        run(spec, sweep / name, cache=tmp_path / "cache")
    old = time.time() - 60  # folders last changed a minute ago (a change just now is listed again, to be sure)
    for folder in [sweep, *(p for p in sweep.rglob("*") if p.is_dir())]:
        os.utime(folder, (old, old))
    listed = 0
    real = os.scandir

    def counted(path: Any = ".") -> Any:
        nonlocal listed
        listed += 1
        return real(path)

    live = Live(sweep)
    first = live.current()
    assert [r["name"] for r in first[3]["runs"]] == ["a", "b"]
    monkeypatch.setattr(os, "scandir", counted)
    monkeypatch.setattr(os, "listdir", lambda *a: pytest.fail("listed"))
    assert live.current()[0] == first[0]
    assert listed == 0
    with open(sweep / "a" / "results.jsonl", "a") as f:  # grows (a line the viewer drops: not an episode)
        f.write("{}\n")
    assert live.current()[0] != first[0]  # seen by its size (the payload is then built again)
    monkeypatch.undo()
    shutil.copytree(sweep / "b", sweep / "c")
    assert [r["name"] for r in live.current()[3]["runs"]] == ["a", "b", "c"]


def test_schola_report_reads_each_file_of_a_sweep_once(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`schola report` reads each file of each run once for its two tables (the metrics table and the findings'
    read the sweep again: metrics.json three times with a finding across arms, config.yaml twice)."""
    from tests.unit.test_findings_sweep import sweep, variants

    root = sweep(tmp_path, cli, variants(b_hits={0, 1}), "scenario.variant=a,b")
    opened: Counter[str] = Counter()
    real = schola.store.open_run_file

    def counted(path: Path) -> Any:
        opened[str(Path(path).relative_to(root))] += 1
        return real(path)

    monkeypatch.setattr(schola.store, "open_run_file", counted)
    code, out = cli("report", str(root))
    assert code == 0 and "a_beats_b: supported" in out, out
    assert len(opened) == 8 and set(opened.values()) == {1}, opened  # metrics, config, ledger and results of each
