from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from schola.scenarios.comd import ComdData, instruction, load, round_records, verdict

from schola.errors import ConfigError


def p(a: float) -> dict[str, Any]:
    return {"p": {"A": a, "B": round(1 - a, 10)}}


@pytest.mark.parametrize(
    ("texts", "probs", "mode", "margin", "expected"),
    [
        (["A: 8 B: 3"], None, "score", 2.0, {"teacher": 8.0, "student": 3.0, "win": 0.0, "flagged": True}),
        (["A: 8 B: 7"], None, "score", 2.0, {"teacher": 8.0, "student": 7.0, "win": 0.0, "flagged": False}),
        (["a=6, b=6"], None, "score", 0.0, {"teacher": 6.0, "student": 6.0, "win": 0.5, "flagged": False}),
        (["A: 4 B: 9"], None, "score", 2.0, {"teacher": 4.0, "student": 9.0, "win": 1.0, "flagged": False}),
        (["both fine"], None, "score", 2.0, {"teacher": None, "student": None, "win": None, "flagged": False}),
        # swapped: the second judgement shows the student as A; teacher (8 + 6) / 2 = 7, student (3 + 5) / 2 = 4
        (["A: 8 B: 3", "A: 5 B: 6"], None, "score", 2.0, {"teacher": 7.0, "student": 4.0, "win": 0.0, "flagged": True}),
        (["A: 8 B: 3", "no idea"], None, "score", 2.0, {"teacher": 8.0, "student": 3.0, "win": 0.0, "flagged": True}),
        (["A"], [p(0.8)], "pairwise", 0.5, {"teacher": 0.8, "student": 0.2, "win": 0.0, "flagged": True}),
        (["A"], [p(0.6)], "pairwise", 0.5, {"teacher": 0.6, "student": 0.4, "win": 0.0, "flagged": False}),
        (["B"], [p(0.3)], "pairwise", 0.0, {"teacher": 0.3, "student": 0.7, "win": 1.0, "flagged": False}),
        # position bias: A preferred 0.9 in both orders -> teacher (0.9 + 0.1) / 2 = 0.5 = student: a tie
        (
            ["A", "A"],
            [p(0.9), p(0.9)],
            "pairwise",
            0.05,
            {"teacher": 0.5, "student": 0.5, "win": 0.5, "flagged": False},
        ),
        # teacher (0.9 + 0.7) / 2 = 0.8, student 0.2: flagged
        (["A", "B"], [p(0.9), p(0.3)], "pairwise", 0.5, {"teacher": 0.8, "student": 0.2, "win": 0.0, "flagged": True}),
    ],
)
def test_the_assessor_verdict_flags_only_a_clearly_worse_student(
    texts: list[str], probs: Any, mode: str, margin: float, expected: dict[str, Any]
) -> None:
    got = verdict(texts, probs, mode=mode, margin=margin)
    assert {k: got[k] for k in expected} == pytest.approx(expected)


def test_a_position_driven_split_is_a_tie_not_the_sign_of_noise() -> None:
    """The embedded assessor picks A about 90% of the time either way: 0.91 with the teacher shown as A, 0.89 with
    the student as A. The averages differ by 0.02 of noise; the two judgements disagree, so it is a tie."""
    got = verdict(["A", "A"], [p(0.91), p(0.89)], mode="pairwise", margin=0.02)
    assert (got["win"], got["flagged"], got["prefers_a"]) == (0.5, False, [True, True])
    # the order each judgement showed is given (the student first here) and kept
    swapped = verdict(["B", "A"], [p(0.2), p(0.9)], orders=[1, 0], mode="pairwise", margin=0.5)
    assert (swapped["win"], swapped["flagged"], swapped["orders"]) == (0.0, True, [1, 0])
    assert swapped["prefers_a"] == [False, True]  # the teacher both times, once shown as B, once as A


def test_each_comparison_draws_its_order_by_seed_and_the_round_reports_position_bias() -> None:
    pool = load(ComdData(instructions=None), seed=0)
    firsts = [item["first"] for item in pool]
    assert set(firsts) == {0, 1} and firsts == [item["first"] for item in load(ComdData(instructions=None), seed=0)]
    assert firsts != [item["first"] for item in load(ComdData(instructions=None), seed=1)]
    records = [
        {"inputs": {"key": k, "instruction": k}, "outputs": {"verdict": {"win": 0.5, "flagged": False, "prefers_a": a}}}
        for k, a in [("a", [True, True]), ("b", [True, False]), ("c", [True, None])]
    ]
    rows = {r.name: r for r in round_records(records, 0)[1]}
    assert (rows["position_bias"].value, rows["position_bias"].n) == (pytest.approx(0.8), 5)


def test_new_instructions_lose_their_label_and_trailing_chatter() -> None:
    assert instruction("Harder instruction: Explain tides in detail.\n\nThis is harder because...") == (
        "Explain tides in detail."
    )
    assert instruction("Why is the sky blue at noon?") == "Why is the sky blue at noon?" and instruction("  ") is None


def test_a_round_exports_flagged_and_augmented_answers_and_counts_wins() -> None:
    def episode(key: str, win: float | None, flagged: bool, harder: str | None = None) -> dict[str, Any]:
        return {
            "inputs": {"key": key, "instruction": f"do {key}"},
            "outputs": {
                "verdict": {"win": win, "flagged": flagged},
                "teacher_answer": f"T {key}",
                "harder": harder,
                "harder_answer": f"T {harder}" if harder else None,
            },
        }

    records = [
        episode("a", 0.0, True, "do a harder"),
        episode("b", 0.5, False),
        episode("c", 1.0, False),
        episode("d", None, False),
        episode("e", 0.0, True),
    ]
    sft, rows, new = round_records(records, 0)
    values = {r.name: r.value for r in rows}
    assert values == {
        "win_rate": pytest.approx(1.5 / 4), "flagged": 2.0, "pool": 5.0, "sft_records": 3.0, "position_bias": None
    }  # fmt: skip
    assert sft[0]["messages"] == [{"role": "user", "content": "do a"}, {"role": "assistant", "content": "T a"}]
    assert sft[1]["messages"][0]["content"] == "do a harder"
    assert new == [{"id": "a+1", "key": "a+1", "instruction": "do a harder", "reference": None, "origin": "augmented"}]


def test_instructions_load_alpaca_records_and_name_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text(json.dumps({"instruction": "Translate", "input": "hola", "output": "hello"}) + "\n")
    assert load(ComdData(path=str(path)), seed=0)[0]["instruction"] == "Translate\n\nhola"
    path.write_text(json.dumps({"instruction": "ok"}) + "\n" + json.dumps({"prompt": "no"}) + "\n")
    with pytest.raises(ConfigError, match=r"pool\.jsonl: record 2 has no field 'instruction'"):
        load(ComdData(path=str(path)), seed=0)
    assert len(load(ComdData(), seed=0)) == 6 and len(load(ComdData(instructions=None), seed=0)) == 8


def metrics(run: Path) -> dict[str, float | None]:
    rows = json.loads((run / "metrics.json").read_text())["metrics"]
    return {r["name"] + "".join(f"|{k}={v}" for k, v in sorted(r["labels"].items())): r["value"] for r in rows}


@pytest.mark.parametrize(("mode", "swap"), [("score", "false"), ("score", "true"), ("pairwise", "true")])
def test_rounds_grow_the_pool_and_export_each_rounds_sft_set(cli: Any, tmp_path: Path, mode: str, swap: str) -> None:
    # Scripted (conf/scenario/comd.yaml): the student cannot answer [hard] instructions; the augmentor's variants
    # are [hard]. Round 0: 4 instructions, 2 hard -> 2 flagged, 2 new. Round 1: 6, of which 4 hard.
    from datasets import load_dataset

    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(
            json.dumps({"instruction": t}) + "\n"
            for t in ["Explain rain.", "Explain tides. [hard]", "Name a planet.", "Explain gravity. [hard]"]
        )
    )
    code, out = cli(
        "run",
        "scenario=comd",
        "backend=scripted",
        f"scenario.data.path={pool}",
        f"scenario.params.assessor.mode={mode}",
        f"scenario.params.assessor.swap={swap}",
        "scenario.params.assessor.margin=0.5",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert code == 0, out
    m = metrics(tmp_path / "r")
    assert (m["pool|round=0"], m["flagged|round=0"], m["win_rate|round=0"]) == (4, 2, pytest.approx(0.25))
    assert (m["pool|round=1"], m["flagged|round=1"], m["win_rate|round=1"]) == (6, 4, pytest.approx(1 / 6))
    # every comparison records the order it showed (its seeded first order, then the swap); the scripted assessor
    # judges by content, so it prefers A exactly when the teacher was shown as A
    results = [json.loads(line) for line in (tmp_path / "r" / "results.jsonl").read_text().splitlines()]
    for r in results:
        v, first = r["outputs"]["verdict"], r["inputs"]["first"]
        assert v["orders"] == ([first, 1 - first] if swap == "true" else [first])
    hard = [r["outputs"]["verdict"] for r in results if "[hard]" in r["inputs"]["instruction"]]
    assert all(v["prefers_a"] == [o == 0 for o in v["orders"]] for v in hard)
    assert m["position_bias|round=0"] is not None
    for rnd, n in ((0, 4), (1, 8)):
        ds = load_dataset("json", data_files=str(tmp_path / "r" / f"sft_round{rnd}.jsonl"), split="train")
        assert ds.column_names == ["messages"] and len(ds) == n
        assert ds[0]["messages"][1]["content"].startswith("TEACHER answer to:")
