"""Everything `check` passes is bounded in time, and Ctrl-C always works: templates (prompts and scripted replies)
have an operation budget, patterns from a config a time bound, secret redaction is linear, and a second Ctrl-C
still ends a run cleanly. Each of these ran for hours (or forever, ignoring Ctrl-C) before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from schola import sandbox, templates
from schola.errors import ConfigError
from tests.conftest import SCRIPTED, read_jsonl

ROOT = Path(__file__).parents[2]
NESTED = "{% for i in range(N) %}{% for j in range(N) %}{% endfor %}{% endfor %}"  # 10**10 iterations at 100000
# What used to run for hours must end within these, on a loaded shared machine too (the bounds are about 1 s).
RENDER_S = 15  # one render, in-process
RUN_S = 90  # a whole `schola run` in a subprocess, start-up included


def scenario(tmp_path: Path, *, prompt: str = "What is {{ n }}?", scripted: list[dict[str, Any]] | None = None,
             score: dict[str, Any] | None = None, episodes: int = 1) -> Path:  # fmt: skip
    """A YAML scenario: one agent step (and a score step), `episodes` records with n=100000."""
    graph: list[dict[str, Any]] = [
        {"id": "ask", "kind": "agent", "role": "student", "prompt": prompt, "output": "reply"}
    ]
    if score is not None:
        graph.append({"id": "grade", "kind": "score", "output": "ok", **score})
    body = {
        "name": "bounds",
        "data": {"records": [{"id": f"e{i}", "n": 100000} for i in range(episodes)]},
        "roles": {"student": {"role": "student"}},
        "graph": graph,
        "scripted": scripted or [{"match": "", "reply": "a reply"}],
    }
    path = tmp_path / "bounds.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def start(args: list[str]) -> subprocess.Popen[str]:
    """`schola ...` in a subprocess (a runaway run in-process would hang the suite instead of failing a test) that
    gets SIGINT as a terminal gives it (a suite started in the background inherits it ignored)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "schola.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


def run(path: Path, tmp_path: Path) -> tuple[int, str]:
    """`schola run` of a scenario with the scripted backend: (exit code, output); fails the test past RUN_S."""
    proc = start(["run", str(path), *SCRIPTED, f"hydra.run.dir={tmp_path / 'r'}"])
    try:
        return proc.wait(RUN_S), proc.communicate()[0]
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run was still going after {RUN_S} s")
    finally:
        proc.kill()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail the test (not hang the suite) when Python code under it runs past `seconds`."""

    def expire(*_: Any) -> None:
        pytest.fail(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def over_budget(out: str) -> bool:
    """The render's bound said so: its operations, or its time (which comes first depends on the machine)."""
    return "schola.sandbox.MAX_OPS" in out or "schola.sandbox.MAX_CPU_S" in out


# -- templates ---------------------------------------------------------------------------------------------------
def test_nested_loops_over_constant_ranges_are_refused_by_check(cli: Any, tmp_path: Path) -> None:
    path = scenario(tmp_path, prompt=NESTED.replace("N", "100000"))
    code, out = cli("check", str(path), *SCRIPTED)
    assert code == 2, out
    assert "scenario.graph[0].prompt" in out and "10,000,100,000 times" in out and "MAX_OPS" in out


def test_a_runaway_render_is_an_error_in_bounded_time() -> None:
    with deadline(RENDER_S), pytest.raises(ConfigError) as e:
        templates.render(NESTED.replace("N", "n"), {"n": 100000}, key="scenario.graph.ask")
    assert "scenario.graph.ask" in str(e.value) and over_budget(str(e.value))


def test_a_runaway_prompt_stops_the_run_naming_the_step(cli: Any, tmp_path: Path) -> None:
    path = scenario(tmp_path, prompt=NESTED.replace("N", "n"))  # n from the data: check cannot see it
    assert cli("check", str(path), *SCRIPTED)[0] == 0
    code, out = run(path, tmp_path)
    assert code == 2, out
    assert "ask" in out and over_budget(out) and "Traceback" not in out
    assert json.loads((tmp_path / "r" / "status.json").read_text())["status"] == "config_error"


def test_the_budget_counts_calls_too() -> None:
    """A macro calling itself twice is exponential without a single loop; a filter over a large value is one
    operation that may be costly: the time bound stops both."""
    with deadline(RENDER_S), pytest.raises(ConfigError) as e:
        templates.render("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(k) }}",
                         {"k": 60}, key="k")  # fmt: skip
    assert over_budget(str(e.value))
    with deadline(RENDER_S), pytest.raises(ConfigError, match="MAX_CPU_S"):
        templates.render(
            "{% for i in range(n) %}{% set y = big|upper %}{% endfor %}", {"n": 100000, "big": "a" * 4_000_000}
        )


def test_a_large_loop_within_the_budget_still_renders() -> None:
    text = templates.render("{% for i in range(n) %}{{ i % 10 }}{% endfor %}", {"n": 100000})
    assert len(text) == 100000
    assert (
        templates.render("{% for i in range(3) %}{% for j in xs %}{{ j }}{% endfor %}{% endfor %}", {"xs": "ab"})
        == "ababab"
    )


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        ("{{ lipsum.__globals__ }}", "'lipsum' is not allowed"),
        ("{{ 1/0 }}", "ZeroDivisionError"),
        (NESTED.replace("N", "100000"), "MAX_OPS"),
        ("{{ answer }}", "reads answer"),
    ],
)
def test_scripted_reply_templates_are_checked_like_prompts(cli: Any, tmp_path: Path, reply: str, says: str) -> None:
    path = scenario(tmp_path, scripted=[{"match": "What", "reply": reply}])
    code, out = cli("check", str(path), *SCRIPTED)
    assert code == 2, out
    assert says in out and "Traceback" not in out


def test_a_runaway_scripted_reply_is_a_config_error_not_a_backend_error(tmp_path: Path) -> None:
    reply = "{% for i in range(numbers(prompt)[0]) %}{% for j in range(numbers(prompt)[0]) %}{% endfor %}{% endfor %}"
    code, out = run(scenario(tmp_path, scripted=[{"match": "What", "reply": reply}]), tmp_path)
    assert code == 2, out  # not 3, a backend error
    assert "rules[0].reply" in out and over_budget(out) and "backend_error" not in out


# -- patterns ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(\w+\s?)*x", r"(?:a*|b)+c"])
def test_check_refuses_nested_quantifiers(cli: Any, tmp_path: Path, pattern: str) -> None:
    score = {"scorer": "regex", "inputs": {"text": "reply"}, "params": {"pattern": pattern}}
    code, out = cli("check", str(scenario(tmp_path, score=score)), *SCRIPTED)
    assert code == 2, out
    assert "scenario.graph[1].params" in out and "repeats a repetition" in out
    path = scenario(tmp_path, scripted=[{"match": pattern, "reply": "x"}])
    code, out = cli("check", str(path), *SCRIPTED)
    assert code == 2, out
    assert "match" in out and "repeats a repetition" in out


@pytest.mark.parametrize("pattern", [r"(\d+\.)+\d+", r"(a|b)+", r"(a++)+", r"(?>a+)+", r"\w+\s\w+"])
def test_patterns_without_nested_quantifiers_pass(pattern: str) -> None:
    sandbox.pattern(pattern)


def test_a_catastrophic_scorer_pattern_is_an_error_in_bounded_time(cli: Any, tmp_path: Path) -> None:
    """`(a|aa)+$` has no nested quantifier (check passes it) but backtracks exponentially on a's and a b."""
    score = {"scorer": "regex", "inputs": {"text": "reply"}, "params": {"pattern": "(a|aa)+$"}}
    path = scenario(tmp_path, score=score, scripted=[{"match": "", "reply": "a" * 60 + "b"}])
    assert cli("check", str(path), *SCRIPTED)[0] == 0
    code, out = run(path, tmp_path)
    assert code == 2, out
    assert "grade" in out and "REGEX_TIMEOUT_S" in out and "Traceback" not in out


def test_a_catastrophic_scripted_match_is_an_error_in_bounded_time(tmp_path: Path) -> None:
    code, out = run(
        scenario(tmp_path, prompt="{{ 'a' * 60 }}b", scripted=[{"match": "(a|aa)+$", "reply": "x"}]), tmp_path
    )
    assert code == 2, out
    assert "rules[0].match" in out and "REGEX_TIMEOUT_S" in out and "backend_error" not in out


def test_the_scorer_and_scripted_rules_still_match() -> None:
    from schola.scorers import regex

    assert regex("The answer is 42.", pattern=r"answer is (\d+)", group=1) == "42"
    assert regex("a\nb", pattern="a.b") == 1.0  # DOTALL, as before
    assert regex(None, pattern="x") == 0.0


# -- redaction ---------------------------------------------------------------------------------------------------
def test_redaction_is_linear_on_a_megabyte() -> None:
    """In a subprocess, so that the quadratic version (about 20 minutes on 1 MB) fails the test instead of hanging
    the suite."""
    code = (
        "import time; from schola.secrets import redact\n"
        "for text in ('a' * 1_000_000, 'a://' + 'b' * 1_000_000, 'x://u:k@h ' * 100_000):\n"
        "    start = time.perf_counter(); redact(text, []); print(time.perf_counter() - start)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("redacting 1 MB took over 30 s")
    assert done.returncode == 0, done.stderr
    assert all(float(line) < 1.0 for line in done.stdout.split()), done.stdout


def test_redaction_still_masks_url_user_info() -> None:
    from schola.secrets import redact

    assert redact("see https://user:sk-abc@host/x and git+ssh://git@github.com/r", []) == (
        "see https://***@host/x and git+ssh://***@github.com/r"
    )
    assert redact("a://b/c@d, mail me@host", []) == "a://b/c@d, mail me@host"


# -- Ctrl-C ------------------------------------------------------------------------------------------------------
def wait_for(predicate: Any, *, timeout: float, what: str) -> None:
    until = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > until:
            pytest.fail(f"waited {timeout}s for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("where", ["prompt", "scorer"])
def test_ctrl_c_during_runaway_work_ends_the_run(tmp_path: Path, where: str) -> None:
    """Before: the event loop spun in a template or a regex and never saw the signal (only SIGKILL ended it)."""
    if where == "prompt":
        path = scenario(tmp_path, prompt=NESTED.replace("N", "n"))
    else:
        score = {"scorer": "regex", "inputs": {"text": "reply"}, "params": {"pattern": "(a|aa)+$"}}
        path = scenario(tmp_path, score=score, scripted=[{"match": "", "reply": "a" * 60 + "b"}])
    run_dir = tmp_path / "r"
    proc = start(["run", str(path), *SCRIPTED, f"hydra.run.dir={run_dir}"])
    try:
        wait_for(lambda: (run_dir / "config.yaml").exists(), timeout=60, what="the run to start")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=RUN_S)[0]
    except subprocess.TimeoutExpired:
        pytest.fail("the run ignored Ctrl-C")
    finally:
        proc.kill()
    assert proc.returncode in (2, 130), output  # the bound's error, or the signal: whichever came first
    assert "Traceback" not in output
    assert json.loads((run_dir / "status.json").read_text())["exit_code"] == proc.returncode


def test_ctrl_c_stops_a_run_whose_backend_never_waits(tmp_path: Path) -> None:
    """Before: with the scripted backend (or cache hits) nothing in an episode suspends, so one worker ran every
    episode without the event loop ever seeing the signal (exit 0, all 40 done). Each render here is heavy but
    within the sandbox's bounds."""
    path = scenario(tmp_path, prompt="{% for i in range(n) %}{{ i % 2 }}{% endfor %}", episodes=40)
    run_dir = tmp_path / "r"
    proc = start(["run", str(path), *SCRIPTED, "run.concurrency=1", f"hydra.run.dir={run_dir}"])
    try:
        wait_for(lambda: bool(read_jsonl(run_dir / "results.jsonl")), timeout=60, what="the first finished episode")
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=RUN_S)[0]
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert "Traceback" not in output and f"resume={run_dir}" in output
    assert len(read_jsonl(run_dir / "results.jsonl")) < 40


def test_a_second_ctrl_c_still_ends_the_run_cleanly(tmp_path: Path) -> None:
    """Before: the second signal landed while the run saved what finished: exit 2, "RUN has no metrics.json",
    no status.json."""
    run_dir = tmp_path / "r"
    proc = start(["run", "scenario=lbt", *SCRIPTED, "scenario.roles.teacher.samples=3", "scenario.data.problems=16",
                  "backend.latency_s=0.05", "run.concurrency=1", f"hydra.run.dir={run_dir}"])  # fmt: skip
    try:
        wait_for(lambda: bool(read_jsonl(run_dir / "results.jsonl")), timeout=60, what="the first finished episode")
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=RUN_S)[0]
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "resume=" in output
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["exit_code"] == 130
    assert json.loads((run_dir / "metrics.json").read_text())["episodes"]["finished"] >= 1


def test_a_late_ctrl_c_does_not_change_how_a_finished_run_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a SIGINT landing after the run had written status.json (exit 2) but while the CLI printed its
    summary killed the process (-2): its exit code no longer matched status.json."""
    import os

    import schola.cli
    from schola.runtime import RunResult

    def summary(result: RunResult) -> int:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the signal is delivered here
        return result.exit_code

    monkeypatch.setattr(schola.cli, "_finish", summary)
    before = signal.getsignal(signal.SIGINT)
    assert schola.cli.finish(RunResult(run_dir=tmp_path, status="config_error", exit_code=2)) == 2
    assert signal.getsignal(signal.SIGINT) is before  # restored for whatever runs next
