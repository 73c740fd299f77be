"""report.html's episode entries built while `schola run` goes (issue 18, end of run): the end only joins and
compresses them, and the page is byte for byte the one read from the run's files (`schola view`, `schola report`),
on a run whose episodes finish in the order asked or not, with stages that sort results.jsonl and ask roles,
failed and unfinished episodes, a resumed run, and files changed behind its back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from schola import plugins
from schola.runtime import run_plan
from schola.spec import RunSpec, open_run
from schola.view import blocks as blocks_module
from schola.view import payload, write_report

SLOW = "+backends.slow={kind: scripted, latency_s: 0.004}"
BASE = ["backend=scripted", SLOW, "run.concurrency=8", "run.max_failed=3", "cache.enabled=false"]


def scenario(folder: Path, n: int, stages: list[dict[str, Any]] | None = None) -> Path:
    """n episodes of two replies each; every third episode's role answers slowly, so episodes finish out of the
    order asked and their replies interleave in the transcript; episode q7 fails at its second step."""
    data = folder / "records.jsonl"
    rows = [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1), "d": int(i != 7),
             "who": "slow" if i % 3 == 0 else "fast"} for i in range(n)]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {
        "name": "blocks",
        "data": {"path": str(data)},
        "roles": {"slow": {"role": "student", "backend": "slow"}, "fast": {"role": "student"}},
        "graph": [
            {"id": "ask", "kind": "agent", "role": "{{ who }}", "prompt": "{{ question }}", "output": "reply"},
            {"id": "again", "kind": "agent", "role": "{{ who }}", "prompt": "Sure? {{ question }} <&> {{ 1 // d }}",
             "output": "reply2"},
            {"id": "ok", "kind": "score", "scorer": "numeric_match",
             "inputs": {"prediction": "reply", "target": "answer"}, "output": "correct"},
        ],
        "scripted": [{"match": "What is (\\d+)", "reply": "{{ numbers(prompt)[0] + 1 }} \u2028 é"}],
        **({"stages": stages} if stages else {}),
    }  # fmt: skip
    path = folder / "blocks.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the report's reads of the transcript (the files' path)."""
    calls: list[int] = []
    scan = payload.Transcript.scan

    def counted(self: payload.Transcript) -> dict[str, dict[str, float]]:
        calls.append(1)
        return scan(self)

    monkeypatch.setattr(payload.Transcript, "scan", counted)
    return calls


def run_cli(cli: Any, path: Path, run: Path, *extra: str) -> str:
    code, out = cli("run", str(path), *BASE, *extra, f"hydra.run.dir={run}")
    assert code in (0, 1, 4), out
    return out


def same_as_the_files(run: Path) -> None:
    """report.html as `schola run` wrote it is the page read from the run's files."""
    made = (run / "report.html").read_bytes()
    write_report(run)  # no blocks: the files' path, as `schola view` takes it
    assert (run / "report.html").read_bytes() == made


def test_schola_run_writes_its_report_from_the_blocks_it_built(cli: Any, tmp_path: Path, scans: list[int]) -> None:
    """Before: the end of every run read the transcript and results again, through a SQLite index."""
    run = tmp_path / "r"
    run_cli(cli, scenario(tmp_path, 2 * payload.CHUNK + 37), run)
    assert scans == []
    results = [json.loads(x) for x in (run / "results.jsonl").read_text().split("\n")[:-1]]
    assert [r["episode"] for r in results] != [f"q{i}" for i in range(len(results))]  # finished out of order
    assert any("error" in r for r in results)
    same_as_the_files(run)
    assert scans == [1]


def test_stages_that_sort_the_results_and_ask_roles(cli: Any, tmp_path: Path, scans: list[int]) -> None:
    """A stage reads results.jsonl (sorted into the order asked: the blocks follow) and asks a role (its replies
    are the page's '-stage-' entry)."""
    moved: list[int] = []
    reorder = blocks_module.EpisodeBlocks.reorder

    def counted(self: blocks_module.EpisodeBlocks, order: Any, results: Path) -> None:
        moved.append(len(order))
        reorder(self, order, results)

    async def asks(ctx: Any) -> list[Any]:
        assert len(list(ctx.results)) == 149  # q7 failed
        for i in range(3):
            await ctx.act("fast", f"What is {i} + 1? (a stage)")
        return []

    run = tmp_path / "r"
    with plugins.stages.registered("asks", asks):
        blocks_module.EpisodeBlocks.reorder = counted  # type: ignore[method-assign]
        try:
            run_cli(cli, scenario(tmp_path, 150, [{"fn": "asks"}]), run)
        finally:
            blocks_module.EpisodeBlocks.reorder = reorder  # type: ignore[method-assign]
    assert moved == [150] and scans == []
    assert [json.loads(x)["episode"] for x in (run / "results.jsonl").read_text().split("\n")[:-1]] == [
        f"q{i}" for i in range(150)
    ]
    assert '"-stage-"' in (run / "transcript.jsonl").read_text()
    same_as_the_files(run)


def test_a_stopped_run_and_its_resume(cli: Any, tmp_path: Path, scans: list[int]) -> None:
    """A budget stops the run with episodes half done (unfinished entries, from the blocks); the resume has no blocks
    for what the first invocation kept, so its page is read from the files, and is the same page again."""
    path, run = scenario(tmp_path, 120), tmp_path / "r"
    out = run_cli(cli, path, run, "budget.max_requests=101")
    assert "budget" in out and scans == []
    page = (run / "report.html").read_text()
    assert json.loads((run / "status.json").read_text())["status"] == "budget"
    finished = len((run / "results.jsonl").read_text().split("\n")[:-1])
    assert 0 < finished < 120 and "unfinished" in page
    same_as_the_files(run)
    code, out = cli("run", f"resume={run}", "budget.max_requests=1000", SLOW)
    assert code == 0, out
    assert len(scans) == 2  # the resumed run's report read the files
    same_as_the_files(run)


def test_files_changed_behind_the_run_are_read_not_the_blocks(tmp_path: Path) -> None:
    path = scenario(tmp_path, 30)

    def finished(name: str) -> tuple[Path, Any]:
        plan, store = open_run(RunSpec.of(path, BASE, run_dir=tmp_path / name))
        result = run_plan(plan, store, report=True)
        assert result.blocks is not None and result.exit_code in (0, 1)
        return tmp_path / name, result.blocks

    run, blocks = finished("kept")
    assert blocks.matches(run)
    blocks.close()
    for name, change in (
        ("edited", lambda run: (run / "results.jsonl").write_bytes((run / "results.jsonl").read_bytes()[::-1])),
        ("grown", lambda run: (run / "transcript.jsonl").open("a").write(json.dumps({"episode": "q0"}) + "\n")),
        ("same size", lambda run: (run / "transcript.jsonl").write_bytes(
            (run / "transcript.jsonl").read_bytes().replace(b'"q1"', b'"q2"', 1))),
    ):  # fmt: skip
        run, blocks = finished(name)
        change(run)
        assert not blocks.matches(run), name
        write_report(run, blocks)
        same_as_the_files(run)


def test_no_blocks_for_a_run_with_secrets_to_mask_or_without_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = scenario(tmp_path, 5)
    plan, store = open_run(RunSpec.of(path, BASE, run_dir=tmp_path / "api"))
    assert run_plan(plan, store).blocks is None  # schola.run writes no report: nothing built for it
    plan, store = open_run(RunSpec.of(path, BASE, run_dir=tmp_path / "s"))
    result = run_plan(plan, store, report=True)
    config = yaml.safe_load((tmp_path / "s" / "config.yaml").read_text())
    config["backend"]["api_key_env"] = "BLOCKS_KEY"  # a secret the view masks (as a run against a server has)
    (tmp_path / "s" / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("BLOCKS_KEY", "sk-verysecretvalue123")
    calls: list[int] = []
    scan = payload.Transcript.scan
    monkeypatch.setattr(payload.Transcript, "scan", lambda self: calls.append(1) or scan(self))
    write_report(tmp_path / "s", result.blocks)
    assert calls == [1]  # the view masks secrets the blocks do not know: it reads the files


def test_the_records_in_hand_give_the_entries_their_lines_give() -> None:
    """The blocks read the run's own records instead of parsing the lines written from them (the lines' keys are
    sorted at every level, a NaN is null, a non-string key or value is what json makes of it): the same entries."""
    import numpy as np

    from schola.store import dump_line, dumps

    odd: list[dict[str, Any]] = [
        {"z": 1, "a": {"y": [1, (2, 3)], "b": None}},
        {"b": float("nan"), "a": float("inf"), "k": {3: "int key", 1: "first", 2.5: None}},
        {"s": 'lone \ud800 surrogate, \u2028, </script> & "quotes"', "n": np.float64(0.5), "i": np.int64(3)},
        {"obj": object.__name__, "set": {1}, "big": 10**30, "neg": -0.0},
        {"t": (1.0, float("nan"), (float("-inf"), {"x": [float("nan")]}))},  # a NaN inside tuples (JSON: lists)
    ]
    records = [
        {"episode": f"e{i}", "inputs": {"id": f"e{i}", **o}, "outputs": {**o, "reply": "x"}, "round": i % 2,
         "scores": {"z": 1.0, "a": float("nan") if i == 1 else i, **({"b": True} if i == 2 else {})},
         **({"error": {"type": "X", "step": "s", "message": "m", "a": 1}} if i == 3 else {})}
        for i, o in enumerate(odd)
    ]  # fmt: skip
    lines = [
        {"agent": "a", "cached": c, "completion_tokens": t, "episode": f"e{i % 4}", "iteration": 0,
         "latency_s": lat, "node": "ask[0].x", "prompt": p, "prompt_tokens": 2, "queue_s": 0.0, "round": 0,
         "sample": 0, "text": p}
        for i, (c, t, lat, p) in enumerate([(True, 1, 0.25, "NaN and Infinity"), (False, 2, float("nan"), "\ud800"),
                                            (np.bool_(False), 3, 0.5, "x"), (False, np.int64(4), np.float64(0.1), "y"),
                                            (False, 5, 0.75, "z")])
    ]  # fmt: skip
    made = {}
    for kind in ("records", "lines"):
        blocks = blocks_module.EpisodeBlocks()
        for line in lines:
            raw = (dump_line(line) + "\n").encode("utf-8", "backslashreplace")
            blocks.line(raw, line if kind == "records" else None)
        for r in records:
            blocks.result(dumps(r) + "\n", r if kind == "records" else None)
        assert blocks.valid and blocks.count == len(records)
        made[kind] = (list(blocks.entries()), blocks.stats.means())
        blocks.close()
    assert made["records"] == made["lines"]


def test_a_repeated_id_or_a_line_after_its_result_sends_the_page_to_the_files(tmp_path: Path) -> None:
    """The entries are the page only when results.jsonl has each id once and no episode wrote after its results line
    (the reader shows the first of two lines, and a late step under the finished episode): `matches` says no for
    either, also among thousands of entries (the ids' hashes are sorted in place at the end)."""
    from schola.store import dump_line, dumps

    def fed(run: Path, episodes: list[str], late: str | None = None) -> bool:
        run.mkdir()
        blocks = blocks_module.EpisodeBlocks()
        with (run / "transcript.jsonl").open("wb") as t, (run / "results.jsonl").open("wb") as r:

            def step(eid: str) -> None:
                line = {"episode": eid, "node": "ask", "round": 0, "reply": "x", "latency_s": 0.1}
                raw = (dump_line(line) + "\n").encode()
                t.write(raw)
                blocks.line(raw, line)

            for eid in episodes:
                step(eid)
                record = {"episode": eid, "inputs": {"id": eid}, "outputs": {}, "round": 0, "scores": {}}
                text = dumps(record) + "\n"
                r.write(text.encode())
                blocks.result(text, record)
            if late is not None:
                step(late)  # a step of an episode whose results line is written
        try:
            return blocks.matches(run)
        finally:
            blocks.close()

    ids = [f"e{i}" for i in range(5000)]
    assert fed(tmp_path / "clean", ids)
    assert not fed(tmp_path / "twice", [*ids, "e1234"])
    assert not fed(tmp_path / "late", ids, late="e4321")


def test_entries_that_fail_while_the_run_goes_leave_the_run_as_it_was(
    cli: Any, tmp_path: Path, scans: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report never changes how a run ends: an error while building the entries (a full disk, a bug) gives them up
    with a warning, the run finishes as it would have, and the page is read from the files."""

    def broken(self: Any, *args: Any) -> None:
        raise OSError(28, "No space left on device")

    path = scenario(tmp_path, 12)
    run_cli(cli, path, tmp_path / "ok")
    monkeypatch.setattr(blocks_module.EpisodeBlocks, "_saw", broken)  # (every line and result goes through it)
    run = tmp_path / "run"
    out = run_cli(cli, path, run)
    assert scans == [1]  # the page came from the files
    assert "report.html's entries given up" in out and "No space left" in out
    ended = [json.loads((r / "metrics.json").read_text())["episodes"] for r in (tmp_path / "ok", run)]
    assert ended[0] == ended[1] and ended[0]["failed"] == 1  # (q7 fails, as in every run here)
    same_as_the_files(run)


def test_ids_whose_hashes_share_their_low_half_are_not_a_repeat() -> None:
    """The end-of-run check sorts the hashes' low 32 bits (4 bytes an entry) and looks at the whole hashes of the low
    halves that come twice: a shared low half alone is no repeat, a shared whole hash is (across read chunks)."""
    from array import array

    def repeated(hashes: list[int]) -> bool:
        blocks = blocks_module.EpisodeBlocks()
        try:
            blocks._ids = array("q", hashes)
            blocks._flush()
            return blocks._repeated()
        finally:
            blocks.close()

    many = list(range(0, 3 * blocks_module.HASHES_READ * 7, 7))  # more than one chunk read
    assert not repeated(many)
    assert not repeated([*many, many[5] + (1 << 32), -(1 << 40) + many[9]])  # low halves shared, hashes not
    assert repeated([*many, many[-3]])
    assert repeated([many[0] + (1 << 32), *many, many[0] + (1 << 32)])
