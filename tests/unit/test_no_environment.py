"""A scenario file never reads the environment: no resolver runs while a scenario is resolved, however its name is
built (nested, concatenated, interpolated), and an escaped `\\${...}` stays literal text all the way to the run
directory. A known secret's value is masked wherever it appears, not only under known keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SCRIPTED
from tests.unit.test_cli import PEER_REVIEW

SECRET = "sk-ENVsecretVALUE0123456789abcdefXYZ"
AWS = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY9"


@pytest.fixture(autouse=True)
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS)
    monkeypatch.setenv("PLAIN_VAR", SECRET)


def with_description(value: str, extra: str = "") -> str:
    """The README's scenario with its description set to `value` (and `extra` keys added)."""
    return PEER_REVIEW.replace("description: two students answer, swap and critique; a teacher grades",
                               f"description: {json.dumps(value)}", 1) + extra  # fmt: skip


def everything_written(*folders: Path) -> str:
    return "".join(p.read_text(errors="replace") for f in folders if f.exists() for p in f.rglob("*") if p.is_file())


TRICKS = [
    ("params: {r: env}\n", "${oc.${scenario.params.r}:OPENAI_API_KEY}"),
    ("params: {r: oc.env}\n", "${${scenario.params.r}:OPENAI_API_KEY}"),
    ("", "before ${oc.env:AWS_SECRET_ACCESS_KEY} after"),
    ("", "${oc.select:scenario.params.nothing,${oc.env:PLAIN_VAR}}"),
    ("", "$${oc.env:PLAIN_VAR}"),
    ("", "${oc.decode:${oc.env:PLAIN_VAR}}"),
    ("", "${oc.create:{a: '${oc.env:PLAIN_VAR}'}}"),
    ("params: {a: '${oc.env:PLAIN_VAR}'}\n", "${scenario.params.a}"),
    ("", "${ oc.env : PLAIN_VAR }"),
    ("", "${hydra:runtime.cwd}"),
]


@pytest.mark.parametrize(("params", "value"), TRICKS)
def test_no_resolver_runs_on_a_scenario_file(cli: Any, tmp_path: Path, params: str, value: str) -> None:
    text = with_description(value, params)
    path = tmp_path / "s.yaml"
    path.write_text(text)
    for command in ("check", "run"):
        code, out = cli(command, str(path), *SCRIPTED, f"hydra.run.dir={tmp_path / 'r'}")
        assert code == 2, out
        assert "resolver" in out and str(path) in out and "key 'scenario." in out, out
        assert SECRET not in out and AWS not in out
    assert not (tmp_path / "r").exists()


def test_a_resolver_typed_on_the_command_line_is_refused_too(cli: Any, tmp_path: Path) -> None:
    code, out = cli("check", "scenario=lbt", *SCRIPTED, "scenario.description=${oc.env:OPENAI_API_KEY}")
    assert code == 2 and "resolver" in out and "command line" in out and SECRET not in out, out


def test_a_prompt_with_a_resolver_is_refused_before_anything_is_sent(cli: Any, tmp_path: Path) -> None:
    text = PEER_REVIEW.replace("{{ question }}", "{{ question }} ${oc.${scenario.params.r}:OPENAI_API_KEY}", 1)
    path = tmp_path / "s.yaml"
    path.write_text(text + "params: {r: env}\n")
    code, out = cli("run", str(path), *SCRIPTED, f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 2 and "resolver" in out and SECRET not in out
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["\\${oc.env:OPENAI_API_KEY}", "a \\${oc.env:PLAIN_VAR} b \\${hydra:runtime.cwd}"])
def test_an_escaped_interpolation_stays_literal_to_the_end(cli: Any, tmp_path: Path, value: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(with_description(value))
    run = tmp_path / "r"
    code, out = cli("run", str(path), *SCRIPTED, f"hydra.run.dir={run}")
    assert code == 0, out
    saved = (run / "config.yaml").read_text()
    assert value.replace("\\$", "$") in saved.replace("''", "'")  # the literal text, unresolved
    code, out = cli("run", f"resume={run}", *SCRIPTED)
    assert code == 0, out
    assert SECRET not in everything_written(run) + out and AWS not in everything_written(run)


def test_an_escaped_name_cannot_reach_hydras_run_directory(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.yaml"
    path.write_text(PEER_REVIEW.replace("name: peer_review", 'name: "\\\\${oc.env:PLAIN_VAR}"'))
    code, out = cli("run", str(path), *SCRIPTED)
    assert code == 2 and "scenario.name" in out and SECRET not in out, out
    assert SECRET not in "".join(str(p) for p in tmp_path.rglob("*"))


def test_a_typo_in_an_interpolation_names_the_file_and_key(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(with_description("costs ${7*7}"))
    code, out = cli("check", str(path), *SCRIPTED)
    assert code == 2 and str(path) in out and "scenario.description" in out and "command line" not in out, out


def test_a_known_secrets_value_is_masked_wherever_it_appears() -> None:
    from schola.secrets import known_secrets, redact

    found = known_secrets()
    assert SECRET in found and AWS in found
    text = f"reply quoting {SECRET} and {AWS} inside a sentence"
    assert redact(text, found) == "reply quoting *** and *** inside a sentence"
    assert "PLAIN_VAR" not in str(found) and found.count(SECRET) == 1  # a value counts once, names never leak


def test_the_transcript_masks_a_secret_a_model_echoes(cli: Any, tmp_path: Path) -> None:
    run = tmp_path / "r"
    path = tmp_path / "s.yaml"
    path.write_text(PEER_REVIEW)
    code, out = cli("run", str(path), *SCRIPTED, f"backend.default='the key is {SECRET}'", f"hydra.run.dir={run}")
    assert code == 0, out
    written = everything_written(run)
    assert "the key is ***" in written and SECRET not in written


def test_a_key_set_twice_in_a_scenario_file_names_both_lines(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    text = PEER_REVIEW.replace("roles:\n", "roles:\n  alice: {role: teacher}\n", 1)
    path.write_text(text)
    first = text.splitlines().index("  alice: {role: teacher}") + 1
    second = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("  alice:") and i != first)
    code, out = cli("check", str(path), *SCRIPTED)
    assert (
        code == 2 and str(path) in out and f"'alice' is set twice in one mapping, at lines {first} and {second}" in out
    ), out
