from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from schola.errors import ConfigError
from schola.scenarios.lbt import select
from schola.scenarios.lbt.data import NAMES, generate, load_math
from schola.scorers import to_number


def wording(question: str) -> str:
    return re.sub(r"\d+|" + "|".join(NAMES), "#", question)


def test_generator_is_seeded_and_exam_problems_are_functional_variants() -> None:
    a, b, c = generate(4, 3, seed=0), generate(4, 3, seed=0), generate(4, 3, seed=1)
    assert a == b and a != c
    for ep in a:
        assert len(ep["exams"]) == 3
        assert all(e["question"] != ep["question"] for e in ep["exams"])
        # same wording, other numbers
        assert all(wording(e["question"]) == wording(ep["question"]) for e in ep["exams"])
        assert all(to_number(x["answer"]) is not None and int(x["answer"]) >= 0 for x in [ep, *ep["exams"]])


@pytest.mark.parametrize(
    ("answers", "scores", "expected"),
    [
        # MAJ counts, MAX takes the single best rationale, SUM adds, AVG divides by the group size
        (["5", "5", "7"], [1, 1, 3], {"MAJ": "5", "MAX": "7", "SUM": "7", "AVG": "7"}),
        (["5", "5", "5", "7"], [1, 1, 1, 2], {"MAJ": "5", "MAX": "7", "SUM": "5", "AVG": "7"}),
        (["5", "5", "7", "7", "7"], [3, 3, 2, 2, 1], {"MAJ": "7", "MAX": "5", "SUM": "5", "AVG": "5"}),
        # ties go to the larger group
        (["5", "7", "7"], [2, 1, 1], {"MAJ": "7", "MAX": "5", "SUM": "7", "AVG": "5"}),
        (["5", "7", "7"], [2, 2, 0], {"MAJ": "7", "MAX": "7", "SUM": "7", "AVG": "5"}),
        # unparsed rationales are not a group; equal numbers in other forms are one group
        ([None, None, "3"], [9, 9, 0], {"MAJ": "3", "MAX": "3", "SUM": "3", "AVG": "3"}),
        (["0.5", "1/2", "2"], [1, 1, 1], {"MAJ": "0.5", "MAX": "0.5", "SUM": "0.5", "AVG": "0.5"}),
        ([None, None], [0, 0], {"MAJ": None, "MAX": None, "SUM": None, "AVG": None}),
    ],
)
def test_selection_rules(answers: list[str | None], scores: list[float], expected: dict[str, str | None]) -> None:
    assert {rule: select(answers, scores, rule) for rule in expected} == expected


def test_math_records_link_exam_problems_to_their_teaching_problem(tmp_path: Path) -> None:
    rows = [
        {"problem": "What is 2+3?", "solution": "2+3 = \\boxed{5}", "unique_id": "algebra/1.json"},
        {"problem": "What is 4+1?", "answer": "5", "unique_id": "algebra/1.json#1"},
        {"problem": "What is 6+2?", "answer": "8", "unique_id": "algebra/1.json#2"},
        {"question": "Half of 3?", "answer": "\\frac{3}{2}", "unique_id": "algebra/2.json"},
        {"question": "Half of 5?", "answer": "5/2", "unique_id": "algebra/2.json#1"},
    ]
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    eps = load_math(str(path), link="#", source=None)
    assert [e["id"] for e in eps] == ["algebra/1.json", "algebra/2.json"]
    assert eps[0]["answer"] == "5" and [x["answer"] for x in eps[0]["exams"]] == ["5", "8"]
    assert len(eps[1]["exams"]) == 1
    path.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ConfigError, match="has no exam problems"):
        load_math(str(path), link="#", source=None)


def test_lbt_runs_on_math_records_through_the_cli(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [
        {"question": "What is 2+3?", "answer": "5", "unique_id": "a"},
        {"question": "What is 4+1?", "answer": "5", "unique_id": "a#1"},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = cli("run", "backend=scripted", "scenario.data.path=m.jsonl", f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    selections = [json.loads(x) for x in (tmp_path / "r" / "selections.jsonl").read_text().splitlines()]
    assert selections[0]["episode"] == "a" and selections[0]["gold"] == "5"
