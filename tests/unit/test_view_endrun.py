"""The end of a run (issue 18): report.html's episode work is per block of episodes, not per episode, and what it
shows is unchanged (interleaved replies, repeated results lines, unfinished episodes, node stats, damaged lines)."""

from __future__ import annotations

import base64
import gzip
import io
import json
from json import encoder as stdlib_encoder
from pathlib import Path
from typing import Any

import pytest

from schola.store import jsonl_lines
from schola.view.layout import node_stats
from schola.view.payload import CHUNK, Transcript, episodes


def unpack(block: str) -> Any:
    return json.loads(gzip.decompress(base64.b64decode(block)))


def line(eid: str, i: int, node: str = "ask", latency: float = 0.25) -> dict[str, Any]:
    return {"agent": "student", "cached": i % 3 == 0, "completion_tokens": 2, "episode": eid, "latency_s": latency,
            "node": node, "prompt": f"p{i}", "prompt_tokens": 5, "queue_s": 0.5, "round": 0, "text": f"t{i}"}  # fmt: skip


def run_dir(tmp_path: Path, n: int) -> Path:
    """n episodes of two replies each, the replies of neighbours interleaved (as concurrent episodes write them),
    results in an order other than the transcript's, one results line repeated, and one episode unfinished."""
    lines = []
    for i in range(0, n, 2):
        a, b = f"e{i}", f"e{i + 1}"
        lines += [line(a, 2 * i), line(b, 2 * i + 1), line(b, 2 * i + 2, f"loop[{i % 3}].x"), line(a, 2 * i + 3)]
    lines.append(line("lost", 10**6))
    results = [{"episode": f"e{i}", "inputs": {"id": f"e{i}"}, "outputs": {"reply": str(i)}, "round": 0,
                "scores": {"correct": float(i % 2)}} for i in reversed(range(n))]  # fmt: skip
    results.insert(5, dict(results[0], outputs={"reply": "a repeated line: not shown"}))
    (tmp_path / "transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in results))
    return tmp_path


def listed(run: Path) -> dict[str, Any]:
    transcript = Transcript(run / "transcript.jsonl")
    transcript.scan()
    return episodes(run, transcript, [])


def test_the_episodes_shown_are_unchanged(tmp_path: Path) -> None:
    n = 2 * CHUNK + 10
    out = listed(run_dir(tmp_path, n))
    index = unpack(out["index"])
    assert [e["id"] for e in index] == [f"e{i}" for i in reversed(range(n))] + ["lost"]
    assert out["statuses"] == {"finished": n, "unfinished": 1} and out["count"] == n + 1
    blocks: dict[str, Any] = {}
    for block in out["chunks"]:
        blocks |= unpack(block)
    for i in (0, 1, n - 1):
        e = next(r for r in index if r["id"] == f"e{i}")
        texts = [s["text"] for s in blocks[f"e{i}"]["steps"]]
        assert texts == ([f"t{2 * i}", f"t{2 * i + 3}"] if i % 2 == 0 else [f"t{2 * i - 1}", f"t{2 * i}"])
        assert e["steps"] == 2 and e["tokens"] == 14 and e["latency_s"] == 0.5 and e["queue_s"] == 1.0
        assert e["scores"] == {"correct": float(i % 2)} and e["chunk"] == index.index(e) // CHUNK
        assert blocks[f"e{i}"]["outputs"] == {"reply": str(i)}  # the first results line, not the repeat
    assert blocks["lost"]["steps"][0]["text"] == "t1000000"


def test_report_asks_sqlite_per_block_not_per_episode(tmp_path: Path) -> None:
    """Before: a SELECT of its steps per episode (and an INSERT to find repeats): 1,000 episodes, 1,000+ queries."""
    run = run_dir(tmp_path, 1000)
    transcript = Transcript(run / "transcript.jsonl")
    transcript.scan()
    selects: list[str] = []
    transcript.db.set_trace_callback(lambda sql: selects.append(sql) if sql.lstrip().startswith("SELECT") else None)
    out = episodes(run, transcript, [])
    assert out["count"] == 1001
    assert len(selects) <= 2 * (1000 // CHUNK) + 10, len(selects)


def test_report_builds_no_json_encoder_per_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: to_json went through JSONEncoder.encode, which builds json's C encoder on every call (3 an episode)."""
    run = run_dir(tmp_path, 300)
    built = []
    make = stdlib_encoder.c_make_encoder
    assert make is not None

    def counted(*args: Any) -> Any:
        built.append(args)
        return make(*args)

    monkeypatch.setattr(stdlib_encoder, "c_make_encoder", counted)
    assert listed(run)["count"] == 301
    assert len(built) < 10, len(built)


def test_scan_gives_the_node_stats_of_its_lines(tmp_path: Path) -> None:
    run = run_dir(tmp_path, 40)
    lines = [json.loads(x) for x in (run / "transcript.jsonl").read_text().splitlines()]
    lines[3]["latency_s"] = 1e-7  # sums that depend on their order
    lines[7]["latency_s"], lines[9]["queue_s"] = "slow", None
    (run / "transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    transcript = Transcript(run / "transcript.jsonl")
    try:
        assert transcript.scan() == node_stats(lines)
    finally:
        transcript.close()


@pytest.mark.parametrize(
    "raw",
    [b'{"a": 1}\n', b'  {"a": 1}\n', b'{"a": 1}  \r\n', b'{"a": 1} x\n', b'{"a": NaN}\n', b'[1]\n', b"{\n",
     b'{"a": "\\ud800"}\n', b'{"a": 1}{"b": 2}\n', b"\n", b'"s"\n', b'{"a": [1, {"b": -Infinity}]}'],
)  # fmt: skip
def test_jsonl_lines_reads_what_json_loads_reads(raw: bytes) -> None:
    try:
        value = json.loads(raw.decode("utf-8"))
        expected = [(0, raw.decode("utf-8").rstrip("\r\n"), value)] if isinstance(value, dict) else []
    except json.JSONDecodeError:
        expected = []
    got = list(jsonl_lines(io.BytesIO(raw)))
    assert json.dumps(got) == json.dumps(expected)


def test_an_episode_id_with_a_lone_surrogate_is_shown(tmp_path: Path) -> None:
    """The store writes a lone surrogate as its JSON escape; read back, it must survive the report's SQLite index
    (found by the run-directory fuzzer: UnicodeEncodeError at the insert)."""
    eid = "e\ud800x"
    lines = [line(eid, 0), line(eid, 1, "loop[0].\udfffy"), line("plain", 2)]
    results = [{"episode": eid, "inputs": {"id": eid}, "outputs": {}, "round": 0, "scores": {}}]
    (tmp_path / "transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in results))
    transcript = Transcript(tmp_path / "transcript.jsonl")
    transcript.scan()
    assert [x["node"] for x in transcript.lines(eid)] == ["ask", "loop[0].\udfffy"]
    out = episodes(tmp_path, transcript, [])
    assert [e["id"] for e in unpack(out["index"])] == [eid, "plain"]
    assert out["statuses"] == {"finished": 1, "unfinished": 1}
