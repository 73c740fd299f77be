"""A scenario file is as safe to run as it is to read: no Hydra settings, no Python targets, no environment reads,
no secrets echoed or saved, bounded inputs, and the run directory only where the user said."""

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

from tests.conftest import SCRIPTED
from tests.unit.test_cli import PEER_REVIEW

SENTINEL = "sk-SENTINELsecurity0123456789abcdefXYZ"


def scenario(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        ("# @package _global_\n", "hydra:\n  callbacks:\n    x: {_target_: shutil.copyfile, src: a, dst: b}\n",
         "'# @package _global_' is not allowed"),
        ("", "hydra:\n  job_logging: {handlers: {f: {class: logging.FileHandler, filename: /tmp/x}}}\n",
         "key 'hydra': 'hydra' is not allowed"),
        ("", "graph_helper: {_target_: os.system, command: 'touch /tmp/pwned'}\n", "'_target_' is not allowed"),
        ("", "params: {'()': os.getcwd}\n", "'()' is not allowed"),
        ("", "defaults: [{override /hydra/job_logging: disabled}]\n", "'defaults' is not allowed"),
        ("", "params: {home: '${oc.env:HOME}'}\n", "must not read the environment"),
    ],
)  # fmt: skip
def test_a_scenario_file_can_set_scenario_keys_only(
    cli: Any, tmp_path: Path, header: str, body: str, expected: str
) -> None:
    path = scenario(tmp_path, header + PEER_REVIEW + body)
    for command in ("check", "run"):
        code, out = cli(command, str(path), *SCRIPTED, f"hydra.run.dir={tmp_path / 'r'}")
        assert code == 2 and expected in out and str(path) in out, out
    assert not (tmp_path / "r").exists() and not Path("b").exists()


def test_a_record_may_have_a_field_named_class(cli: Any, tmp_path: Path) -> None:
    text = PEER_REVIEW.replace(
        '{question: "What is 7 * 6?", answer: "42"}', '{question: "What is 7 * 6?", answer: "42", class: math}'
    )
    assert cli("check", str(scenario(tmp_path, text)), *SCRIPTED)[0] == 0


def test_keys_typed_on_the_command_line_are_never_echoed_or_saved(cli: Any, tmp_path: Path) -> None:
    code, out = cli("check", *SCRIPTED, f"backend.api_key={SENTINEL}")
    assert code == 2 and SENTINEL not in out
    code, out = cli("check", "backend=litellm", f"backend.api_key_env={SENTINEL}")
    assert code == 2 and "looks like a key" in out and SENTINEL not in out
    code, out = cli("--debug", "check", *SCRIPTED, f"backend.api_key={SENTINEL}")
    assert code == 2 and "Traceback" in out and SENTINEL not in out
    # a header in a backend's options is refused (config.yaml would save it as ***, and a resume would send that)
    code, out = cli("check", "backend=litellm", f"+backend.extra.headers={{Authorization: 'Bearer {SENTINEL}'}}")
    assert code == 2 and "'headers' holds a secret" in out and SENTINEL not in out, out
    # so is a URL's user:password (aiohttp also refused it beside an Authorization header: exit 1 mid-run)
    run = tmp_path / "r"
    for backend in ("litellm", "openai"):
        code, out = cli(
            "run",
            f"backend={backend}",
            f"backend.base_url=http://user:{SENTINEL}@127.0.0.1:9/v1",
            f"hydra.run.dir={run}",
        )
        assert code == 2 and "holds credentials" in out and SENTINEL not in out, out
        code, out = cli("check", f"backend={backend}", f"+backend.base_urls=['http://u:{SENTINEL}@127.0.0.1:9/v1']")
        assert code == 2 and "holds credentials" in out and SENTINEL not in out, out
    assert not run.exists()


def test_an_autogen_provider_outside_autogen_is_found_by_check(cli: Any) -> None:
    code, out = cli("check", "backend=autogen", "backend.provider=os.system")
    assert code == 2 and "key 'backend.provider'" in out and "expected an AutoGen client class" in out


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "", "..", "x" * 200])
def test_a_scenario_name_cannot_move_the_run_directory(cli: Any, tmp_path: Path, name: str) -> None:
    path = scenario(tmp_path, PEER_REVIEW.replace("name: peer_review", f"name: {json.dumps(name)}"))
    code, out = cli("run", str(path), *SCRIPTED)
    assert code == 2 and "key 'scenario.name'" in out
    assert not list(tmp_path.parent.glob("escaped*")) and not (tmp_path / "runs").exists()


def test_a_yaml_alias_bomb_is_refused_in_well_under_a_second(cli: Any, tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = scenario(tmp_path, PEER_REVIEW + "params:\n  " + "\n  ".join(lines) + "\n")
    start = time.monotonic()
    code, out = cli("check", str(path), *SCRIPTED)
    assert code == 2 and "expands to more than" in out
    assert time.monotonic() - start < 1.0


def test_an_oversized_scenario_file_is_refused_before_parsing(cli: Any, tmp_path: Path) -> None:
    records = "".join(f'    - {{question: "q{i}", answer: "{i}"}}\n' for i in range(200_000))
    path = scenario(tmp_path, PEER_REVIEW.replace("  records:\n", "  records:\n" + records, 1))
    start = time.monotonic()
    code, out = cli("check", str(path), *SCRIPTED)
    assert code == 2 and "scenario.data.path" in out and time.monotonic() - start < 2.0


def test_a_non_utf8_scenario_file_names_the_file_and_line(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(PEER_REVIEW.encode() + b"description: caf\xe9\n")
    code, out = cli("check", str(path), *SCRIPTED)
    assert code == 2 and str(path) in out and f"line {PEER_REVIEW.count(chr(10)) + 1}" in out


@pytest.mark.parametrize("where", ["/proc/schola-run", "a-file", "a-file/under", "''"])
def test_the_run_directory_must_be_a_creatable_folder(cli: Any, tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("x")
    target = where if where.startswith(("/", "'")) else str(tmp_path / where)
    code, out = cli("run", *SCRIPTED, "scenario=lbt", f"hydra.run.dir={target}")
    assert code == 2 and "hydra.run.dir" in out, out
    assert (tmp_path / "a-file").read_text() == "x" and not (tmp_path / "config.yaml").exists()


def test_duplicate_role_names_are_refused(cli: Any, tmp_path: Path) -> None:
    text = PEER_REVIEW.replace("  bob: {role: student, persona: a hasty student}",
                               "  bob: {role: student, persona: a hasty student, name: alice}")  # fmt: skip
    code, out = cli("check", str(scenario(tmp_path, text)), *SCRIPTED)
    assert code == 2 and "role name 'alice' is used twice" in out


def test_a_map_over_a_huge_product_is_refused_not_allocated(cli: Any, tmp_path: Path) -> None:
    text = (
        PEER_REVIEW
        + "  - {id: big, kind: map, over: {a: 'range(99999)', b: 'range(99999)'}, steps: [{id: s, kind: join, inputs: [a], output: o}], collect: {os: o}}\n"
    )
    code, out = cli(
        "run", str(scenario(tmp_path, text)), *SCRIPTED, "backend.default='Score: 7'", f"hydra.run.dir={tmp_path / 'r'}"
    )
    assert code == 2 and "items; at most" in out, out


def test_a_score_step_missing_a_scorer_argument_is_found_by_check(cli: Any, tmp_path: Path) -> None:
    text = PEER_REVIEW.replace("inputs: {prediction: grade, target: answer}", "inputs: {prediction: grade}")
    code, out = cli("check", str(scenario(tmp_path, text)), *SCRIPTED)
    assert code == 2 and "scorer 'numeric_match' needs target" in out


def test_sigterm_stops_a_run_like_ctrl_c_and_it_resumes(tmp_path: Path) -> None:
    run = tmp_path / "r"
    # two episodes; the second takes about 1 s (6 steps of 0.2 s), so SIGTERM after the first lands mid-run
    cmd = [sys.executable, "-m", "schola.cli", "run", *SCRIPTED, "backend.latency_s=0.2",
           "backend.default='Score: 7'", "run.concurrency=1", f"hydra.run.dir={run}"]  # fmt: skip
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}  # where a scenario's temporary config folder would be left
    proc = subprocess.Popen([*cmd[:4], str(scenario(tmp_path, PEER_REVIEW)), *cmd[4:]], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        (run / "results.jsonl").is_file() and (run / "results.jsonl").read_text()
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, output
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    assert not list(tmp.iterdir())
    done = subprocess.run(cmd[:4] + [f"resume={run}"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
