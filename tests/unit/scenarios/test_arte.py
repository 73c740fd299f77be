from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from schola.scenarios.arte import ArteData, best_worst, load, quarter_pairs, question
from schola.scenarios.arte.tasks import (
    GENERATORS,
    _bool_eval,
    generate,
    load_bbh,
    matches,
    multistep_arithmetic,
    object_counting,
)

from schola.errors import ConfigError


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("not True or True and False", False),  # not > and > or
        ("( True or False ) and not False", True),
        ("not not True", True),
        ("False or not ( False and True )", True),
    ],
)
def test_boolean_expressions_follow_pythons_precedence(expression: str, value: bool) -> None:
    assert _bool_eval(expression) is value


def test_generated_targets_are_right() -> None:
    rng = random.Random(0)
    for _ in range(50):
        item = multistep_arithmetic(rng)
        # evaluate the arithmetic by hand: ((a op b) op (c op d))
        assert int(item["target"]) == eval(item["input"].rstrip(" ="))
        count = object_counting(rng)
        said = count["input"].replace(",", " ").split()
        numbers = {"a": 1, "two": 2, "three": 3, "four": 4}
        assert int(count["target"]) == sum(numbers[w] for w in said if w in numbers)
    for task in GENERATORS:
        items = generate(task, 9, seed=0)
        assert items == generate(task, 9, seed=0) and len({i["input"] for i in items}) == 9
    words = generate("word_sorting", 1, seed=3)[0]
    assert words["target"].split() == sorted(words["input"].split(": ")[-1].split())


@pytest.mark.parametrize(
    ("reply", "target", "expected"),
    [
        ("3 + 4 = 7, 7 - 2 = 5. So the answer is 5.", "5", 1.0),
        ("So the answer is -12.", "-12", 1.0),
        ("So the answer is 12.", "-12", 0.0),
        ("not True is False, so the answer is False.", "False", 1.0),
        ("So the answer is True.", "False", 0.0),
        ("So the answer is apple maple stone.", "apple maple stone", 1.0),
        ("So the answer is maple apple stone.", "apple maple stone", 0.0),
        ("The answer is (B).", "(B)", 1.0),
        ("I count 4 objects", "4", 1.0),  # no phrase: the last line's numbers
    ],
)
def test_answers_match_their_target(reply: str, target: str, expected: float) -> None:
    assert matches(reply, target) == expected


def test_bbh_json_loads_and_bad_files_name_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "navigate.json"
    path.write_text(json.dumps({"examples": [{"input": "Turn left.", "target": "No"}]}))
    assert load_bbh(str(path), source=None) == ("navigate", [{"input": "Turn left.", "target": "No"}])
    path.write_text(json.dumps({"examples": [{"input": "x"}]}))
    with pytest.raises(ConfigError, match=r"navigate\.json: examples\[0\] has no field 'target'"):
        load_bbh(str(path), source=None)
    path.write_text(json.dumps([{"input": "x", "target": "y"}]))
    with pytest.raises(ConfigError, match="BBH's format"):
        load_bbh(str(path), source=None)


def test_episodes_are_drafted_question_slots_with_disjoint_splits() -> None:
    episodes = load(ArteData(tasks=["word_sorting", "object_counting"], questions=2), seed=0)
    assert [e["id"] for e in episodes] == [
        "word_sorting/q0",
        "word_sorting/q1",
        "object_counting/q0",
        "object_counting/q1",
    ]
    e = episodes[0]
    assert [len(e[k]) for k in ("seeds", "preference", "test")] == [3, 3, 3]
    assert len({x["input"] for k in ("seeds", "preference", "test") for x in e[k]}) == 9
    with pytest.raises(ConfigError, match="unknown task 'navigate'"):
        load(ArteData(tasks=["navigate"]), seed=0)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0.9, 0.1, 0.5, 0.3], [(0, 1)]),  # 4 questions: the top quarter is 1 question, the bottom 1
        ([0.2, 0.8, 0.5, 0.4, 0.9, 0.1, 0.7, 0.3], [(4, 0), (4, 5), (1, 0), (1, 5)]),  # 8: two over two
        ([0.5, 0.5], []),  # equal: no preference
        ([0.4, 0.6], [(1, 0)]),
    ],
)
def test_question_pairs_put_the_top_quarter_over_the_bottom_quarter(
    scores: list[float], expected: list[tuple[int, int]]
) -> None:
    assert quarter_pairs(scores) == expected


def test_rationale_pairs_and_drafted_questions() -> None:
    assert best_worst([0.3, 1.0, 0.0, 1.0]) == (1, 2) and best_worst([0.5, 0.5]) is None
    assert question("Question: What is 2 + 2?\nAnswer: 4") == "What is 2 + 2?"
    assert question("\n  sort these words\n") == "sort these words" and question("") is None


def metrics(run: Path) -> dict[str, float | None]:
    rows = json.loads((run / "metrics.json").read_text())["metrics"]
    return {r["name"] + "".join(f"|{k}={v}" for k, v in sorted(r["labels"].items())): r["value"] for r in rows}


def test_arte_preferences_pairs_and_the_regenerated_set_through_the_cli(cli: Any, tmp_path: Path) -> None:
    # Scripted (conf/scenario/arte.yaml): question 0's rationales are both GOOD, question 1's are BAD then GOOD;
    # a student answers right only after a GOOD example; the aligned teacher writes GOOD.
    from datasets import load_dataset

    examples = [{"input": f"item {i} [target={i}]", "target": str(i)} for i in range(1, 13)]
    (tmp_path / "toy.json").write_text(json.dumps({"examples": examples}))
    code, out = cli(
        "run",
        "scenario=arte",
        "backend=scripted",
        f"scenario.data.paths=[{tmp_path / 'toy.json'}]",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert code == 0, out
    run = tmp_path / "r"
    m = metrics(run)
    assert m["question_score|round=0"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["pairs|level=questions"] == 1 and m["margin|level=questions"] == pytest.approx(0.5)
    assert m["pairs|level=rationales"] == 1 and m["margin|level=rationales"] == pytest.approx(1.0)
    # drafted = each question's first rationale: GOOD for question 0, BAD for question 1
    assert m["test_accuracy|examples=drafted|round=1"] == pytest.approx(0.5)
    assert m["test_accuracy|examples=regenerated|round=1"] == 1.0
    assert m["test_accuracy.difference|examples=regenerated - drafted"] == pytest.approx(0.5)
    questions = load_dataset("json", data_files=str(run / "dpo_questions.jsonl"), split="train")
    assert set(questions.column_names) == {"prompt", "chosen", "rejected"}
    assert questions[0]["chosen"][0]["content"] == "question number 0"
    assert questions[0]["rejected"][0]["content"] == "question number 1"
    rationales = load_dataset("json", data_files=str(run / "dpo_rationales.jsonl"), split="train")
    assert rationales[0]["chosen"][0]["content"].startswith("GOOD") and rationales[0]["rejected"][0][
        "content"
    ].startswith("BAD")
    sft = load_dataset("json", data_files=str(run / "sft_student.jsonl"), split="train")
    assert sft.column_names == ["messages"] and len(sft) == 2
    assert [m["role"] for m in sft[0]["messages"]] == ["user", "assistant"]
    assert sft[0]["messages"][1]["content"].startswith("GOOD aligned")
