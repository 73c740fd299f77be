"""The numbers the viewer and `schola report` show (issue 20): service time and queue wait apart, a sweep's runs
counted without its pooled rows, one episode count, loop passes numbered as templates number them, a loop's back
edge inside the drawing, and short arm labels in the report's plot and table."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from schola.backends.base import Completion, ScholaClient
from schola.report import ArmLabels, plot, report, sweep_rows
from schola.store import read_jsonl
from schola.types import CallInfo
from schola.view import build_html
from schola.view.layout import BOX_W, layout
from tests.browser.runs import loop_spec, quiz_spec, run, write_yaml
from tests.unit.test_view import payload

SERIAL = ["backend.latency_s=0.05", "backend.max_concurrency=1", "run.concurrency=4"]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 quiz episodes (12 requests of 0.05 s) through one slot: most requests wait for it."""
    root = tmp_path_factory.mktemp("serial")
    return run(write_yaml(root / "quiz.yaml", quiz_spec(4)), root / "run", *SERIAL, cache=root / "cache")


def test_the_transcript_and_ledger_hold_service_time_and_queue_wait_apart(serial: Path) -> None:
    lines = read_jsonl(serial / "transcript.jsonl")
    ledger = json.loads((serial / "ledger.json").read_text())
    # a reply's latency is what its request took, as the ledger booked it (it held the wait for the one slot too:
    # 3.1 s against the ledger's 0.64 s for these 12 requests)
    booked = sum(u["latency_s"] for u in ledger["by_role"].values())
    assert sum(line["latency_s"] for line in lines) == pytest.approx(booked, abs=1e-4)
    assert booked <= ledger["wall_s"]  # one slot: the requests' service intervals never overlap
    assert sum(line["queue_s"] for line in lines) > 0
    assert sum(u["queue_s"] for u in ledger["by_role"].values()) > 0
    assert all(line["latency_s"] >= 0.05 for line in lines)  # a request is never shorter than its backend sleeps
    metrics = json.loads((serial / "metrics.json").read_text())
    assert "queue_s" not in metrics["usage"]["total"]  # metrics.json holds no timings: same run, same bytes


class OneThread(ScholaClient):
    """A model served by one thread, as the embedded backend's is: the wait for that thread is queue time."""

    pool = ThreadPoolExecutor(max_workers=1)

    @property
    def identity(self) -> str:
        return "one-thread"

    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        await self.in_thread(self.pool, lambda: time.sleep(0.05))
        return Completion(text="ok", prompt_tokens=1, completion_tokens=1)


def test_the_wait_for_a_models_one_thread_is_queue_time_not_service_time() -> None:
    client = OneThread({"kind": "one-thread", "max_concurrency": 8})

    async def six() -> float:
        start = time.perf_counter()
        await asyncio.gather(
            *(client.create([], extra_create_args={"schola": CallInfo(role="r", sample=i)}) for i in range(6))
        )
        return time.perf_counter() - start

    wall = asyncio.run(six())
    usage = client.ledger.by_role["r"]
    # served one at a time, the six requests' service adds up to about the wall time (the thread's hand-overs
    # overlap by microseconds); with the wait in it, it added up to 3.5 times it
    assert usage.requests == 6 and usage.latency_s < 1.5 * wall and usage.queue_s > 0


def test_usage_by_role_carries_the_ledgers_timings(serial: Path) -> None:
    run_page = payload(build_html(serial))["runs"][0]
    for role in ("tutor", "students.0", "hasty"):
        u = run_page["usage"]["by_role"][role]
        assert u["latency_s"] / u["requests"] >= 0.05  # was 0.0: metrics.json leaves timings out
        assert "queue_s" in u
    index = json.loads(__import__("gzip").decompress(__import__("base64").b64decode(run_page["episodes"]["index"])))
    assert all(row["queue_s"] >= 0 and row["latency_s"] >= 3 * 0.05 for row in index)
    steps = {s["name"]: s for g in run_page["graphs"] for s in g.get("nodes", [])}
    assert steps["solve"]["mean_latency_s"] >= 0.05 and steps["solve"]["mean_queue_s"] > 0


def test_a_stopped_run_counts_its_episodes_once_in_one_meaning(tmp_path: Path) -> None:
    quiz = write_yaml(tmp_path / "quiz.yaml", quiz_spec(4))
    stopped = run(quiz, tmp_path / "stopped", "budget.max_requests=5", cache=tmp_path / "c")
    page = payload(build_html(stopped))["runs"][0]
    counts = page["counts"]
    assert counts["total"] == 4
    assert counts["finished"] + counts["failed"] + counts["unfinished"] + counts["not_started"] == 4
    assert counts["listed"] == page["episodes"]["count"] == counts["finished"] + counts["unfinished"]
    assert counts["finished"] == page["episode_counts"]["finished"]


def test_loop_passes_are_numbered_from_0_as_templates_number_them(tmp_path: Path) -> None:
    loop = run(write_yaml(tmp_path / "loop.yaml", loop_spec()), tmp_path / "loop", cache=tmp_path / "c")
    turns = [line for line in read_jsonl(loop / "transcript.jsonl") if line["node"] == "tutor_says"]
    assert [t["iteration"] for t in turns] == [0, 1, 2]
    assert [t["prompt"] for t in turns] == [f"turn {i} on fractions" for i in range(3)]  # what `iteration` said


def test_a_loops_back_edge_stays_inside_the_drawing() -> None:
    drawn = layout(loop_spec()["graph"], {})
    at = {n["id"]: n for n in drawn["nodes"]}
    loops = [e for e in drawn["edges"] if e["kind"] == "loop"]
    assert loops
    for e in loops:
        right = max(at[e["from"]]["x"], at[e["to"]]["x"]) + BOX_W
        assert right < e["bend_x"] <= drawn["width"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three seeds of a quiz whose tutor's prompt differs too (a long value: seeds 0 and 1 share one, pooled)."""
    root = tmp_path_factory.mktemp("sweep")
    for seed in range(3):
        spec = quiz_spec(2)
        spec["graph"][0]["prompt"] = (
            f"Explain slowly and carefully, step by step, to a patient learner, arm {seed // 2}: " + "{{ question }}"
        )
        quiz = write_yaml(root / f"quiz{seed}.yaml", spec)
        run(quiz, root / "runs" / f"s{seed}", f"seed={seed}", cache=root / "cache")
    return root / "runs"


def test_a_3_run_sweep_is_3_runs_in_the_report_and_the_viewer(sweep: Path) -> None:
    table, _, _ = report(sweep)
    assert str(table.title).startswith("3 runs")
    data = payload(build_html(sweep))
    assert len(data["sweep"]["arms"]) == 3 and len(data["sweep"]["pooled"]) == 1
    assert not set(data["sweep"]["arms"]) & set(data["sweep"]["pooled"])


def png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_report_labels_are_short_and_long_values_are_listed_below(sweep: Path) -> None:
    varying, rows = sweep_rows(sweep)
    labels = ArmLabels(varying)
    arms = {labels.arm(r) for r in rows}
    assert all(len(a) <= 80 for a in arms), arms
    assert any("Explain slowly and carefully, step by step" in n for n in labels.notes)
    width, height = png_size(plot(rows, varying))
    assert width < 4 * height  # the legend held the prompt on one line: a sliver many times wider than high
    table, _, _ = report(sweep)
    console = Console(width=160, record=True)
    console.print(table)
    text = console.export_text()
    assert "prompt" in text and "seed" in text and "status" in text and "…" not in text.splitlines()[2]
    assert "Explain slowly and carefully, step by step" in text  # listed in full below the table
