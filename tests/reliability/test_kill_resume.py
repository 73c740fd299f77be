"""Kill -9 at random points, then resume: the run ends exactly as an uninterrupted one (results, metrics, every
transcript line once), and a torn last line of results.jsonl or the transcript is dropped on resume, never a crash."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SCRIPTED, read_jsonl

# A YAML scenario with a map over a group and scores that are not 0/1 (their bootstrap CI depends on the order
# the episodes are given in, so a resumed run must give the stages the episodes in the same order).
RELAY = (
    """\
name: relay
description: three students answer each question; a judge grades every answer
data:
  records:
"""
    + "".join(f'    - {{question: "What is {i} + {i}?", answer: "{2 * i}"}}\n' for i in range(10))
    + """\
roles:
  students:
    - {role: student, persona: a careful student}
    - {role: student, persona: a hasty student}
    - {role: student, persona: a sleepy student}
  judge: {role: judge}
graph:
  - id: ask
    kind: map
    over: {student: roles.students}
    steps:
      - {id: answer, kind: agent, role: "{{ student.name }}", prompt: "{{ student.persona }}: {{ question }}", output: reply}
      - {id: correct, kind: score, scorer: numeric_match, inputs: {prediction: reply, target: answer}, output: correct}
      - {id: quality, kind: score, scorer: llm_judge, inputs: {answer: reply, question: question}, params: {rubric: states the sum}, output: quality}
    collect: {replies: reply}
scripted:
  - match: ""
    reply: "Score: {{ pick([1, 4, 6, 9]) }}. The answer is {{ pick([numbers(prompt)[-1] * 2, 7, 0]) }}"
"""
)

# per-call latency makes a run last long enough to be killed anywhere in it; 2 calls in flight, 3 episodes
PACE = ["backend.latency_s=0.03", "backend.max_concurrency=2", "run.concurrency=3"]
SCENARIOS = {
    "lbt": ["scenario=lbt", "scenario.data.problems=8"],
    "relay": [],  # the YAML file above, by path
}
KILLS, KILLS_PER_RUN = 10, 5  # per scenario: 20 kills in all
VOLATILE = {"latency_s", "queue_s", "cached"}  # transcript fields that may differ between a run and its resume


def command(name: str, tmp_path: Path) -> list[str]:
    args = SCENARIOS[name]
    if name == "relay":
        path = tmp_path / "relay.yaml"
        path.write_text(RELAY)
        args = [str(path)]
    return [sys.executable, "-m", "schola.cli", "run", *args, *SCRIPTED, *PACE]


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def cache_env(folder: Path) -> dict[str, str]:
    """The environment of a run with a response cache of its own: a run killed and resumed fills and reads its
    own cache (surviving kill -9 is part of the test), never the clean run's, which would make it instant."""
    return {**os.environ, "SCHOLA_CACHE_DIR": str(folder)}


def transcript_lines(run_dir: Path) -> Counter[str]:
    """Every transcript line, less what may differ on resume, as a multiset (a lost or doubled line shows)."""
    lines = (run_dir / "transcript.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # a corrupt line fails here
    return Counter(json.dumps({k: v for k, v in r.items() if k not in VOLATILE}, sort_keys=True) for r in records)


def outcome(run_dir: Path) -> dict[str, Any]:
    """What an uninterrupted run and a killed-and-resumed one must agree on."""
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "results": sorted(results, key=lambda r: r["episode"]),
        "metrics": metrics["metrics"],
        "status": metrics["status"],
        "episodes": metrics["episodes"],
    }


def kill_at(cmd: list[str], run_dir: Path, *, size: int, rng: random.Random, env: dict[str, str]) -> int | None:
    """Start `cmd` and SIGKILL it at a random point: mostly once it has written a random share of the transcript
    left to write (counted from when it opened the transcript: a resume first rewrites it without the lines of
    unfinished episodes), sometimes at a random moment of its start. Returns how many episodes had finished when
    it was killed (None: it ran to the end first)."""
    transcript, results = run_dir / "transcript.jsonl", run_dir / "results.jsonl"
    before = transcript.stat().st_ino if transcript.is_file() else None
    share = rng.uniform(0.05, 0.9)
    early = rng.uniform(0.0, 1.5) if rng.random() < 0.2 else None
    target: float | None = None
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    began, deadline = time.monotonic(), time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if early is not None and time.monotonic() - began >= early:
                break
            stat = transcript.stat() if transcript.is_file() else None
            if early is None and stat is not None and target is None and stat.st_ino != before and stat.st_size < size:
                target = stat.st_size + share * (size - stat.st_size)
            if target is not None and stat is not None and stat.st_size >= target:
                time.sleep(rng.uniform(0, 0.01))
                break
            time.sleep(0.002)
        if proc.poll() is not None:
            return None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        return len(results.read_bytes().splitlines()) if results.is_file() else 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_results(tmp_path: Path, name: str) -> None:
    """KILLS kills per scenario, at most KILLS_PER_RUN in one run (then the run is resumed to its end and
    compared, and another starts)."""
    cmd = command(name, tmp_path)
    clean = tmp_path / "clean"
    done = run([*cmd, f"hydra.run.dir={clean}"], cache_env(tmp_path / "cache-clean"))
    assert done.returncode == 0, done.stdout + done.stderr
    expected, expected_lines = outcome(clean), transcript_lines(clean)
    assert expected["status"] == "finished" and max(expected_lines.values()) == 1
    size = (clean / "transcript.jsonl").stat().st_size
    rng = random.Random(f"kill-9-{name}")
    killed_at: list[int] = []
    runs = 0
    while len(killed_at) < KILLS and runs < 3 * KILLS // KILLS_PER_RUN:
        run_dir, env = tmp_path / f"run{runs}", cache_env(tmp_path / f"cache{runs}")
        runs += 1
        for _ in range(KILLS_PER_RUN):
            started = (run_dir / "config.yaml").is_file()
            target = [*cmd[:4], f"resume={run_dir}"] if started else [*cmd, f"hydra.run.dir={run_dir}"]
            if (finished := kill_at(target, run_dir, size=size, rng=rng, env=env)) is None:
                break  # it ran to the end first
            killed_at.append(finished)
        started = (run_dir / "config.yaml").is_file()
        done = run([*cmd[:4], f"resume={run_dir}"] if started else [*cmd, f"hydra.run.dir={run_dir}"], env)
        assert done.returncode == 0, done.stdout + done.stderr
        got = outcome(run_dir)
        assert got["results"] == expected["results"]
        assert got["metrics"] == expected["metrics"]
        assert got["status"] == "finished" and got["episodes"] == expected["episodes"]
        assert transcript_lines(run_dir) == expected_lines  # none lost, none doubled, none corrupt
    assert len(killed_at) >= KILLS and runs >= 2, (killed_at, runs)
    assert len(set(killed_at)) >= 3, killed_at  # the kills fell at different places in the runs


def torn(path: Path, *, keep: float = 0.5) -> None:
    """Cut the file's last line (a crash in the middle of a write); keep=0 drops it whole."""
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last + int((len(data) - last) * keep)])


# One episode at a time, so the transcript's last line is the last episode's: a kill in the middle of writing it
# leaves that line torn, with no result line for the episode yet (the transcript is flushed before the result).
ONE_AT_A_TIME = ["run", "scenario=lbt", *SCRIPTED, "scenario.data.problems=3", "run.concurrency=1"]


@pytest.mark.parametrize(
    ("results_keep", "transcript_keep"),
    [(0.5, 1.0), (0.0, 0.5), (0.5, 0.5), (0.9, 0.1)],
    ids=["torn-result", "torn-transcript", "both-torn", "both-torn-elsewhere"],
)
def test_a_torn_last_line_is_dropped_on_resume(
    cli: Any, tmp_path: Path, results_keep: float, transcript_keep: float
) -> None:
    clean, damaged = tmp_path / "clean", tmp_path / "damaged"
    assert cli(*ONE_AT_A_TIME, f"hydra.run.dir={clean}")[0] == 0
    assert cli(*ONE_AT_A_TIME, f"hydra.run.dir={damaged}")[0] == 0
    torn(damaged / "results.jsonl", keep=results_keep)
    if transcript_keep < 1.0:
        torn(damaged / "transcript.jsonl", keep=transcript_keep)
    assert len(read_jsonl(damaged / "results.jsonl")) == 2  # the last episode is unfinished: it runs again
    code, out = cli("run", f"resume={damaged}")
    assert code == 0, out
    assert outcome(damaged)["results"] == outcome(clean)["results"]
    assert outcome(damaged)["metrics"] == outcome(clean)["metrics"]
    assert transcript_lines(damaged) == transcript_lines(clean)


def test_a_torn_line_in_the_middle_and_garbage_lines_are_dropped_on_resume(cli: Any, tmp_path: Path) -> None:
    clean, damaged = tmp_path / "clean", tmp_path / "damaged"
    assert cli(*ONE_AT_A_TIME, f"hydra.run.dir={clean}")[0] == 0
    assert cli(*ONE_AT_A_TIME, f"hydra.run.dir={damaged}")[0] == 0
    results = (damaged / "results.jsonl").read_bytes().splitlines(keepends=True)
    # a torn line followed by more lines (a crash, then a resume that appended), a non-UTF-8 line, a scalar
    results[1] = results[1][: len(results[1]) // 2] + b"\n"
    (damaged / "results.jsonl").write_bytes(b"".join(results) + b'\xff\xfe\n42\n{"foo": 1}\n')
    code, out = cli("run", f"resume={damaged}")
    assert code == 0, out
    assert outcome(damaged)["results"] == outcome(clean)["results"]
    assert transcript_lines(damaged) == transcript_lines(clean)


def test_metrics_do_not_depend_on_the_order_episodes_finished_in(cli: Any, tmp_path: Path) -> None:
    """An episode that finished after later ones (concurrency; a resume) leaves its result line later in the file;
    the stages and the bootstrap CIs see the episodes in the order they were asked for all the same."""
    path = tmp_path / "relay.yaml"
    path.write_text(RELAY)
    clean, shuffled = tmp_path / "clean", tmp_path / "shuffled"
    for run_dir in (clean, shuffled):
        assert cli("run", str(path), *SCRIPTED, "run.concurrency=1", f"hydra.run.dir={run_dir}")[0] == 0
    lines = (shuffled / "results.jsonl").read_text().splitlines(keepends=True)
    (shuffled / "results.jsonl").write_text("".join(lines[5:] + lines[:5][::-1]))
    (shuffled / "metrics.json").unlink()
    code, out = cli("run", f"resume={shuffled}")
    assert code == 0, out
    assert outcome(shuffled)["metrics"] == outcome(clean)["metrics"]
    quality = next(m for m in outcome(clean)["metrics"] if m["name"] == "quality")
    assert 0 < quality["ci_low"] < quality["value"] < quality["ci_high"] < 1  # a bootstrap CI, not an exact one
