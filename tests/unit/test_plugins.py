from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

SCENARIO = """\
name: parrot_quiz
kind: counting
data: {upto: 4}
roles:
  parrot: {role: parrot, prefix: polly}
graph:
  - {id: say, kind: agent, role: parrot, prompt: "say {{ number }}", output: reply}
  - {id: ok, kind: score, scorer: counting.echoed, inputs: {reply: reply, number: number}, output: echoed}
stages:
  - {fn: counting.total}
"""


def schola(*args: str, plugin: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(ROOT)]), "SCHOLA_CACHE_DIR": str(cwd / "c")}
    return subprocess.run([sys.executable, "-m", "schola.cli", *args], env=env, cwd=cwd, capture_output=True, text=True)


def test_a_plugin_package_registers_a_role_and_a_scenario_used_by_name(plugin_path: Path, tmp_path: Path) -> None:
    (tmp_path / "parrot.yaml").write_text(SCENARIO)
    done = schola("run", "parrot.yaml", "backend=scripted", "hydra.run.dir=out", plugin=plugin_path, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = {r["name"]: r for r in json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]}
    assert metrics["echoed"]["value"] == 1.0 and metrics["echoed"]["n"] == 4
    assert metrics["episodes_seen"]["value"] == 4.0
    transcript = (tmp_path / "out" / "transcript.jsonl").read_text().splitlines()
    assert json.loads(transcript[0])["text"].startswith("polly ")


def test_list_shows_plugins_with_their_package_and_reports_a_broken_one(plugin_path: Path, tmp_path: Path) -> None:
    done = schola("list", plugin=plugin_path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "parrot" in done.stdout and "counting" in done.stdout and "schola-echo-plugin 0.0.1" in done.stdout
    assert "broken" in done.stdout and "failed to load" in done.stdout and "ModuleNotFoundError" in done.stdout
    assert "teacher" in done.stdout  # the rest still load


def test_a_scenario_plugin_ships_its_default_yaml_so_it_runs_by_name(plugin_path: Path, tmp_path: Path) -> None:
    done = schola("run", "scenario=counting", "backend=scripted", "hydra.run.dir=out", plugin=plugin_path, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = {r["name"]: r for r in json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]}
    assert metrics["echoed"]["n"] == 3 and metrics["episodes_seen"]["value"] == 3.0


def test_a_plugin_scenario_without_a_yaml_run_by_name_says_how_to_write_one(plugin_path: Path, tmp_path: Path) -> None:
    done = schola("run", "scenario=quiet", "backend=scripted", "hydra.run.dir=out", plugin=plugin_path, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "scenario quiet ships no YAML; write one with `kind: quiet`" in out and "Traceback" not in out


def test_list_imports_no_scenario_nor_numpy(tmp_path: Path) -> None:
    """`schola list` describes every plugin from its source: no scenario module, numpy or scipy is imported
    (they cost a second of CPU at every listing)."""
    code = (
        "import sys; from schola.cli import main; main(['list']); "
        "print(sorted(m for m in sys.modules if m in ('numpy', 'scipy') or m.startswith('schola.scenarios.')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "lbt" in proc.stdout and "exact_match" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"
