"""One writer per run: a run directory is locked while a process writes it; a second writer (two `schola run
resume=DIR` at once) exits 2 naming the holding process instead of spending the budget again and doubling the
files; the kernel drops the lock of a killed process; readers take no lock."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from schola.store import LOCK, RunStore
from tests.conftest import SCRIPTED, read_jsonl

EPISODES = 16
# 16 problems of 12 replies each (3 rationales, each read by one student on 3 exam problems), 0.02 s a reply
RUN = [sys.executable, "-m", "schola.cli", "run", "scenario=lbt", *SCRIPTED, "scenario.roles.teacher.samples=3",
       f"scenario.data.problems={EPISODES}", "backend.latency_s=0.02", "run.concurrency=1"]  # fmt: skip
LINES_PER_EPISODE = 12


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout}s for {what}")
        time.sleep(0.02)


def start_run(run: Path, command: list[str]) -> subprocess.Popen[str]:
    """A run in its own process, returned once it has finished an episode more than the directory held (it is
    mid-run then)."""
    before = len(read_jsonl(run / "results.jsonl"))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: len(read_jsonl(run / "results.jsonl")) > before or proc.poll() is not None, "an episode")
    assert proc.poll() is None, proc.communicate()[0]
    return proc


def raw_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_a_second_writer_exits_2_naming_the_holder_and_the_run_is_written_once(tmp_path: Path) -> None:
    run = tmp_path / "r"
    stopped = subprocess.run([*RUN, "budget.max_requests=24", f"hydra.run.dir={run}"], capture_output=True, timeout=120)
    assert stopped.returncode == 4, stopped.stdout  # two episodes finished, then the budget: a run to resume
    first = start_run(run, [*RUN[:4], f"resume={run}", "budget.max_requests=1000"])
    first.send_signal(signal.SIGSTOP)  # mid-run, holding the directory: the second writer comes now, for sure
    try:
        second = subprocess.run([*RUN[:4], f"resume={run}"], capture_output=True, text=True, timeout=120)
        view = subprocess.run([*RUN[:3], "view", str(run)], capture_output=True, text=True, timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    out = first.communicate(timeout=120)[0]
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"process {first.pid}" in second.stdout + second.stderr and "Traceback" not in second.stderr
    assert view.returncode == 0, view.stdout + view.stderr  # a reader takes no lock
    assert first.returncode == 0, out
    results = [json.loads(line)["episode"] for line in raw_lines(run / "results.jsonl")]
    assert results == [f"tp{i}" for i in range(EPISODES)]  # each once: nobody else appended
    per_episode = Counter(line["episode"] for line in read_jsonl(run / "transcript.jsonl"))
    assert len(raw_lines(run / "transcript.jsonl")) == EPISODES * LINES_PER_EPISODE
    assert set(per_episode.values()) == {LINES_PER_EPISODE}


def test_the_lock_of_a_killed_writer_is_gone_and_the_run_resumes(tmp_path: Path) -> None:
    run = tmp_path / "r"
    first = start_run(run, [*RUN, f"hydra.run.dir={run}"])
    assert (run / LOCK).read_text().strip() == str(first.pid)
    first.kill()
    first.communicate(timeout=60)
    resumed = subprocess.run([*RUN[:4], f"resume={run}"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [r["episode"] for r in read_jsonl(run / "results.jsonl")] == [f"tp{i}" for i in range(EPISODES)]


def try_lock(run: Path) -> subprocess.CompletedProcess[str]:
    """Another process asks for the run directory's lock."""
    code = f"from schola.store import RunStore; RunStore({str(run)!r}).lock()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_store_holds_the_lock_from_its_first_write_until_it_writes_the_status(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert try_lock(tmp_path).returncode == 0  # nothing written yet: not held
    store.write_config({"scenario": {"name": "x"}, "backend": {"kind": "scripted"}})
    refused = try_lock(tmp_path)
    assert refused.returncode != 0 and "ConfigError" in refused.stderr and "one writer" in refused.stderr
    store.write_status(status="finished", exit_code=0)
    assert try_lock(tmp_path).returncode == 0
