"""Shell completion: the script bash runs, and the candidates `schola complete` gives it (through a real bash)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from schola.completion import candidates


def test_candidates_follow_the_command_line() -> None:
    assert candidates([""]) == ["run", "check", "list", "show", "report", "view", "train", "cache", "completion"]
    assert candidates(["ch"]) == ["check"]
    assert "scenario=lbt" in candidates(["run", "scenario="]) and "scenario=spp" in candidates(["run", "scenario=s"])
    assert "backend=scripted" in candidates(["run", "backend=scr"])
    assert "run.episodes=" in candidates(["run", "run.ep"]) and "budget.max_requests=" in candidates(["check", "bud"])
    assert "backend.latency_s=" in candidates(["run", "backend=scripted", "backend.l"])  # the chosen backend's keys
    assert "backend.latency_s=" not in candidates(["run", "backend.l"])  # the default (embedded) has none
    assert "scenario.data=" in candidates(["run", "scenario=spp", "scenario.d"])
    assert candidates(["cache", "p"]) == ["prune"] and candidates(["show", "ru"]) == []  # paths: the shell's own


def test_the_cli_prints_the_script_and_refuses_an_unknown_shell(cli: Any) -> None:
    code, out = cli("completion", "bash")
    assert code == 0 and "complete -o default -o nospace -F _schola_complete schola" in out
    code, out = cli("completion", "fish")
    assert code == 2 and "expected one of bash, zsh" in out


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_through_the_script(tmp_path: Path) -> None:
    schola = tmp_path / "schola"  # the script calls `schola` on PATH: this interpreter's CLI
    schola.write_text(f'#!/bin/sh\nexec {sys.executable} -m schola.cli "$@"\n')
    schola.chmod(0o755)
    script = subprocess.run([str(schola), "completion", "bash"], capture_output=True, text=True, check=True).stdout
    probe = (
        script
        + 'COMP_WORDS=(schola run "backend=scr"); COMP_CWORD=2; _schola_complete; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.split() == ["backend=scripted"], done
