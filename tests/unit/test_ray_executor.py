"""run.executor=ray on a real local Ray cluster (started here on 127.0.0.1, two worker processes): the run
directory holds what a local run of the same scenario writes, the budget stops it at the same limit, and it
resumes like a local run."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SCRIPTED, read_jsonl

LBT = ["run", "scenario=lbt", *SCRIPTED, "scenario.data.problems=6", "cache.enabled=false"]
RAY = ["run.executor=ray", "run.ray.workers=2"]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="needs schola[ray]")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> dict[int, int]:
    """Episodes each Ray worker ran (counted where the driver takes its results)."""
    from schola.executors import RayExecutor

    counts: dict[int, int] = {}
    absorb = RayExecutor._absorb

    def counting(self: RayExecutor, out: dict[str, Any], worker: int, done: Any) -> Exception | None:
        counts[worker] = counts.get(worker, 0) + int(out["error"] is None)
        return absorb(self, out, worker, done)

    monkeypatch.setattr(RayExecutor, "_absorb", counting)
    return counts


def results(run: Path) -> list[dict[str, Any]]:
    return sorted(read_jsonl(run / "results.jsonl"), key=lambda r: r["episode"])


def replies(run: Path) -> list[tuple[Any, ...]]:
    """Transcript lines as (episode, node, agent, sample, prompt, text), latency left out, in a fixed order."""
    keys = ("episode", "node", "agent", "sample", "prompt", "text")
    return sorted(tuple(t[k] for k in keys) for t in read_jsonl(run / "transcript.jsonl"))


def metrics(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "metrics.json").read_text()))


def test_a_ray_run_writes_what_a_local_run_writes(
    cli: Any, tmp_path: Path, ray_cluster: Any, dispatched: dict[int, int]
) -> None:
    code, out = cli(*LBT, f"hydra.run.dir={tmp_path / 'local'}")
    assert code == 0, out
    code, out = cli(*LBT, *RAY, f"hydra.run.dir={tmp_path / 'ray'}")
    assert code == 0, out
    # both workers ran episodes, and every episode came back from one of them
    assert sorted(dispatched) == [0, 1] and min(dispatched.values()) >= 1 and sum(dispatched.values()) == 6
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert len(results(ray)) == 6 and results(ray) == results(local)
    assert replies(ray) == replies(local)
    a, b = metrics(local), metrics(ray)
    assert b["status"] == "finished" and b["episodes"] == {"finished": 6, "failed": 0, "total": 6}
    assert b["metrics"] == a["metrics"]  # the same rows, CIs included: stages see results in episode order
    usage = {k: v for k, v in a["usage"]["total"].items() if k != "latency_s"}
    assert {k: v for k, v in b["usage"]["total"].items() if k != "latency_s"} == usage
    assert usage["requests"] == len(replies(local)) > 0  # every reply a worker got was booked on the driver
    assert json.loads((ray / "ledger.json").read_text())["spent"]["requests"] == usage["requests"]


def test_a_ray_run_stopped_by_its_budget_resumes_to_the_local_results(
    cli: Any, tmp_path: Path, ray_cluster: Any
) -> None:
    local, run = tmp_path / "local", tmp_path / "ray"
    assert cli(*LBT, f"hydra.run.dir={local}")[0] == 0
    per_episode = len(replies(local)) // 6
    code, out = cli(*LBT, *RAY, "budget.max_requests=40", "run.concurrency=2", f"hydra.run.dir={run}")
    assert code == 4, out
    assert f"resume={run}" in out and "budget.max_requests" in out
    assert json.loads((run / "status.json").read_text())["status"] == "budget"
    # the two workers shared one budget: exactly the limit was spent, not a limit per worker
    assert json.loads((run / "ledger.json").read_text())["spent"]["requests"] == 40
    finished = len(results(run))
    assert 1 <= finished < 6 and finished * per_episode <= 40
    assert metrics(run)["episodes"]["finished"] == finished
    code, out = cli("run", f"resume={run}", "budget.max_requests=1000")
    assert code == 0, out
    assert results(run) == results(local)
    assert replies(run) == replies(local)  # unfinished episodes' lines dropped, finished ones' kept once
    spent = json.loads((run / "ledger.json").read_text())["spent"]["requests"]
    assert spent - 40 == (6 - finished) * per_episode  # the resume ran only the unfinished episodes
    assert metrics(run)["metrics"] == metrics(local)["metrics"]


SCENARIO = {
    "name": "qa",
    "data": {"records": [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(6)]},
    "roles": {"student": {"role": "student"}},
    "graph": [
        {"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"},
        {"id": "ok", "kind": "score", "scorer": "numeric_match", "inputs": {"prediction": "reply", "target": "answer"},
         "output": "correct"},
    ],
    "scripted": [{"match": "What is 3 ", "reply": "{{ numbers(prompt)[5] }}"}, {"match": "What is (\\d+)", "reply": "{{ numbers(prompt)[0] + 1 }}"}],
}  # fmt: skip


def test_a_failing_episode_on_a_worker_is_recorded_and_bounded_as_it_would_be_locally(
    cli: Any, tmp_path: Path, ray_cluster: Any
) -> None:
    path = tmp_path / "qa.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    base = ["run", str(path), *SCRIPTED, "cache.enabled=false"]
    for name, executor in (("local", []), ("ray", RAY)):
        code, out = cli(*base, *executor, f"hydra.run.dir={tmp_path / name}")
        assert code == 2, out  # stopped at the first failure (run.max_failed=0), with the resume hint
        assert "episode 'q3' failed at step 'ask'" in out and "scripted rule failed" in out and "resume=" in out
        failed = [r for r in read_jsonl(tmp_path / name / "results.jsonl") if "error" in r]
        assert [(r["episode"], r["error"]["step"]) for r in failed] == [("q3", "ask")]
    code, out = cli(*base, *RAY, "run.max_failed=1", f"hydra.run.dir={tmp_path / 'bounded'}")
    assert code == 0, out  # the others went on
    done = read_jsonl(tmp_path / "bounded" / "results.jsonl")
    assert sorted(r["episode"] for r in done if "error" not in r) == ["q0", "q1", "q2", "q4", "q5"]
    assert all(r["scores"]["correct"] == 1.0 for r in done if "error" not in r)
    assert metrics(tmp_path / "bounded")["episodes"] == {"finished": 5, "failed": 1, "total": 6}


def test_without_ray_installed_the_error_says_how_to_install_it(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, out = cli(*LBT, *RAY, f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 2, out
    assert "pip install 'schola[ray]'" in out and "run.executor" in out
    assert not (tmp_path / "r").exists()  # found with the config, before anything was written


def test_more_workers_than_the_cluster_has_cpus_is_a_config_error_not_a_hang(
    cli: Any, tmp_path: Path, ray_cluster: Any
) -> None:
    code, out = cli(*LBT, "run.executor=ray", "run.ray.workers=3", f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 2, out
    assert "3 workers x 1.0 CPUs need more than the Ray cluster's 2 CPUs" in out and "run.ray.workers" in out


def test_the_executor_is_checked_with_the_config(cli: Any) -> None:
    code, out = cli("check", *SCRIPTED, "run.executor=slurm")
    assert code == 2 and "run.executor" in out and "'local' or 'ray'" in out, out


def test_rounds_a_stage_starts_run_on_the_workers_too(cli: Any, tmp_path: Path, ray_cluster: Any) -> None:
    """lbt's M3 stage runs its beam search as rounds of episodes of other graphs (ctx.run_episodes) and asks
    roles itself (ctx.act, on the driver): the Ray run still writes what the local one does."""
    m3 = ["run", "scenario=lbt", "scenario.variant=m3", *SCRIPTED, "cache.enabled=false"]
    assert cli(*m3, f"hydra.run.dir={tmp_path / 'local'}")[0] == 0
    code, out = cli(*m3, *RAY, f"hydra.run.dir={tmp_path / 'ray'}")
    assert code == 0, out
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert len({r.get("round") for r in results(local)}) > 1  # the stage did start rounds
    assert results(ray) == results(local) and replies(ray) == replies(local)
    assert metrics(ray)["metrics"] == metrics(local)["metrics"]
