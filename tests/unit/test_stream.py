"""A run is a stream: an episode's record is written and forgotten, so what a run holds does not grow with the
number of its episodes (the driver keeps counts and score sums; stages read results.jsonl)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from schola.runtime import RunDriver, run_plan
from schola.spec import RunSpec, open_run
from schola.store import read_jsonl

# One agent step per episode; the scores are not 0/1, so their CI is a bootstrap (the one that held every value).
SCENARIO = {
    "name": "stream",
    "roles": {"student": {"role": "student"}},
    "graph": [
        {"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"},
        {"id": "grade", "kind": "score", "scorer": "value", "inputs": {"value": "grade"}, "output": "grade"},
    ],
    "scripted": [{"match": "", "reply": "ok"}],
}


def scenario(folder: Path, n: int) -> Path:
    data = folder / "records.jsonl"
    data.write_text(
        "".join(json.dumps({"id": f"q{i}", "question": f"q {i}", "grade": i % 7 / 6}) + "\n" for i in range(n))
    )
    path = folder / "stream.yaml"
    path.write_text(yaml.safe_dump({**SCENARIO, "data": {"path": str(data)}}, sort_keys=False))
    return path


def peak_of_run(folder: Path, n: int) -> tuple[int, dict[str, Any]]:
    """Peak traced memory of the run alone (the plan, and so the data, are built before tracing starts)."""
    folder.mkdir()
    plan, store = open_run(RunSpec.of(scenario(folder, n), ["backend=scripted", "cache.enabled=false"],
                                      run_dir=folder / "run"))  # fmt: skip
    tracemalloc.start()
    try:
        result = run_plan(plan, store)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.message
    return peak, json.loads((folder / "run" / "metrics.json").read_text())


def test_a_run_holds_no_state_per_episode(tmp_path: Path) -> None:
    peak_of_run(tmp_path / "warm", 20)  # what a first run imports (scipy for the CI, ...) is not the run's
    small, small_metrics = peak_of_run(tmp_path / "small", 2_000)
    big, big_metrics = peak_of_run(tmp_path / "big", 20_000)
    assert big_metrics["episodes"] == {"finished": 20_000, "failed": 0, "total": 20_000}
    grade = next(m for m in big_metrics["metrics"] if m["name"] == "grade")
    assert grade["n"] == 20_000 and grade["ci_low"] < grade["value"] < grade["ci_high"]
    # Holding each record (as the driver's results list did) costs ~1 KB an episode here: 18 MB more for the
    # big run. Ten times the episodes may cost at most 10% (or 512 KiB) more than the small run's peak (the
    # bounded sample behind a CI fills up to 4,096 values: ~0.25 MB of it).
    assert big - small < max(0.1 * small, 512 * 1024), (small, big)
    assert small_metrics["episodes"]["finished"] == 2_000


def test_stages_read_the_results_in_the_order_asked_and_hold_none(tmp_path: Path) -> None:
    """ctx.results streams results.jsonl in the order the episodes were asked for, even when the file has them in
    another order (episodes finish out of order; a resume appends): the driver sorts the file on disk."""
    path = scenario(tmp_path, 30)
    plan, store = open_run(RunSpec.of(path, ["backend=scripted", "cache.enabled=false"], run_dir=tmp_path / "run"))
    driver = RunDriver(plan, store)
    driver._ask(plan.selected)
    store.open()
    for i in [*range(29, 14, -1), *range(15)]:  # finished in another order than asked
        driver.finished({"episode": f"q{i}", "round": 0, "inputs": {"id": f"q{i}"}, "outputs": {}, "scores": {}})
    driver._unsorted = True
    seen = [r["episode"] for r in driver.stage.results]
    store.close()
    assert seen == [f"q{i}" for i in range(30)]
    assert [r["episode"] for r in read_jsonl(tmp_path / "run" / "results.jsonl")] == seen  # sorted on disk
    assert len(driver.stage.results) == 30 and driver.stage.results[-1]["episode"] == "q29"
    assert not hasattr(driver, "results")  # no list of records beside the file


def traced(fn: Any) -> tuple[Any, int, int]:
    """What `fn()` returns, the memory it still holds after (what it returns included) and its peak."""
    tracemalloc.start()
    try:
        out = fn()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, current, peak


def planned(folder: Path, n: int, *extra: str) -> Any:
    folder.mkdir(exist_ok=True)
    path = scenario(folder, n)
    return lambda: open_run(RunSpec.of(path, ["backend=scripted", "cache.enabled=false", *extra],
                                       run_dir=folder / "run"))  # fmt: skip


def test_a_data_files_plan_holds_no_record(tmp_path: Path) -> None:
    """A JSONL file's episodes are read again as they are used: the plan keeps where each line starts and its
    id's hash (16 bytes an episode), and checks ids and fields in one pass that holds 8 bytes an episode."""
    traced(planned(tmp_path / "warm", 5_000))  # (numpy, which a large plan's check of its ids imports)
    _, small_held, small_peak = traced(planned(tmp_path / "small", 2_000))
    (big, store), big_held, big_peak = traced(planned(tmp_path / "big", 20_000))
    store.release()
    # a list of the records held ~0.5 KB each: 9 MB more for 18,000 more episodes, kept and at the peak
    assert big_held - small_held < 18_000 * 64, (small_held, big_held)
    assert big_peak - small_peak < 18_000 * 100, (small_peak, big_peak)
    assert len(big.selected) == 20_000 and big.selected[-1]["id"] == "q19999"
    assert [e["id"] for e in big.selected[:3]] == ["q0", "q1", "q2"]


def test_a_resume_holds_no_record_nor_id_per_episode(tmp_path: Path) -> None:
    """Resuming reads the finished episodes in one pass and keeps their ids' hashes (8 bytes each), not the ids,
    the records or the data's inputs."""

    def half_done(folder: Path, n: int) -> Any:
        plan, store = planned(folder, n)()
        assert run_plan(plan, store).exit_code == 0
        results = folder / "run" / "results.jsonl"
        lines = results.read_text().splitlines(keepends=True)
        results.write_text("".join(lines[: n // 2]))  # the run stopped half way
        return planned(folder, n, f"resume={folder / 'run'}")

    def resumed(resume: Any) -> Any:
        plan, store = resume()
        return run_plan(plan, store)

    traced(lambda: resumed(half_done(tmp_path / "warm", 20)))
    small_run, big_run = half_done(tmp_path / "small", 2_000), half_done(tmp_path / "big", 20_000)
    small, _, small_peak = traced(lambda: resumed(small_run))
    big, _, big_peak = traced(lambda: resumed(big_run))
    assert small.exit_code == big.exit_code == 0
    assert json.loads((tmp_path / "big" / "run" / "metrics.json").read_text())["episodes"]["finished"] == 20_000
    # the ids kept as a set, the data's episodes as a dict by id and the ones left as a list: ~0.5 KB an episode
    # (9 MB for 18,000 more); hashes and their sorted copies take ~55 bytes
    assert big_peak - small_peak < 18_000 * 100, (small_peak, big_peak)


def test_the_report_is_written_as_it_is_made(tmp_path: Path) -> None:
    """report.html's episode blocks and index are never held whole, nor the transcript's offsets per episode."""
    from schola.view import write_report

    def ran(folder: Path, n: int) -> Path:
        plan, store = planned(folder, n)()
        assert run_plan(plan, store).exit_code == 0
        return folder / "run"

    traced(lambda: write_report(ran(tmp_path / "warm", 20)))
    small_dir, big_dir = ran(tmp_path / "small", 2_000), ran(tmp_path / "big", 20_000)
    _, _, small_peak = traced(lambda: write_report(small_dir))
    _, _, big_peak = traced(lambda: write_report(big_dir))
    # the index, every block and the page as one string, and each episode's offsets in a dict: ~230 bytes an
    # episode here (4 MB for 18,000 more); streamed, ~6
    assert big_peak - small_peak < 18_000 * 50, (small_peak, big_peak)
    page = (big_dir / "report.html").read_text()
    assert page.count("H4sI") == 20_000 // 100 + 1  # every block and the index, each a gzip stream


def test_reading_a_small_file_of_a_run_or_its_data_allocates_what_it_holds(tmp_path: Path) -> None:
    """`f.read(limit + 1)` allocated the whole bound (256 MiB) up front for a file of a few bytes: every run paid
    it for config.yaml and the ledger (the peak a test of memory sees), and every data file for its read."""
    from schola.data import read_bytes
    from schola.store import read_run_file

    small = tmp_path / "small.json"
    small.write_text('{"a": 1}')
    for read in (read_run_file, read_bytes):
        raw, _, peak = traced(lambda read=read: read(small))
        assert raw == b'{"a": 1}' and peak < 4 * 2**20, (read, peak)


def test_the_reply_cache_does_not_keep_every_key_of_a_long_run(tmp_path: Path) -> None:
    """The cache knew its keys to answer a miss without a query, and added each new reply's key to that set: a
    million-reply run held ~200 MB of keys. Past NEW_KEYS (20,000) new keys it asks SQLite instead, and still
    answers every key."""
    from schola.backends.cache import Cache

    cache = Cache(tmp_path, batch=256)
    cache.put("k0", {"text": "warm"})

    def put() -> None:
        for i in range(60_000):
            cache.put(f"k{i:05d}", {"text": str(i)})
        cache.flush()  # the replies on their way to SQLite are held until written

    _, held, _ = traced(put)
    assert held < 60_000 * 40, held  # the set of 60,000 keys alone was ~7 MB (~110 bytes a key)
    assert cache.get("k00007") == {"text": "7"} and cache.get("k59999") == {"text": "59999"}
    assert cache.get("missing") is None
    cache.close()


def test_a_long_run_of_misses_does_not_grow_the_caches_write_ahead_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past NEW_KEYS a miss asks SQLite, in a read transaction kept open across lookups. Its snapshot, taken again
    after each of the writer's commits, was always older than the last commit when the writer checkpointed, so the
    write-ahead log was never started over: it grew to 284 MB over a 100,000-reply run (a 29 MB cache) and its index,
    mapped in memory, by ~2 MB of RSS every 250,000 replies. While this cache writes, lookups read outside a held
    snapshot; SQLite's checkpoint then starts the log over at its 1,000 pages (4 MB)."""
    import hashlib

    from schola.backends import cache as module
    from schola.backends.cache import Cache

    monkeypatch.setattr(module, "NEW_KEYS", 100)  # (20,000 in a run)
    cache = Cache(tmp_path, batch=256)
    reply = {"text": "An answer." * 5, "prompt_tokens": 12, "completion_tokens": 3, "finish_reason": "stop",
             "cost_usd": None, "top_logprobs": None}  # fmt: skip
    for i in range(30_000):
        key = hashlib.sha256(str(i).encode()).hexdigest()  # as random as a real key: the index's pages all change
        assert cache.get(key) is None
        cache.put(key, reply)
    with cache._written:
        cache._written.wait_for(lambda: cache._queued == 0)
    wal = (tmp_path / "cache.sqlite-wal").stat().st_size
    assert wal < 12 * 2**20, (wal, (tmp_path / "cache.sqlite").stat().st_size)  # before: 98 MB (a 10 MB cache)
    assert cache.get(hashlib.sha256(b"7").hexdigest()) == reply
    cache.close()


def test_until_decided_reads_each_batch_once_not_the_run_again(tmp_path: Path, monkeypatch: Any) -> None:
    """run.until=decided tested its findings over every finished episode after each batch (results.jsonl sorted
    and read whole each time: quadratic in the run); the tests now carry their sums and read each batch once."""
    import schola.store

    data = tmp_path / "records.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": "q", "grade": i % 2 - 0.5}) + "\n"
                            for i in range(400)))  # fmt: skip
    never = {"name": "never", "claim": "a grade of 0 on average", "effect": "grade", "bounds": [-1, 1]}
    path = tmp_path / "decided.yaml"
    path.write_text(yaml.safe_dump({**SCENARIO, "data": {"path": str(data)}, "findings": [never]}, sort_keys=False))
    read = 0

    def counted(f: Any) -> Any:  # every reader of a JSONL file goes through jsonl_lines; results lines are counted
        nonlocal read
        for item in jsonl_lines(f):
            read += "inputs" in item[2]
            yield item

    jsonl_lines = schola.store.jsonl_lines
    monkeypatch.setattr(schola.store, "jsonl_lines", counted)
    overrides = ["backend=scripted", "cache.enabled=false", "run.until=decided", "run.concurrency=4"]
    plan, store = open_run(RunSpec.of(path, overrides, run_dir=tmp_path / "run"))
    read = 0
    result = run_plan(plan, store)
    assert result.exit_code == 0 and result.status == "finished", result.message  # never decided: all 100 batches
    assert 400 <= read < 10 * 400, read  # every batch read everything before it again: ~40,000 lines


def test_the_carried_sequential_test_decides_as_the_whole_series_does() -> None:
    """Fed in batches of any size, the carried betting test reaches the decision `sequential_decision` reaches
    over the whole series (its running sums are added in the same order)."""
    import numpy as np

    from schola.findings import _Bets, sequential_decision

    rng = np.random.default_rng(1)
    decisions = []
    for trial in range(200):
        n, contrast = int(rng.integers(1, 300)), bool(trial % 2)
        bounds = (0.0, 1.0) if contrast else (-1.0, 1.0)
        x = np.clip(rng.normal(rng.choice([0.0, 0.3, -0.3]), 0.5, n), *bounds).tolist()
        bets, at = _Bets(), 0
        while at < n:
            size = int(rng.integers(1, 40))
            bets.add(x[at : at + size], bounds, contrast, 0.05)
            at += size
        assert bets.decision == sequential_decision(x, bounds, contrast=contrast), trial
        decisions.append(bets.decision)
    assert {-1, 0, 1} <= set(decisions)  # every outcome was checked


def test_a_data_files_records_read_again_are_the_loaders_list(tmp_path: Path) -> None:
    """FileRecords (a JSONL file, read again as used) gives the episodes, slices, items and picks that the list of
    the same records (a JSON file) gives: whole, after a filter, shuffled and sampled."""
    from schola.data import DataConfig, FileRecords, load_records

    rows = [{"id": f"r{i}", "n": i} if i % 3 else {"n": i} for i in range(40)]  # every third id from its row
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "d.json").write_text(json.dumps(rows))
    for extra in ({}, {"filter": "n % 2 == 0"}, {"shuffle": True}, {"sample": 7}):
        lazy = load_records(DataConfig(path=str(tmp_path / "d.jsonl"), **extra), seed=3)
        held = list(load_records(DataConfig(path=str(tmp_path / "d.json"), **extra), seed=3))
        assert isinstance(lazy, FileRecords) and list(lazy) == held, extra
        assert list(lazy[2:5]) == held[2:5] and list(lazy[1:][1:3]) == held[1:][1:3] and lazy[-1] == held[-1]
        assert list(lazy.take([3, 0])) == [held[3], held[0]] and list(lazy[::2]) == held[::2]
    assert FileRecords.load(tmp_path / "d.jsonl", DataConfig(path="d.jsonl")).offsets is None  # nothing per record


def test_a_line_of_unicode_whitespace_is_blank_to_every_reader_of_a_data_file(tmp_path: Path) -> None:
    """A line holding only a no-break space (or a BOM at the start) is skipped by the row reader; the lazy episodes
    must skip it too, or their count and offsets disagree ("changed while the run used it")."""
    from schola.data import DataConfig, load_records

    (tmp_path / "d.jsonl").write_bytes(b'\xef\xbb\xbf\n{"id": "a"}\n\xc2\xa0\n{"id": "b"}\n\xe2\x80\x83\n')
    (tmp_path / "d.json").write_text(json.dumps([{"id": "a"}, {"id": "b"}]))
    lazy = load_records(DataConfig(path=str(tmp_path / "d.jsonl")))
    assert list(lazy) == list(load_records(DataConfig(path=str(tmp_path / "d.json"))))
    assert len(lazy) == 2 and lazy[1] == {"id": "b"} and list(lazy.take([1, 0])) == [{"id": "b"}, {"id": "a"}]
