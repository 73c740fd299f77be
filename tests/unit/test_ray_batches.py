"""run.executor=ray sends episodes in batches and keeps its workers for the whole run: a Ray call carries many
episodes, a failure in a batch still stops every worker, a stage's rounds reuse the run's workers, and the local
Ray a run starts for itself is its own (the workers' CPUs, stopped with the run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SCRIPTED, read_jsonl

EPISODES = 300
RAY = ["run.executor=ray", "run.ray.workers=2"]


def qa(path: Path, fail: str | None = None) -> Path:
    """A one-step scenario of EPISODES questions; the scripted reply to question `fail` raises."""
    rules = [{"match": f"What is {fail} ", "reply": "{{ numbers(prompt)[5] }}"}] if fail else []
    scenario = {
        "name": "qa",
        "data": {"records": [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}
                             for i in range(EPISODES)]},
        "roles": {"student": {"role": "student"}},
        "graph": [
            {"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"},
            {"id": "ok", "kind": "score", "scorer": "numeric_match",
             "inputs": {"prediction": "reply", "target": "answer"}, "output": "correct"},
        ],
        "scripted": [*rules, {"match": "What is (\\d+)", "reply": "{{ numbers(prompt)[0] + 1 }}"}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(scenario))
    return path


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="needs schola[ray]")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Ray call the driver waited on, by who answered it."""
    from schola.executors import RayExecutor

    seen: list[str] = []
    get = RayExecutor._get

    async def counting(self: RayExecutor, ref: Any, actor: str) -> Any:
        seen.append(actor)
        return await get(self, ref, actor)

    monkeypatch.setattr(RayExecutor, "_get", counting)
    return seen


def test_a_local_ray_is_the_runs_own(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With run.ray.address and $RAY_ADDRESS unset, the run starts a Ray of its own with the CPUs its workers
    reserve (not one per CPU of the machine, each prestarting a worker process), and stops it when the run ends.
    Runs first: no Ray may be up in this process."""
    ray = pytest.importorskip("ray", reason="needs schola[ray]")
    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    seen: dict[str, Any] = {}
    init = ray.init

    def spying(*args: Any, **kwargs: Any) -> Any:
        out = init(*args, **kwargs)
        seen["cpus"] = ray.cluster_resources().get("CPU")
        seen["nodes"] = len(ray.nodes())
        return out

    monkeypatch.setattr(ray, "init", spying)
    code, out = cli("run", str(qa(tmp_path / "qa.yaml")), *SCRIPTED, "run.executor=ray", "run.ray.workers=1",
                    "run.episodes=4", "cache.enabled=false", f"hydra.run.dir={tmp_path / 'r'}")  # fmt: skip
    assert code == 0, out
    assert seen == {"cpus": 1.0, "nodes": 1}
    assert not ray.is_initialized()  # stopped with the run
    assert len(read_jsonl(tmp_path / "r" / "results.jsonl")) == 4


def test_episodes_go_to_the_workers_in_batches(cli: Any, tmp_path: Path, ray_cluster: Any, calls: list[str]) -> None:
    """300 episodes, 64 in flight over 2 workers: far fewer Ray calls than episodes (one call an episode before),
    every episode written once, both workers used."""
    code, out = cli("run", str(qa(tmp_path / "qa.yaml")), *SCRIPTED, *RAY, "run.concurrency=64", "cache.enabled=false",
                    f"hydra.run.dir={tmp_path / 'r'}")  # fmt: skip
    assert code == 0, out
    done = read_jsonl(tmp_path / "r" / "results.jsonl")
    assert sorted(r["episode"] for r in done) == sorted(f"q{i}" for i in range(EPISODES))
    assert all(r["scores"]["correct"] == 1.0 for r in done)
    lines = read_jsonl(tmp_path / "r" / "transcript.jsonl")
    assert sorted(t["episode"] for t in lines) == sorted(f"q{i}" for i in range(EPISODES))  # one reply each
    on_workers = [c for c in calls if c.startswith("Ray worker")]
    assert {"Ray worker 0", "Ray worker 1"} <= set(on_workers)
    assert len(on_workers) <= EPISODES // 3, len(on_workers)


def test_a_failure_in_a_batch_stops_every_worker(cli: Any, tmp_path: Path, ray_cluster: Any) -> None:
    """An episode that fails (run.max_failed=0) stops the run as in a local run: nothing more is sent, what the
    workers had in flight comes back and is written, and the exit code and hint are a local run's."""
    code, out = cli("run", str(qa(tmp_path / "qa.yaml", fail="5")), *SCRIPTED, *RAY, "run.concurrency=8",
                    "cache.enabled=false", f"hydra.run.dir={tmp_path / 'r'}")  # fmt: skip
    assert code == 2, out
    assert "episode 'q5' failed at step 'ask'" in out and "resume=" in out
    done = read_jsonl(tmp_path / "r" / "results.jsonl")
    assert [r["episode"] for r in done if "error" in r] == ["q5"]
    assert len(done) < EPISODES // 2  # stopped: at most what was in flight went on
    written = {t["episode"] for t in read_jsonl(tmp_path / "r" / "transcript.jsonl")}
    assert written <= {r["episode"] for r in done}  # the driver wrote every line it took, for episodes it recorded


def test_a_stages_rounds_reuse_the_runs_workers(
    cli: Any, tmp_path: Path, ray_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lbt's M3 stage runs rounds of episodes (ctx.run_episodes): one executor, the same workers, for all of them."""
    from schola.executors import RayExecutor

    made: list[list[Any]] = []
    init = RayExecutor.__init__

    def counting(self: RayExecutor, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(list(self.workers))

    monkeypatch.setattr(RayExecutor, "__init__", counting)
    m3 = ["run", "scenario=lbt", "scenario.variant=m3", *SCRIPTED, "cache.enabled=false", *RAY]
    code, out = cli(*m3, f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    assert len({r.get("round") for r in read_jsonl(tmp_path / "r" / "results.jsonl")}) > 1  # several rounds ran
    assert len(made) == 1 and len(made[0]) == 2
