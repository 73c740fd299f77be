"""A run is a stream: an episode's record is written and forgotten, so what a run holds does not grow with the
number of its episodes (the driver keeps counts and score sums; stages read results.jsonl)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

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
