"""Run directories for the viewer's tests: real runs on the scripted backend (lbt, a quiz with a map, a loop, and
one whose data, personas and replies are XSS payloads), and a synthetic 10,000-episode run written directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

import schola

SCRIPTED = ["backend=scripted"]

# Each one, if it ever ran, changes window.pwned or the title: the tests assert neither happens.
PAYLOADS = [
    "<script>window.pwned = 'script'</script>",
    "<img src=x onerror=\"window.pwned = 'img'; document.title = 'pwned'\">",
    '<a href="javascript:window.pwned = \'link\'" id="evil-link">click me</a>',
    "</script><script>window.pwned = 'script-close'</script>",
    "<svg onload=\"window.pwned = 'svg'\"></svg>",
    "<!--<script>window.pwned = 'comment'</script>-->",
]
HOSTILE = " ".join(PAYLOADS)


def write_yaml(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def run(scenario: str | Path, run_dir: Path, *overrides: str, cache: Path) -> Path:
    """A run on the scripted backend with its own cache (module fixtures run outside the per-test isolation)."""
    before = os.environ.get("SCHOLA_CACHE_DIR")
    os.environ["SCHOLA_CACHE_DIR"] = str(cache)
    try:
        schola.run(scenario, [*SCRIPTED, *overrides], run_dir=run_dir)
    finally:
        if before is None:
            os.environ.pop("SCHOLA_CACHE_DIR", None)
        else:
            os.environ["SCHOLA_CACHE_DIR"] = before
    return run_dir


CLI = "import sys; from schola.cli import main; sys.exit(main(sys.argv[1:]))"


def start_run(tmp_path: Path, run_dir: Path, episodes: int, latency_s: float) -> subprocess.Popen[bytes]:
    """A scripted quiz run in another process (what the live viewer follows), one request at a time, each taking
    `latency_s`."""
    spec = write_yaml(tmp_path / "quiz.yaml", quiz_spec(episodes))
    args = ["run", str(spec), *SCRIPTED, f"backend.latency_s={latency_s}", "run.concurrency=1",
            f"hydra.run.dir={run_dir}"]  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def quiz_spec(n: int) -> dict[str, Any]:
    """A tutor explains, a map of two students answers; students score by label. Every third answer is off by one."""
    return {
        "name": "quiz",
        "description": "a tutor explains, two students answer",
        "caption": "correct: a student's answer matches the sum",
        "data": {"records": [{"id": f"q{i}", "question": f"What is {i} + {i % 7}?", "answer": str(i + i % 7 + (i % 3 == 0))}
                             for i in range(n)]},
        "roles": {"tutor": {"role": "teacher", "persona": "a patient tutor"},
                  "students": [{"role": "student", "persona": "a careful student"},
                               {"role": "student", "name": "hasty", "persona": "a hasty student"}]},
        "graph": [
            {"id": "explain", "kind": "agent", "role": "tutor", "prompt": "Explain how to solve: {{ question }}",
             "output": "explanation"},
            {"id": "ask", "kind": "map", "over": {"student": "roles.students"}, "collect": {"correct": "correct"}, "steps": [
                {"id": "solve", "kind": "agent", "role": "{{ student.name }}", "output": "reply",
                 "prompt": "{{ explanation }}\nQ: {{ question }}"},
                {"id": "ok", "kind": "score", "scorer": "numeric_match", "output": "correct",
                 "inputs": {"prediction": "reply", "target": "answer"}, "labels": {"student": "{{ student.name }}"}}]},
        ],
        "scripted": [{"match": "\\nQ:", "reply": "The sum is {{ numbers(prompt)[-2:] | sum }}."},
                     {"match": "Explain", "reply": "Add the two numbers {{ numbers(prompt) }}."}],
    }  # fmt: skip


def loop_spec() -> dict[str, Any]:
    """A tutor and a learner take turns; the route loops back twice (three turns), then the tutor wraps up."""
    return {
        "name": "dialogue",
        "data": {"records": [{"id": "d0", "topic": "fractions"}]},
        "roles": {"tutor": {"role": "teacher", "persona": "a Socratic tutor"}, "learner": {"role": "student"}},
        "graph": [
            {"id": "tutor_says", "kind": "agent", "role": "tutor", "output": "t", "prompt": "turn {{ iteration }} on {{ topic }}"},
            {"id": "learner_says", "kind": "agent", "role": "learner", "output": "l", "prompt": "reply to: {{ t }}"},
            {"id": "more", "kind": "route", "routes": [{"when": "iteration < 5", "to": "tutor_says"}], "max_iters": 2,
             "default": "wrap"},
            {"id": "wrap", "kind": "agent", "role": "tutor", "output": "summary", "after": [], "prompt": "sum up {{ topic }}"},
        ],
    }  # fmt: skip


def hostile_spec() -> dict[str, Any]:
    """Every string a user or a model controls carries the payloads: ids, data, persona, replies, score labels."""
    return {
        "name": "hostile",
        "description": HOSTILE,
        "caption": HOSTILE,
        "data": {"records": [{"id": PAYLOADS[1], "question": HOSTILE, "answer": "1"},
                             {"id": "plain", "question": "What is 1 + 0? " + PAYLOADS[3], "answer": "1"}]},
        "roles": {"student": {"role": "student", "persona": HOSTILE}},
        "graph": [
            {"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"},
            {"id": "ok", "kind": "score", "scorer": "numeric_match", "inputs": {"prediction": "reply", "target": "answer"},
             "output": "correct", "labels": {"tag": "{{ question[:60] }}"}},
        ],
        "scripted": [{"match": ".", "reply": HOSTILE + " {{ prompt }} 1"}],
    }  # fmt: skip


def synthetic_run(run_dir: Path, episodes: int) -> Path:
    """A finished run written directly (no engine): `episodes` episodes of three replies each."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({
        "backend": {"kind": "scripted"},
        "scenario": {"name": "synthetic", "roles": {"tutor": {"role": "teacher"}, "students": [{"role": "student"}]},
                     "graph": [{"id": "explain", "kind": "agent", "role": "tutor", "prompt": "{{ q }}", "output": "e"},
                               {"id": "ask", "kind": "map", "over": {"k": "range(2)"}, "steps": [
                                   {"id": "solve", "kind": "agent", "role": "students.0", "prompt": "{{ e }}", "output": "r"}]}]},
    }), encoding="utf-8")  # fmt: skip
    with open(run_dir / "transcript.jsonl", "w") as t, open(run_dir / "results.jsonl", "w") as r:
        for i in range(episodes):
            for node, agent in (("explain", "tutor"), ("ask[0].solve", "students.0"), ("ask[1].solve", "students.0")):
                t.write(
                    json.dumps(
                        {
                            "episode": f"e{i}",
                            "round": 0,
                            "node": node,
                            "agent": agent,
                            "sample": 0,
                            "prompt": f"Question {i}: what is {i} times {i % 13}? Think step by step.",
                            "text": f"It is {i * (i % 13)}; step by step: {i} x {i % 13}.",
                            "prompt_tokens": 20,
                            "completion_tokens": 12,
                            "latency_s": 0.25,
                            "cached": i % 4 == 0,
                        }
                    )
                    + "\n"
                )
            r.write(
                json.dumps(
                    {
                        "episode": f"e{i}",
                        "round": 0,
                        "inputs": {"id": f"e{i}", "q": f"{i} x {i % 13}"},
                        "outputs": {"answer": i * (i % 13)},
                        "scores": {"correct": float(i % 2)},
                    }
                )
                + "\n"
            )
    metrics = {
        "scenario": "synthetic",
        "status": "finished",
        "episodes": {"finished": episodes, "total": episodes},
        "metrics": [{"name": "correct", "labels": {}, "value": 0.5, "ci_low": 0.49, "ci_high": 0.51, "n": episodes}],
        "usage": {"total": {"requests": 3 * episodes, "tokens": 96 * episodes}},
        "wall_s": 1.0,
        "exports": [],
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (run_dir / "status.json").write_text(json.dumps({"status": "finished", "exit_code": 0}), encoding="utf-8")
    return run_dir
