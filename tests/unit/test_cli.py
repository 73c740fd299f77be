from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ConfigDict

from schola import plugins
from schola.backends.base import BackendConfig, Completion, ScholaClient
from schola.errors import BackendError
from schola.resume import flatten
from schola.types import CallInfo
from tests.conftest import SCRIPTED, free_port, read_jsonl

LBT = ["run", "scenario=lbt", *SCRIPTED, "scenario.roles.teacher.samples=3"]  # sizes pinned: the demo's may change


def metrics(run: Path) -> dict[tuple[str, str], dict[str, Any]]:
    rows = json.loads((run / "metrics.json").read_text())["metrics"]
    return {(r["name"], ",".join(f"{k}={v}" for k, v in r["labels"].items())): r for r in rows}


def test_run_lbt_writes_config_transcript_results_and_metrics(cli: Any, tmp_path: Path) -> None:
    code, out = cli(*LBT, "run.episodes=3", f"hydra.run.dir={tmp_path / 'x'}")
    run = tmp_path / "x"
    assert code == 0, out
    assert f"run directory: {run}" in out and "accuracy" in out
    results = read_jsonl(run / "results.jsonl")
    assert [r["episode"] for r in results] == ["tp0", "tp1", "tp2"]
    # per episode: 3 teacher rationales, each read by 1 student on 3 exam problems
    transcript = read_jsonl(run / "transcript.jsonl")
    assert len(transcript) == 3 * (3 + 3 * 3)
    assert {t["agent"] for t in transcript} == {"teacher", "students.0"}
    m = metrics(run)
    assert {("accuracy", f"rule={r}") for r in ("MAJ", "MAX", "SUM", "AVG")} <= set(m)
    assert m[("accuracy", "rule=MAJ")]["n"] == 3
    assert m[("answer_parse_rate", "role=teacher")]["value"] == 1.0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["scenario"]["name"] == "lbt" and saved["backend"]["kind"] == "scripted"


def test_seed_changes_the_problems_and_the_samples(cli: Any, tmp_path: Path) -> None:
    for seed in (0, 1):
        assert cli(*LBT, "run.episodes=1", f"seed={seed}", f"hydra.run.dir={tmp_path / str(seed)}")[0] == 0
    q0, q1 = (read_jsonl(tmp_path / s / "results.jsonl")[0]["inputs"]["question"] for s in "01")
    assert q0 != q1
    assert yaml.safe_load((tmp_path / "1" / "config.yaml").read_text())["seed"] == 1


@pytest.mark.parametrize("override", ["run.concurrency=2", "scenario.variant=m1"])
def test_plain_overrides_run_and_are_saved(cli: Any, tmp_path: Path, override: str) -> None:
    code, out = cli(*LBT, "run.episodes=2", override, f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    key, value = override.split("=")
    assert str(flatten(yaml.safe_load((tmp_path / "r" / "config.yaml").read_text()))[key]) == value
    assert len(read_jsonl(tmp_path / "r" / "results.jsonl")) == 2


def test_a_role_can_use_another_named_backend(cli: Any, tmp_path: Path) -> None:
    code, out = cli(
        *LBT, "run.episodes=1", "+backends.strong={kind: scripted, default: STRONG TEACHER}",
        "scenario.roles.teacher.backend=strong", f"hydra.run.dir={tmp_path / 'r'}",
    )  # fmt: skip
    assert code == 0, out
    lines = read_jsonl(tmp_path / "r" / "transcript.jsonl")
    assert {t["text"] for t in lines if t["agent"] == "teacher"} == {"STRONG TEACHER"}
    assert not {t["text"] for t in lines if t["agent"] != "teacher"} & {"STRONG TEACHER"}  # students: the default


def test_several_students_with_different_personas_and_backends(cli: Any, tmp_path: Path) -> None:
    students = "[{role: student, persona: careful}, {role: student, persona: hasty, backend: other, name: hasty}]"
    code, out = cli(
        *LBT, "run.episodes=1", "+backends.other={kind: scripted, default: 'I guess [[Final Answer]]: 1'}",
        f"scenario.roles.students={students}", f"hydra.run.dir={tmp_path / 'r'}",
    )  # fmt: skip
    assert code == 0, out
    lines = read_jsonl(tmp_path / "r" / "transcript.jsonl")
    assert {t["agent"] for t in lines} == {"teacher", "students.0", "hasty"}
    assert len([t for t in lines if t["agent"] == "hasty"]) == 9


def test_budget_limits_the_whole_run_across_resumes_and_usage_adds_up(cli: Any, tmp_path: Path) -> None:
    run = tmp_path / "r"
    code, out = cli(*LBT, "budget.max_requests=20", "run.concurrency=1", f"hydra.run.dir={run}")
    assert code == 4, out
    assert "raise budget.max_requests" in out and f"resume={run}" in out
    assert json.loads((run / "status.json").read_text())["status"] == "budget"
    finished = len(read_jsonl(run / "results.jsonl"))
    assert 1 <= finished < 4  # the next episode was stopped half-way
    dropped = len(read_jsonl(run / "transcript.jsonl")) - 12 * finished  # its replies, dropped on resume
    # a stopped run still shows what its finished episodes say
    assert metrics(run)[("accuracy", "rule=SUM")]["n"] == finished
    # the budget is the whole run's: resuming without raising it stops at once and names the key to raise
    code, out = cli("run", f"resume={run}")
    assert code == 4 and "budget.max_requests=20 is spent" in out, out
    code, out = cli("run", f"resume={run}", "budget.max_requests=100", "run.concurrency=1")
    assert code == 0, out
    assert [r["episode"] for r in read_jsonl(run / "results.jsonl")] == ["tp0", "tp1", "tp2", "tp3"]
    transcript = read_jsonl(run / "transcript.jsonl")
    keys = [(t["episode"], t["node"], t["agent"], t["sample"], t["prompt"]) for t in transcript]
    assert len(keys) == len(set(keys)) == 4 * 12
    final = json.loads((run / "metrics.json").read_text())
    assert final["status"] == "finished"
    # usage adds up across the three invocations: each reply is a request or a cache hit, and the replies of
    # tp1's dropped attempt were asked again (from the cache)
    total = final["usage"]["total"]
    assert dropped > 0 and total["requests"] + total["cache_hits"] == 48 + dropped
    assert "wall_s" not in final and json.loads((run / "ledger.json").read_text())["wall_s"] > 0
    # the same requests reached the model as in one uninterrupted run (with a cache of its own)
    code, out = cli(*LBT, "run.concurrency=1", f"hydra.run.dir={tmp_path / 'whole'}", f"cache.dir={tmp_path / 'c2'}")
    assert code == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())["usage"]["total"]
    assert total["requests"] == whole["requests"]


def test_resume_refuses_a_different_experiment(cli: Any, tmp_path: Path) -> None:
    run = tmp_path / "r"
    assert cli(*LBT, "budget.max_requests=3", f"hydra.run.dir={run}")[0] == 4
    code, out = cli("run", f"resume={run}", *SCRIPTED, "seed=5")
    assert code == 2
    assert "seed" in out and "only budget" in out
    # the caption explains the table and is not the experiment: it may change
    code, out = cli("run", f"resume={run}", *SCRIPTED, "budget.max_requests=null", "scenario.caption=what it means")
    assert code == 0, out
    assert json.loads((run / "metrics.json").read_text())["caption"] == "what it means"


def test_resume_refuses_changed_data(cli: Any, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(
        '{"question": "What is 2+3?", "answer": "5", "unique_id": "a"}\n{"question": "4+1?", "answer": "5", "unique_id": "a#1"}\n'
    )
    run = tmp_path / "r"
    assert cli(*LBT, f"scenario.data.path={data}", f"hydra.run.dir={run}")[0] == 0
    data.write_text(data.read_text().replace("2+3", "2+4"))
    code, out = cli("run", f"resume={run}")
    assert code == 2 and "other data" in out


def test_sweep_runs_every_job_and_report_compares_them(cli: Any, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    code, out = cli("run", "-m", *SCRIPTED, "scenario=lbt", "run.episodes=2", "seed=0,1,2", f"hydra.sweep.dir={sweep}")
    assert code == 0, out
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2"]
    code, out = cli("report", str(sweep))
    assert code == 0, out
    rows = list(__import__("csv").DictReader((sweep / "report.csv").open()))
    assert {r["seed"] for r in rows} == {"0", "1", "2", "pooled"}
    per_seed = [float(r["value"]) for r in rows if r["metric"] == "exam_accuracy" and r["seed"] != "pooled"]
    pooled = next(r for r in rows if r["metric"] == "exam_accuracy" and r["seed"] == "pooled")
    assert float(pooled["value"]) == pytest.approx(sum(per_seed) / 3) and pooled["n"] == "3"
    assert {"tokens", "cost_usd", "wall_s", "ci_low", "ci_high"} <= set(rows[0])
    assert (sweep / "report.png").stat().st_size > 1000


def test_show_prints_the_metrics_of_a_run(cli: Any, tmp_path: Path) -> None:
    assert cli(*LBT, "run.episodes=1", f"hydra.run.dir={tmp_path / 'r'}")[0] == 0
    code, out = cli("show", str(tmp_path / "r"))
    assert code == 0 and "rule=SUM" in out and "finished" in out


def test_check_validates_without_calling_a_model(cli: Any, tmp_path: Path) -> None:
    code, out = cli("check", *SCRIPTED, "budget.max_requests=1")
    assert code == 0 and "4 episodes" in out
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "cache").exists()


def test_list_shows_every_plugin_and_its_package(cli: Any) -> None:
    code, out = cli("list")
    assert code == 0
    for name in (
        "teacher",
        "student",
        "judge",
        "lbt",
        "numeric_match",
        "llm_judge",
        "embedded",
        "litellm",
        "scripted",
        "vllm",
    ):
        assert name in out
    assert "schola 0.1.0" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "scenario=nope"], "available scenarios: arte, comd"),
        (["run", "backend=nope"], "available backends:"),
        (["run", *SCRIPTED, "seed=abc"], "key 'seed'"),
        (["run", *SCRIPTED, "run.concurrency=0"], "key 'run.concurrency'"),
        (["run", *SCRIPTED, "sed=1"], "sed"),
        (["run", *SCRIPTED, "seed=[1"], "bad override"),
        (["run", "-m", *SCRIPTED, "seed=[1,2"], "bad override"),
        (
            ["run", *SCRIPTED, "scenario.roles.teacher.role=dean"],
            "conf/scenario/lbt.yaml, key 'scenario.roles.teacher.role': unknown role 'dean'",
        ),
        (["run", *SCRIPTED, "scenario.roles.teacher.backend=strong"], "unknown backend 'strong'"),
        (["check", *SCRIPTED, "scenario.data.problems=0"], "key 'scenario.data.problems'"),
        (
            ["check", *SCRIPTED, "+backend.latency=1"],
            "command line, key 'backend.latency': unknown key backend.latency; did you mean backend.latency_s?",
        ),
        (["run", *SCRIPTED, "scenario.data.path=missing.jsonl"], "data file not found: missing.jsonl"),
        (["run", "nonsense"], "neither a scenario .yaml file"),
    ],
)
def test_bad_input_is_one_clear_message_and_exit_2(cli: Any, args: list[str], expected: str) -> None:
    code, out = cli(*args)
    assert code == 2, out
    assert expected in out
    assert "Traceback" not in out


def test_debug_shows_the_traceback(cli: Any) -> None:
    code, out = cli("--debug", "check", *SCRIPTED, "scenario.roles.teacher.role=dean")
    assert code == 2 and "Traceback (most recent call last)" in out and "unknown role 'dean'" in out


def test_unreachable_endpoint_fails_in_seconds_with_exit_3(cli: Any, tmp_path: Path) -> None:
    start = time.monotonic()
    code, out = cli(
        "run",
        "backend=litellm",
        f"backend.base_url=http://127.0.0.1:{free_port()}/v1",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert code == 3, out
    assert "cannot reach http://127.0.0.1" in out
    assert time.monotonic() - start < 15


def test_api_keys_never_reach_the_run_directory_logs_or_output(cli: Any, tmp_path: Path, monkeypatch: Any) -> None:
    sentinel = "sk-SENTINEL-do-not-leak-1234567890"
    monkeypatch.setenv("OPENAI_API_KEY", sentinel)
    code, out = cli(
        "run", "backend=litellm", f"backend.base_url=http://127.0.0.1:{free_port()}/v1",
        "+backends.other={kind: autogen, api_key_env: OPENAI_API_KEY, config: {model: m, base_url: 'http://127.0.0.1:9/v1'}}",
        f"hydra.run.dir={tmp_path / 'r'}",
    )  # fmt: skip
    assert code == 3
    assert sentinel not in out
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "cache" not in p.parts]
    assert any(p.name == "config.yaml" for p in files)
    for p in files:
        assert sentinel not in p.read_text(errors="replace"), p


def readme_yaml() -> str:
    """The scenario README shows as the first example of writing one: the test runs that very text."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("<!-- peer_review.yaml", 1)[1].split("```yaml\n", 1)[1]
    return block.split("```", 1)[0]


PEER_REVIEW = readme_yaml()


def test_a_scenario_yaml_outside_the_package_runs_from_yaml_alone(cli: Any, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "peer_review.yaml").write_text(PEER_REVIEW)
    code, out = cli(
        "run", str(folder / "peer_review.yaml"), *SCRIPTED, "backend.default='Score: 7. The answer is 42'",
        f"hydra.run.dir={tmp_path / 'r'}",
    )  # fmt: skip
    assert code == 0, out
    m = metrics(tmp_path / "r")
    assert m[("correct", "")]["value"] == 0.5 and m[("correct", "")]["n"] == 2
    assert m[("quality", "")]["value"] == pytest.approx(0.7)
    # the scenario's caption: under the table, in metrics.json (for `schola show`) and in the viewer's payload
    caption = yaml.safe_load(PEER_REVIEW)["caption"]
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["caption"] == caption
    assert out.index("correct: the teacher's grade") > out.index("quality")
    code, shown = cli("show", str(tmp_path / "r"))
    assert code == 0 and "correct: the teacher's grade" in shown
    transcript = read_jsonl(tmp_path / "r" / "transcript.jsonl")
    assert len(transcript) == 2 * 6  # 2 answers, 2 critiques, 1 grade, 1 judge per episode
    # the same file as a config group option through --config-dir
    (folder / "scenario").mkdir()
    (folder / "peer_review.yaml").rename(folder / "scenario" / "peer.yaml")
    code, out = cli("check", "--config-dir", str(folder), "scenario=peer", *SCRIPTED)
    assert code == 0 and "peer_review" in out


def test_errors_in_a_users_scenario_name_the_file(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(PEER_REVIEW.replace('{{ b_answer }}", output: a_critique', '{{ c_answer }}", output: a_critique'))
    code, out = cli("check", str(path), *SCRIPTED)
    assert code == 2 and str(path) in out and "reads c_answer" in out
    assert "key 'scenario.graph[2].prompt'" in out  # brackets in keys print as they are
    path.write_text("name: x\ngraph: [\n  - {id: a")
    code, out = cli("check", str(path), *SCRIPTED)
    assert code == 2 and "malformed YAML at line" in out


class Failing(ScholaClient):
    """Answers like an echo until `broken` is set, then fails for good (a backend dying mid-run)."""

    class Config(BackendConfig):
        model_config = ConfigDict(extra="allow")  # takes the scripted backend's keys it replaces

    broken = False
    calls = 0

    @property
    def identity(self) -> str:
        return "failing"

    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        Failing.calls += 1
        if Failing.broken and Failing.calls > 20:
            raise BackendError("HTTP 404 model not found")
        return Completion(text="[[Final Answer]]: $1$", prompt_tokens=1, completion_tokens=1)


@pytest.fixture
def failing_backend() -> Any:
    with plugins.backends.registered("failing", Failing):
        yield Failing


def test_backend_failure_mid_run_keeps_finished_episodes_and_resumes(
    cli: Any, tmp_path: Path, failing_backend: Any
) -> None:
    run = tmp_path / "r"
    Failing.broken, Failing.calls = True, 0
    code, out = cli(*LBT, "backend={kind: failing}", "run.concurrency=1", f"hydra.run.dir={run}", "cache.enabled=false")
    assert code == 3, out
    assert "404" in out
    done = [r["episode"] for r in read_jsonl(run / "results.jsonl")]
    assert done == ["tp0"]
    Failing.broken, Failing.calls = False, 0
    code, out = cli("run", f"resume={run}")
    assert code == 0, out
    assert [r["episode"] for r in read_jsonl(run / "results.jsonl")] == ["tp0", "tp1", "tp2", "tp3"]
    assert Failing.calls == 36  # the three unfinished episodes, nothing redone


def wait_for(predicate: Any, *, timeout: float, what: str) -> None:
    """Poll `predicate` until it holds; fail the test (never hang) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout}s for {what}")
        time.sleep(0.02)


def test_ctrl_c_keeps_finished_episodes_and_the_run_resumes(tmp_path: Path) -> None:
    run = tmp_path / "r"
    # 16 episodes of about 0.1 s each: Ctrl-C after the first lands mid-run even on a loaded machine
    cmd = [sys.executable, "-m", "schola.cli", "run", *LBT[1:], "scenario.data.problems=16", "backend.latency_s=0.05",
           "run.concurrency=1", f"hydra.run.dir={run}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    # a shell that starts the suite in the background hands it SIGINT ignored, and Python then keeps it ignored:
    # the run gets Ctrl-C as a terminal would give it
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        wait_for(lambda: bool(read_jsonl(run / "results.jsonl")), timeout=60, what="the first finished episode")
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0].decode()
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    finished = read_jsonl(run / "results.jsonl")
    assert 1 <= len(finished) < 16
    resumed = subprocess.run(cmd[:4] + [f"resume={run}"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [r["episode"] for r in read_jsonl(run / "results.jsonl")] == [f"tp{i}" for i in range(16)]


@pytest.mark.parametrize(
    "content", [b"", b"- a list\n- not a config\n", b"scenario: {name: x\n", b"seed: 1\n", b"\xff\xfe bad bytes"]
)
def test_a_damaged_or_foreign_config_yaml_in_a_run_directory_is_a_config_error(
    cli: Any, tmp_path: Path, content: bytes
) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_bytes(content)
    code, out = cli("run", f"resume={run}")
    assert code == 2, out
    assert str(run / "config.yaml") in out and "Traceback" not in out


def test_options_may_come_anywhere_among_the_arguments(cli: Any, tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    (folder / "scenario").mkdir(parents=True)
    (folder / "scenario" / "peer.yaml").write_text(PEER_REVIEW)
    path = tmp_path / "peer_review.yaml"
    path.write_text(PEER_REVIEW)
    code, out = cli("run", str(path), "-m", *SCRIPTED, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == ["0", "1"]
    code, out = cli("check", "scenario=peer", "--config-dir", str(folder), *SCRIPTED, "seed=3")
    assert code == 0 and "peer_review" in out, out


def test_the_available_scenarios_hint_includes_config_dir_ones(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "conf" / "scenario").mkdir(parents=True)
    (tmp_path / "conf" / "scenario" / "mine.yaml").write_text(PEER_REVIEW)
    code, out = cli("check", "--config-dir", str(tmp_path / "conf"), "scenario=nope", *SCRIPTED)
    assert code == 2 and "mine" in out.split("available scenarios:")[1] and "lbt" in out


def test_list_shows_each_scenarios_scorers_stages_and_data_keys(cli: Any) -> None:
    from schola.cli import describe

    code, out = cli("list")
    assert code == 0
    assert "paired_difference" in out and "agreement" in out  # the generic stages
    line = describe("scenarios", plugins.scenarios.get("lbt"))
    assert "scorers: answer" in line and "stages: select" in line and "data: generator, problems, variants" in line


@pytest.mark.parametrize("directory", ["missing", "a-file"])
def test_config_dir_must_be_a_folder(cli: Any, tmp_path: Path, directory: str) -> None:
    (tmp_path / "a-file").write_text("x")
    code, out = cli("check", "--config-dir", str(tmp_path / directory), *SCRIPTED)
    assert code == 2 and f"--config-dir {tmp_path / directory}" in out


def test_a_users_file_named_like_a_builtin_runs_the_users_file(cli: Any, tmp_path: Path) -> None:
    weird = tmp_path / "odd, [name]=ü"
    weird.mkdir()
    (weird / "lbt.YAML").write_text(PEER_REVIEW)
    code, out = cli("check", str(weird / "lbt.YAML"), *SCRIPTED)
    assert code == 0 and "peer_review" in out, out
