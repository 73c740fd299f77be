"""A run survives a bad episode: an episode that raises is recorded as failed (error, step, inputs; its replies
kept), the others go on while `run.max_failed` allows, metrics say how many episodes they cover, and resume
runs the failed ones again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from schola import plugins
from schola.errors import BackendError
from schola.roles import ActRequest, Reply, Role, RoleConfig
from schola.view.payload import Transcript, episodes
from tests.conftest import read_jsonl
from tests.unit.test_view import unpack

ECHO = ["backend=scripted", "cache.enabled=false"]


def labelled(empty: tuple[int, ...] = (2,), n: int = 6) -> dict[str, Any]:
    """Like the SIGHT CSV: some rows have an empty label, which the score step's target expression cannot map."""
    rows = [{"id": f"c{i}", "comment": f"comment {i} says yes", "label": "" if i in empty else "yes"} for i in range(n)]
    return {
        "name": "labels",
        "data": {"records": rows},
        "roles": {"annotator": {"role": "student"}},
        "graph": [
            {"id": "annotate", "kind": "agent", "role": "annotator", "prompt": "{{ comment }}", "output": "reply"},
            {"id": "agree", "kind": "score", "scorer": "contains", "output": "agrees",
             "inputs": {"text": "reply", "target": "{'yes': 'yes', 'no': 'no'}[label]"}},
        ],
    }  # fmt: skip


def write(tmp_path: Path, scenario: dict[str, Any]) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def metrics(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "metrics.json").read_text()))


def test_by_default_the_first_failure_stops_the_run_naming_episode_and_step_and_is_recorded(
    tmp_path: Path, cli: Any
) -> None:
    run = tmp_path / "r"
    code, out = cli("run", str(write(tmp_path, labelled())), *ECHO, "run.concurrency=1", f"hydra.run.dir={run}")
    assert code == 2, out
    assert "episode 'c2' failed at step 'agree'" in out and f"resume={run}" in out
    results = read_jsonl(run / "results.jsonl")
    assert [r["episode"] for r in results] == ["c0", "c1", "c2"]  # what finished before it is kept
    failed = results[-1]
    assert failed["error"]["step"] == "agree" and "label" in failed["error"]["message"]
    assert failed["inputs"]["label"] == "" and failed["outputs"]["reply"] == "comment 2 says yes"
    assert [t["episode"] for t in read_jsonl(run / "transcript.jsonl")] == ["c0", "c1", "c2"]  # its reply kept
    assert metrics(run)["episodes"] == {"finished": 2, "failed": 1, "total": 6}


def test_within_max_failed_the_others_go_on_and_metrics_cover_the_finished(tmp_path: Path, cli: Any) -> None:
    run = tmp_path / "r"
    spec = write(tmp_path, labelled(empty=(1, 4)))
    code, out = cli("run", str(spec), *ECHO, "run.max_failed=2", f"hydra.run.dir={run}")
    assert code == 0, out
    results = read_jsonl(run / "results.jsonl")
    assert sorted(r["episode"] for r in results if "error" in r) == ["c1", "c4"]
    assert sorted(r["episode"] for r in results if "error" not in r) == ["c0", "c2", "c3", "c5"]
    m = metrics(run)
    assert m["status"] == "finished" and m["episodes"] == {"finished": 4, "failed": 2, "total": 6}
    assert next(r for r in m["metrics"] if r["name"] == "agrees")["n"] == 4
    status = json.loads((run / "status.json").read_text())
    assert "2 episodes failed" in status["message"] and f"resume={run}" in status["hint"]


def test_a_fraction_bounds_the_failures_and_one_more_stops_the_run(tmp_path: Path, cli: Any) -> None:
    spec = write(tmp_path, labelled(empty=(1, 4), n=10))
    assert cli("run", str(spec), *ECHO, "run.max_failed=0.2", f"hydra.run.dir={tmp_path / 'a'}")[0] == 0  # 2 of 10
    code, out = cli("run", str(spec), *ECHO, "run.max_failed=0.1", f"hydra.run.dir={tmp_path / 'b'}")  # 1 of 10
    assert code == 2 and "failed at step 'agree'" in out, out


def test_max_failed_is_a_count_or_a_fraction_below_one(tmp_path: Path, cli: Any) -> None:
    spec = str(write(tmp_path, labelled()))
    for good in ("3", "0.05"):
        assert cli("check", spec, *ECHO, f"run.max_failed={good}")[0] == 0
    for bad in ("1.5", "-1", "many"):
        code, out = cli("check", spec, *ECHO, f"run.max_failed={bad}")
        assert code == 2 and "run.max_failed" in out, (bad, out)


def test_a_run_stopped_by_a_failure_goes_on_when_resumed_with_a_larger_max_failed(tmp_path: Path, cli: Any) -> None:
    run = tmp_path / "r"
    code, _ = cli("run", str(write(tmp_path, labelled())), *ECHO, "run.concurrency=1", f"hydra.run.dir={run}")
    assert code == 2
    code, out = cli("run", f"resume={run}", "run.max_failed=1")
    assert code == 0, out
    results = read_jsonl(run / "results.jsonl")
    assert sorted(r["episode"] for r in results) == [f"c{i}" for i in range(6)]  # c2 once: retried, failed again
    assert [r["episode"] for r in results if "error" in r] == ["c2"]


FIXED: dict[str, bool] = {"fixed": False}


def strict_label(text: str, label: str) -> float:
    if not label and not FIXED["fixed"]:
        raise ValueError("empty label")
    return float(label in text)


def test_resume_runs_the_failed_episodes_again(tmp_path: Path, cli: Any) -> None:
    spec = labelled(empty=(1, 4))
    spec["graph"][1] = {"id": "agree", "kind": "score", "scorer": "strict_label", "output": "agrees",
                        "inputs": {"text": "reply", "label": "label"}}  # fmt: skip
    run = tmp_path / "r"
    with plugins.scorers.registered("strict_label", strict_label):
        code, out = cli("run", str(write(tmp_path, spec)), *ECHO, "run.max_failed=2", f"hydra.run.dir={run}")
        assert code == 0, out
        assert [r["error"]["type"] for r in read_jsonl(run / "results.jsonl") if "error" in r] == ["PluginError"] * 2
        FIXED["fixed"] = True
        try:
            code, out = cli("run", f"resume={run}")
        finally:
            FIXED["fixed"] = False
    assert code == 0, out
    results = read_jsonl(run / "results.jsonl")
    assert sorted(r["episode"] for r in results) == [f"c{i}" for i in range(6)]
    assert not any("error" in r for r in results)
    assert sorted(t["episode"] for t in read_jsonl(run / "transcript.jsonl")) == [f"c{i}" for i in range(6)]
    assert metrics(run)["episodes"] == {"finished": 6, "failed": 0, "total": 6}


def test_show_and_the_viewer_list_the_failed_episodes(tmp_path: Path, cli: Any) -> None:
    run = tmp_path / "r"
    assert (
        cli("run", str(write(tmp_path, labelled(empty=(1, 4)))), *ECHO, "run.max_failed=2", f"hydra.run.dir={run}")[0]
        == 0
    )
    code, out = cli("show", str(run))
    assert code == 0 and "4/6 episodes, 2 failed" in out
    assert "failed: episode 'c1' at step 'agree'" in out and "failed: episode 'c4' at step 'agree'" in out
    listed = episodes(run, Transcript(run / "transcript.jsonl"), [])
    index = unpack(listed["index"])
    assert sorted(e["id"] for e in index if e["status"] == "failed") == ["c1", "c4"]
    chunk: dict[str, Any] = {}
    for block in listed["chunks"]:
        chunk |= unpack(block)
    assert chunk["c1"]["error"]["step"] == "agree"


class Unreachable(Role):
    """A role whose endpoint is gone for good: not the episode's fault, so the run stops (exit 3)."""

    class Config(RoleConfig):
        backend: str | None = None

    async def act(self, request: ActRequest) -> Reply:
        raise BackendError("cannot reach http://127.0.0.1:9/v1")


def test_a_backend_failure_stops_the_run_naming_the_episode_and_step(tmp_path: Path, cli: Any) -> None:
    spec = labelled(empty=())
    spec["roles"]["annotator"] = {"role": "unreachable_test"}
    run = tmp_path / "r"
    with plugins.roles.registered("unreachable_test", Unreachable):
        code, out = cli(
            "run", str(write(tmp_path, spec)), *ECHO, "run.max_failed=5", "run.concurrency=1", f"hydra.run.dir={run}"
        )
    assert code == 3, out  # run.max_failed does not count it: every other episode would fail the same way
    assert "episode 'c0', step 'annotate': cannot reach http://127.0.0.1:9/v1" in out
    assert read_jsonl(run / "results.jsonl") == []
