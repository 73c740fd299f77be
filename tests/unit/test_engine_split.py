"""The episode engine apart from the run driver: it writes to the sink and ledger it is given, a reply is filed
under the step that asked for it, and one list of what a step reads serves the check and the interpreter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

import schola
from schola import plugins
from tests.conftest import read_jsonl

ECHO = ["backend=scripted"]


def write(tmp_path: Path, scenario: dict[str, Any]) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def qa(n: int = 2) -> dict[str, Any]:
    return {
        "name": "qa",
        "data": {"records": [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(n)]},
        "roles": {"student": {"role": "student"}},
        "graph": [{"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"}],
    }


async def ask_twice(ctx: Any, *, item: str) -> float:
    """A scorer that asks a role, lets the other map item run, and asks again."""
    await ctx.act("student", f"first about {item}")
    await asyncio.sleep(0.01 if item == "a" else 0)
    await ctx.act("student", f"second about {item}")
    return 1.0


def test_a_scorer_awaiting_between_two_calls_in_a_map_files_both_under_its_own_step(tmp_path: Path) -> None:
    spec = qa(1)
    spec["graph"] = [{"id": "m", "kind": "map", "over": {"item": "['a', 'b']"}, "collect": {"gs": "g"}, "steps": [
        {"id": "grade", "kind": "score", "scorer": "ask_twice", "inputs": {"item": "item"}, "output": "g"}]}]  # fmt: skip
    with plugins.scorers.registered("ask_twice", ask_twice):
        result = schola.run(write(tmp_path, spec), ECHO, run_dir=tmp_path / "r")
    assert result.ok, result.message
    filed = sorted((t["node"], t["prompt"]) for t in read_jsonl(tmp_path / "r" / "transcript.jsonl"))
    assert filed == [
        ("m[0].grade", "first about a"), ("m[0].grade", "second about a"),
        ("m[1].grade", "first about b"), ("m[1].grade", "second about b"),
    ]  # fmt: skip


def test_check_finds_a_label_template_reading_a_field_one_record_lacks(tmp_path: Path, cli: Any) -> None:
    spec = qa(3)
    spec["data"]["records"][0]["group"] = "a"
    spec["data"]["records"][2]["group"] = "b"  # record 1 has none
    spec["graph"].append({"id": "ok", "kind": "score", "scorer": "numeric_match", "output": "correct",
                          "inputs": {"prediction": "reply", "target": "answer"}, "labels": {"group": "{{ group }}"}})  # fmt: skip
    code, out = cli("check", str(write(tmp_path, spec)), *ECHO)
    assert code == 2 and "record 1 (episode 'q1') has no field 'group'" in out, out


def test_the_engine_writes_to_the_sink_and_ledger_it_is_given(tmp_path: Path) -> None:
    from schola.compose import Composition, compose
    from schola.engine import EpisodeEngine
    from schola.plan import build_plan
    from schola.schema import Files
    from schola.types import Ledger

    class Lines:
        def __init__(self) -> None:
            self.lines: list[dict[str, Any]] = []

        def transcript(self, line: dict[str, Any]) -> None:
            self.lines.append(line)

    composition = Composition([*ECHO, "cache.enabled=false"], [], str(write(tmp_path, qa(2))))
    raw, choices, _ = compose(composition)
    plan = build_plan(raw, Files.from_choices(choices, composition.file))
    sink, ledger = Lines(), Ledger()
    engine = EpisodeEngine(plan, sink=sink, ledger=ledger)

    async def both() -> list[dict[str, Any]]:
        try:
            return [await engine.run_episode(e) for e in plan.episodes]
        finally:
            await engine.close()

    records = asyncio.run(both())
    assert [r["episode"] for r in records] == ["q0", "q1"] and records[1]["outputs"]["reply"] == "What is 1 + 1?"
    assert [(t["episode"], t["node"]) for t in sink.lines] == [("q0", "ask"), ("q1", "ask")]
    assert ledger.total().requests == 2
    assert not (tmp_path / "r").exists()  # no run directory: nothing but the sink was written
