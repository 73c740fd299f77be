"""Issues 16 and 17, the last items: one result type for a run, one probe, one naming of group members, derived
values in the Plan (not written back into the config), a progress callback that raises still ends the run with
status.json, and every run-directory file written and read through the store's one writer and safe reader."""

from __future__ import annotations

import asyncio
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import schola
from schola.spec import RunSpec, open_run
from tests.conftest import SCRIPTED, read_jsonl

LBT = [*SCRIPTED, "run.episodes=3"]


def qa(n: int = 2) -> dict[str, Any]:
    return {
        "name": "qa",
        "data": {"records": [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(n)]},
        "roles": {"student": {"role": "student", "name": "ada"}},
        "graph": [{"id": "ask", "kind": "agent", "role": "ada", "prompt": "{{ question }}", "output": "reply"}],
    }


def write(tmp_path: Path, scenario: dict[str, Any]) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def lock_is_free(run_dir: Path) -> bool:
    """Another process can take the run directory's lock (the run gave it back)."""
    probe = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
    )
    return subprocess.run([sys.executable, "-c", probe, str(run_dir / ".lock")], capture_output=True).returncode == 0


# -- issue 16: a progress callback that raises -------------------------------------------------------------
@pytest.mark.parametrize("fails_at", [1, 2])  # the first call (before any episode) or one after an episode
def test_a_progress_callback_that_raises_ends_the_run_with_status_json(tmp_path: Path, fails_at: int) -> None:
    calls: list[int] = []

    def on_progress(done: int, total: int, ledger: Any) -> None:
        calls.append(done)
        if len(calls) == fails_at:
            raise RuntimeError("my bar broke")

    run = tmp_path / "r"
    result = schola.run("lbt", LBT, run_dir=run, progress=on_progress)
    assert (result.status, result.exit_code) == ("error", 1)
    assert (
        "progress callback" in result.message and "on_progress" in result.message and "my bar broke" in result.message
    )
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "error" and status["exit_code"] == 1 and "on_progress" in status["message"]
    assert lock_is_free(run)


# -- issue 17: one result type ------------------------------------------------------------------------------
def test_the_cli_and_the_api_get_one_result_type(tmp_path: Path) -> None:
    from schola.runtime import run_plan

    result = run_plan(*open_run(RunSpec.of("lbt", [*LBT, f"hydra.run.dir={tmp_path / 'r'}"])))
    assert isinstance(result, schola.RunResult) and result.ok
    assert result.metric("accuracy") is not None and len(result.episodes) == 3
    api = schola.run("lbt", LBT, run_dir=tmp_path / "a")
    assert type(api) is type(result) and api.metric("accuracy") == result.metric("accuracy")


# -- issue 17: derived values live in the Plan --------------------------------------------------------------
def test_build_plan_keeps_the_validated_config_as_given(tmp_path: Path) -> None:
    plan, _ = open_run(
        RunSpec.of(write(tmp_path, qa(1)), [*SCRIPTED, "backend.max_concurrency=64"], run_dir=tmp_path / "r")
    )
    assert plan.config.run.concurrency is None  # as the user gave it (null: chosen from the backends' limits)
    assert plan.concurrency == 64


# -- issue 17: one naming of group members ------------------------------------------------------------------
def test_the_viewer_names_a_named_single_role_as_the_engine_does(tmp_path: Path) -> None:
    from schola.view.payload import roles_of

    result = schola.run(write(tmp_path, qa(1)), SCRIPTED, run_dir=tmp_path / "r")
    assert result.ok, result.message
    spoke = {t["agent"] for t in read_jsonl(tmp_path / "r" / "transcript.jsonl")}
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["scenario"]
    assert spoke == {"ada"} and set(roles_of(saved)) == {"ada"}


@pytest.mark.parametrize(
    "roles",
    [
        {"students": {"role": "student"}},
        {"students": {"role": "student", "name": "solo"}},
        {"students": [{"role": "student"}, {"role": "student", "name": "bo"}, {"role": "student"}]},
    ],
)  # fmt: skip
def test_lbt_names_its_students_as_the_engine_does(tmp_path: Path, roles: dict[str, Any]) -> None:
    from schola.scenarios.lbt.m3 import student_names

    plan, _ = open_run(RunSpec.of("lbt", SCRIPTED, run_dir=tmp_path / "r"))
    plan.config.scenario.roles.update(roles)
    from schola.plan import _roles

    plan.roles, plan.groups = {}, {}
    _roles(plan, plan.files)
    assert student_names(plan.config.scenario.roles) == plan.groups["students"]


# -- issue 17: one preflight probe ---------------------------------------------------------------------------
def test_the_openai_backend_probes_each_endpoint_with_the_one_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    from schola.backends import openai

    probed: list[str] = []

    async def probe(url: str, **kwargs: Any) -> None:
        probed.append(url)

    monkeypatch.setattr(openai, "http_preflight", probe)
    client = openai.OpenAIClient(openai.OpenAIConfig(model="m", base_url="http://127.0.0.1:9/v1",
                                                     base_urls=["http://127.0.0.1:10/v1"]))  # fmt: skip

    async def preflight() -> None:
        try:
            await client.preflight()
        finally:
            await client.close()

    asyncio.run(preflight())
    assert sorted(probed) == ["http://127.0.0.1:10/v1", "http://127.0.0.1:9/v1"]


# -- issue 16: run-directory files through the one writer and the safe reader --------------------------------
def linked_out(run: Path, name: str) -> Path:
    """`run/name` made a link to a file outside the run directory; returns that file."""
    outside = run.parent / f"outside-{name}"
    outside.write_text("mine")
    run.mkdir(exist_ok=True)
    (run / name).symlink_to(outside)
    return outside


async def test_the_curriculum_report_never_writes_through_a_link(tmp_path: Path) -> None:
    from schola.scenarios.curriculum import report

    from tests.unit.scenarios.test_curriculum import FakeContext

    run = tmp_path / "run"
    outside = [linked_out(run, n) for n in ("orders.csv", "designer.json", "a_vs_s.png")]
    ctx = FakeContext(run)  # its store is the run's one writer
    await report(ctx)
    assert [p.read_bytes() for p in outside] == [b"mine"] * 3
    assert not (run / "orders.csv").is_symlink() and (run / "a_vs_s.png").read_bytes()[:4] == b"\x89PNG"


async def test_the_tom_teaching_stage_never_writes_through_a_link(tmp_path: Path) -> None:
    from schola.scenarios.tom_teaching import TomParams
    from schola.scenarios.tom_teaching.stage import teach

    from tests.unit.scenarios.test_tom_teaching import FakeRun

    run = tmp_path / "run"
    names = ("accuracy_vs_budget.csv", "accuracy_vs_budget.png", "accuracy_vs_k.csv", "observations.jsonl")
    outside = [linked_out(run, n) for n in names]
    ctx = FakeRun(TomParams(demos=4, teachers=["unpersonalized"], multi_turn=[2]), run)
    await teach(ctx)
    assert [p.read_bytes() for p in outside] == [b"mine"] * len(names)
    assert all(not (run / n).is_symlink() for n in names)


def test_the_training_loss_plot_never_writes_through_a_link(tmp_path: Path) -> None:
    from schola.train import plot_loss

    outside = linked_out(tmp_path / "out", "loss.png")
    plot_loss([{"step": 1, "loss": 0.5}], tmp_path / "out" / "loss.png")
    assert outside.read_bytes() == b"mine" and (tmp_path / "out" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_a_sweeps_exit_codes_read_status_json_safely(tmp_path: Path) -> None:
    from schola.cli import job_codes

    sweep = tmp_path / "multirun"
    for job, status in (("0", '{"exit_code": 0}'), ("1", "not json"), ("2", None), ("3", "link")):
        (sweep / job).mkdir(parents=True)
        if status == "link":  # a status.json linked to a file saying success is not this job's
            (tmp_path / "elsewhere.json").write_text('{"exit_code": 0}')
            (sweep / job / "status.json").symlink_to(tmp_path / "elsewhere.json")
        elif status is not None:
            (sweep / job / "status.json").write_text(status)
    os.mkfifo(sweep / "2" / "status.json")  # a FIFO: must not hang
    assert job_codes(sweep) == [0, 1, 1, 1]


# -- issue 17: the import contracts cover every module, new ones included -----------------------------------
def covered(module: str, patterns: list[str]) -> bool:
    """`module` is one of import-linter's module expressions (`*` one name, `**` one or more) or inside one."""
    for p in patterns:
        regex = re.escape(p).replace(r"\*\*", "[^.]+(?:\\.[^.]+)*").replace(r"\*", "[^.]+")
        if re.fullmatch(regex + r"(?:\..+)?", module):
            return True
    return False


def test_the_import_contracts_cover_every_module_of_the_engine() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    contracts = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"]
    modules = [f"schola.{m.name}" for m in pkgutil.iter_modules(schola.__path__)]
    assert {"schola.spec", "schola.train", "schola.executors", "schola.engine"} <= set(modules)
    by_plugins = next(c for c in contracts if "schola.scenarios" in c["forbidden_modules"])
    top = next(c for c in contracts if c["forbidden_modules"] == ["schola.cli"])
    backends = next(c for c in contracts if c["source_modules"] == ["schola.backends"])
    allowed = {i.split("->")[1].strip() for i in backends.get("ignore_imports", [])}
    for m in modules:
        assert covered(m, by_plugins["source_modules"]), f"{m} may import a scenario or a role"
        assert m == "schola.cli" or covered(m, top["source_modules"]), f"{m} may import the CLI"
        assert m in allowed | {"schola.backends"} or covered(m, backends["forbidden_modules"]), (
            f"backends may import {m}"
        )


# -- issue 17: the README describes the run path and failure tolerance as the code has them -----------------
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_readme_names_the_run_path_as_the_code_has_it() -> None:
    from importlib import import_module

    section = README.split("**One run path.**", 1)[1].split("\n\n", 1)[0]
    for module, name in [
        ("schola.spec", "RunSpec"), ("schola.spec", "open_run"), ("schola.plan", "Plan"), ("schola.store", "RunStore"),
        ("schola.runtime", "RunDriver"), ("schola.executors", "Executor"), ("schola.engine", "EpisodeEngine"),
        ("schola.runtime", "StageContext"), ("schola.runtime", "RunResult"), ("schola.roles", "ActRequest"),
        ("schola.roles", "Reply"), ("schola.scorers", "Score"),
    ]:  # fmt: skip
        assert f"`{name}`" in section and hasattr(import_module(module), name), name


def test_the_readme_lists_every_key_a_resume_may_change_and_how_failed_episodes_go() -> None:
    from schola.resume import FREE_PREFIXES

    resume = README.split("### Budgets and resume", 1)[1].split("\n### ", 1)[0]
    for prefix in set(FREE_PREFIXES) - {"resume", "scenario.source"}:
        assert (f"`{prefix}*`" if prefix.endswith(".") else f"`{prefix}`") in resume, prefix
    failed = README.split("### Failed episodes", 1)[1].split("\n## ", 1)[0]
    assert all(k in failed for k in ("`run.max_failed`", "results.jsonl", "resume=", "schola show"))
