"""The crashes the fuzz and fault tests found, each pinned by a small deterministic case (every one of them
crashed with a traceback or exit 1 before its fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SCRIPTED
from tests.reliability.conftest import schola
from tests.unit.test_cli import PEER_REVIEW


def nested(depth: int, *, mapping: bool) -> str:
    return ("{a: " * depth + "1" + "}" * depth) if mapping else ("[" * depth + "1" + "]" * depth)


@pytest.mark.parametrize(
    ("tail", "overrides", "message"),
    [
        (f"params: {{deep: {nested(900, mapping=False)}}}\n", [], "nested more than"),  # RecursionError in check
        (f"params: {{deep: {nested(60, mapping=True)}}}\n", [], "nested more than"),  # RecursionError in OmegaConf
        ("params: &p {a: *p}\n", [], "recursive alias"),  # RecursionError walking the file
        ("init: &i [1, *i]\n", [], "recursive alias"),
        ("", ["backend=null"], "a config group takes a name"),  # ValueError from Hydra
        ("", ["backend=true"], "a config group takes a name"),
        ("variants: {short: {description: short}}\n", ["+scenario.variant=[a]"], "unknown variant"),  # TypeError
        ("", [f"+scenario.params.x={nested(2000, mapping=True)}"], "nested too deeply"),  # RecursionError in Hydra
    ],
    ids=[
        "list-900-deep",
        "dict-60-deep",
        "recursive-mapping",
        "recursive-list",
        "backend=null",
        "backend=true",
        "variant-a-list",
        "override-2000-deep",
    ],
)
def test_check_refuses_with_exit_2(tmp_path: Path, tail: str, overrides: list[str], message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PEER_REVIEW + tail)
    code, out, took = schola("check", str(path), *SCRIPTED, *overrides)
    assert code == 2 and message in out and "Traceback" not in out, out
    assert took < 5


def test_a_run_directory_name_too_long_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(PEER_REVIEW)
    code, out, _ = schola("run", str(path), *SCRIPTED, f"hydra.run.dir={tmp_path / ('x' * 300)}")  # OSError before
    assert code == 2 and "key 'hydra.run.dir'" in out and "cannot create the run directory" in out, out


def test_recording_a_score_that_is_not_a_number_names_the_step(tmp_path: Path) -> None:
    """A score step keeps a scorer's text answer as a score (record defaults to true): the mean of the scores
    crashed (float('forty-two')), and again while summarising the stopped run, with a traceback."""
    step = "  - {id: picked, kind: score, scorer: extract_answer, inputs: {text: grade}, output: picked}\n"
    path = tmp_path / "s.yaml"
    path.write_text(PEER_REVIEW + step)
    code, out, _ = schola(
        "run", str(path), *SCRIPTED, "backend.default='Score: 7. The answer is forty-two'", f"hydra.run.dir={tmp_path / 'r'}"
    )  # fmt: skip
    assert code == 2 and "Traceback" not in out, out
    said = " ".join(out.split())  # the terminal may wrap the message
    assert "scorer 'extract_answer' returned a str" in said and "use kind: call for a value" in said, out
    assert "episode '0'" in said and "step 'picked'" in said
    path.write_text(PEER_REVIEW + step.replace("output: picked}", "output: picked, record: false}"))
    code, out, _ = schola(
        "run", str(path), *SCRIPTED, "backend.default='Score: 7. The answer is forty-two'", f"hydra.run.dir={tmp_path / 'r2'}"
    )  # fmt: skip
    assert code == 0, out


@pytest.mark.parametrize("command", [["show"], ["report"], ["run", "resume="], ["check", "--config-dir"]])
def test_a_path_too_long_for_the_system_is_an_error_naming_it(tmp_path: Path, command: list[str]) -> None:
    long = str(tmp_path / ("x" * 300))  # OSError (File name too long) with a traceback before
    args = [*command[:-1], command[-1] + long] if command[-1].endswith("=") else [*command, long]
    code, out, _ = schola(*args, *(["scenario=lbt"] if "check" in command else []))
    assert code == 2 and "File name too long" in out and "Traceback" not in out, out
