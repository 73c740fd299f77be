from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from schola.scenarios.lbt import answer, select, select_stage
from schola.scenarios.lbt.data import NAMES, generate, load_math
from schola.scenarios.lbt.m2 import correctness_pairs, dpo_record, lbt_pairs
from schola.scenarios.lbt.m3 import (
    M3Params,
    case,
    examples,
    failures,
    initial_examples,
    keep_beam,
    load_task,
    split_task,
    student_names,
)

from schola.errors import ConfigError
from schola.scorers import to_number
from schola.store import RunStore


def wording(question: str) -> str:
    return re.sub(r"\d+|" + "|".join(NAMES), "#", question)


@pytest.mark.parametrize("generator", ["additions", "arithmetic_variants"])
def test_generator_is_seeded_and_exam_problems_are_functional_variants(generator: str) -> None:
    a, b = generate(4, 3, seed=0, generator=generator), generate(4, 3, seed=0, generator=generator)
    assert a == b and a != generate(4, 3, seed=1, generator=generator)
    for ep in a:
        assert len(ep["exams"]) == 3
        assert all(e["question"] != ep["question"] for e in ep["exams"])
        # same wording, other numbers
        assert all(wording(e["question"]) == wording(ep["question"]) for e in ep["exams"])
        assert all(to_number(x["answer"]) is not None and int(x["answer"]) >= 0 for x in [ep, *ep["exams"]])


def test_the_default_problems_are_one_step_additions() -> None:
    for ep in generate(8, 3, seed=0, generator="additions"):
        for item in [ep, *ep["exams"]]:
            numbers = [int(n) for n in re.findall(r"\d+", item["question"])]
            assert len(numbers) == 2 and int(item["answer"]) == sum(numbers)


@pytest.mark.parametrize(
    ("text", "strict", "expected"),
    [
        ("6 + 5 = 11. The answer is 11.", True, "11"),
        # stated twice: the last statement wins, and of a statement that says more, the number it starts with
        ("The answer is 6, because of the 5 more. So 6 + 5 = 11. The answer is 11", True, "11"),
        ("The answer is 6, because of the 5 more.", True, "6"),
        ("so 6 + 5 = 11 and she has 11 pens now", True, None),
        ("so 6 + 5 = 11 and she has 11 pens now", False, "11"),
        ("[[Final Answer]]: $7$", True, "7"),
        ("no number at all", False, None),
        ("The answer is not a direct answer to the question, sorry.", True, None),
        ("It is 3 + 4. The answer is not a direct answer to the question", False, "4"),
    ],
)
def test_answer_reads_the_stated_answer(text: str, strict: bool, expected: str | None) -> None:
    assert answer(text, strict) == expected


# Teacher rationales of the embedded SmolLM2-135M (lbt, run.episodes=4, seed 0), as it wrote them.
@pytest.mark.parametrize(
    ("text", "stated", "fallback"),
    [
        # an equation in the answer sentence: its result (the number after the last "="), not its first operand
        ("The answer is 3 + 4 = 7.", "7", "7"),
        ("Hana has 6 pens and 5 more pens, so 6 + 5 = 11. The answer is 11.", "11", "11"),
        (
            "This problem is a classic example of a math puzzle. If you have a total of 6 pens and you buy 5 more "
            "pens, your total increase is 6 - 5 = 1. The answer is 1.",
            "1",
            "1",
        ),
        # no equation: the number the answer sentence starts with
        ("To solve this problem, we need to consider that the answer is 6, and that the total change is 5.", "6", "6"),
        ("A box has 9 red balls and 8 blue balls, so the answer is 8 (3 blue balls + 4 red balls).", "8", "8"),
        ("This is a classic lateral thinking puzzle. The answer is 6 birds.", "6", "6"),
        # not in the expected form: no stated answer (the lenient reading takes the last number)
        ("When you add 6 pens to the 5 more that have been added, it's 6 + 5 = 11, and now you have 11.", None, "11"),
        ("1", None, "1"),
        (
            "Let's solve this problem step by step using logic. Initially, the box has 9 red balls and 8 blue balls. "
            "Each red ball has 3 balls, and blue balls have 2. Now, the box now contains 9 - 3 + 8 = 21 balls. "
            "The answer is",
            None,
            "21",
        ),
        ("No answer is provided.", None, None),
        (
            "You cannot determine the answer to the question by solving it in one sentence like this, because the "
            "answer is not a direct answer to the question.",
            None,
            None,
        ),
        ("[[Final Answer]]: $3 + 4 = 7$", "7", "7"),
    ],
)
def test_answer_of_real_model_output(text: str, stated: str | None, fallback: str | None) -> None:
    assert (answer(text, True), answer(text, False)) == (stated, fallback)


def test_answer_parse_rate_counts_only_rationales_that_state_their_answer(tmp_path: Path) -> None:
    rationales = ["so 6 + 5 = 11. The answer is 11.", "it's 6 + 5 = 11, and now you have 11.", "1", "No answer."]
    episode = {
        "episode": "tp0", "inputs": {"answer": "11"},
        "outputs": {"rationales": rationales, "answers": [answer(r, False) for r in rationales],
                    "lbt_scores": [1, 1, 0, 0], "exam_correct": [[1.0]]},
    }  # fmt: skip

    class Ctx:
        results, seed = [episode], 0
        store = RunStore(tmp_path)

    rows = {r.name: r for r in select_stage(Ctx())}
    assert (rows["answer_parse_rate"].value, rows["answer_parse_rate"].n) == (0.25, 4)  # the first alone


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


def test_a_math_record_without_its_id_names_the_file_record_and_field(tmp_path: Path) -> None:
    path = tmp_path / "math.jsonl"
    path.write_text(
        json.dumps({"problem": "1+1?", "answer": "2", "unique_id": "a"})
        + "\n"
        + json.dumps({"problem": "2+2?", "answer": "4"})
        + "\n"
    )
    with pytest.raises(ConfigError, match=r"math\.jsonl: record 2 has no field 'unique_id'") as e:
        load_math(str(path), link="#", source=None)
    assert e.value.key == "scenario.data.path"


def test_lbt_runs_on_math_records_through_the_cli(cli: Any, tmp_path: Path) -> None:
    rows = [
        {"question": "What is 2+3?", "answer": "5", "unique_id": "a"},
        {"question": "What is 4+1?", "answer": "5", "unique_id": "a#1"},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = cli("run", "backend=scripted", "scenario.data.path=m.jsonl", f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    selections = [json.loads(x) for x in (tmp_path / "r" / "selections.jsonl").read_text().splitlines()]
    assert selections[0]["episode"] == "a" and selections[0]["gold"] == "5"


def metrics(run: Path) -> dict[str, float | None]:
    rows = json.loads((run / "metrics.json").read_text())["metrics"]
    return {r["name"] + "".join(f"|{k}={v}" for k, v in sorted(r["labels"].items())): r["value"] for r in rows}


def test_m1_rules_differ_where_the_majority_is_wrong_and_students_learn_from_the_right_rationale(
    cli: Any, tmp_path: Path
) -> None:
    # Scripted: of K=3 rationales the first adds (right), two subtract (the same wrong answer); a student repeats
    # the operation it saw, so the right rationale scores 3 of 3 exams and the wrong ones 0.
    code, out = cli("run", "backend=scripted", "scenario.roles.teacher.samples=3", f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    m = metrics(tmp_path / "r")
    assert m["accuracy|rule=MAJ"] == 0.0
    assert m["accuracy|rule=MAX"] == m["accuracy|rule=SUM"] == m["accuracy|rule=AVG"] == 1.0
    assert m["exam_accuracy|role=students"] == pytest.approx(1 / 3)


# -- M2 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scores", "min_margin", "max_pairs", "expected"),
    [
        ([3, 0, 1], 1, None, [(0, 1), (0, 2), (2, 1)]),  # margins 3, 2, 1: widest first
        ([3, 0, 1], 2, None, [(0, 1), (0, 2)]),
        ([3, 0, 1], 1, 1, [(0, 1)]),
        ([2, 2, 2], 1, None, []),  # equal scores prefer nothing
        ([1, 2, 2], 1, None, [(1, 0), (2, 0)]),  # equal margins: by index
    ],
)
def test_lbt_pairs_prefer_the_higher_lbt_score(
    scores: list[float], min_margin: float, max_pairs: int | None, expected: list[tuple[int, int]]
) -> None:
    assert lbt_pairs(scores, min_margin=min_margin, max_pairs=max_pairs) == expected


def test_correctness_pairs_put_right_answers_over_wrong_or_missing_ones() -> None:
    assert correctness_pairs(["5", "7", None, "5.0"], "5") == [(0, 1), (0, 2), (3, 1), (3, 2)]
    assert correctness_pairs(["5", "5"], "5") == [] and correctness_pairs(["1", None], "5") == []
    assert dpo_record("Q", "good", "bad") == {
        "prompt": [{"role": "user", "content": "Q"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }


def test_m2_exports_dpo_pairs_that_load_in_datasets_with_trl_fields(cli: Any, tmp_path: Path) -> None:
    from datasets import load_dataset

    code, out = cli(
        "run",
        "backend=scripted",
        "scenario.variant=m2",
        "scenario.roles.teacher.samples=3",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert code == 0, out
    run = tmp_path / "r"
    m = metrics(run)
    # per TP the scores are [3, 0, 0] and only rationale 0 is right: 2 pairs of each kind, margin 3, 4 TPs
    assert m["pairs|kind=lbt"] == m["pairs|kind=correctness"] == 8
    assert m["margin|kind=lbt"] == m["margin|kind=correctness"] == 3.0
    assert m["chosen_correct|kind=lbt"] == 1.0
    listed = {e["name"]: e for e in json.loads((run / "metrics.json").read_text())["exports"]}
    assert listed["dpo_lbt"]["kind"] == "dpo" and listed["dpo_lbt"]["records"] == 8
    for name in ("dpo_lbt", "dpo_correctness"):
        ds = load_dataset("json", data_files=str(run / f"{name}.jsonl"), split="train")
        assert set(ds.column_names) == {"prompt", "chosen", "rejected"} and len(ds) == 8
        row = ds[0]
        assert row["prompt"][0]["role"] == "user" and row["prompt"][0]["content"].endswith("\nAnswer:")
        assert " + " in row["chosen"][0]["content"] and " - " in row["rejected"][0]["content"]


# -- M3 -----------------------------------------------------------------------------------------------
def write_task(path: Path, n: int = 24) -> Path:
    rows = [{"text": f"item {i} [{'yes' if i % 2 == 0 else 'no'}]", "label": ["yes", "false"][i % 2]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bundled_binary_tasks_are_balanced_yes_no_items() -> None:
    for task in ("fallacy", "claims"):
        question, items = load_task(task, None, source=None)
        assert question.endswith("?") and len(items) == 40
        assert sum(x["label"] == "Yes" for x in items) == 20 and {x["label"] for x in items} == {"Yes", "No"}


def test_task_records_are_checked_naming_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": "yes"}\n{"text": "b"}\n')
    with pytest.raises(ConfigError, match=r"t\.jsonl:2: record has no field 'label'"):
        load_task(None, str(path), source=None)
    path.write_text('{"text": "a", "label": "maybe"}\n')
    with pytest.raises(ConfigError, match=r"t\.jsonl:1: field 'label' is 'maybe'"):
        load_task(None, str(path), source=None)
    with pytest.raises(ConfigError, match="held \\+ test"):
        split_task(load_task(None, str(write_task(path, 10)), source=None)[1], 0, M3Params())


def test_splits_are_seeded_and_disjoint_and_initial_examples_are_balanced(tmp_path: Path) -> None:
    _, items = load_task(None, str(write_task(tmp_path / "t.jsonl")), source=None)
    assert items[1] == {"text": "item 1 [no]", "label": "No"}
    params = M3Params(held=6, test=8, examples=4)
    a, b = split_task(items, 0, params), split_task(items, 0, params)
    assert a == b and a != split_task(items, 1, params)
    assert [len(a[k]) for k in ("held", "test", "train")] == [6, 8, 10]
    texts = [x["text"] for k in a for x in a[k]]
    assert sorted(texts) == sorted(x["text"] for x in items)
    shown = initial_examples(a["train"], 4, seed=0)
    assert shown.count("Label: Yes") == 2 and shown.count("Label: No") == 2


def test_failure_cases_examples_parsing_and_the_beam() -> None:
    item = {"text": "t", "label": "Yes"}
    right = case(item, {"p": {"Yes": 0.7, "No": 0.3}})
    wrong = case({"text": "u", "label": "No"}, {"p": {"Yes": 0.6, "No": 0.4}})
    assert right["correct"] == 1.0 and wrong == {"text": "u", "label": "No", "prediction": "Yes", "correct": 0.0}
    assert case(item, None, "No, it is not.")["prediction"] == "No"  # no probabilities: the reply's label
    assert case(item, {"p": {"Yes": 0.5, "No": 0.5}})["prediction"] == "No"  # an even split is No
    assert failures([right, wrong, wrong], limit=1) == '## Failure Case 1\nText: "u"\nLabel: No\nPrediction: Yes'
    assert failures([right]) == ""
    assert examples("blah <START>Text: x\nLabel: Yes<END> more") == "Text: x\nLabel: Yes"
    assert examples("Text: y\nLabel: No") == "Text: y\nLabel: No" and examples("<START> <END>") is None
    scores = {"a": 0.5, "b": 0.8, "c": 0.5, "d": 0.2}
    assert keep_beam(["a", "b", "c", "d", "b"], scores, 2) == ["b", "a"]  # the tie keeps the incumbent a
    assert keep_beam(["c", "a"], scores, 2) == ["c", "a"]
    assert student_names({"students": [{"role": "student"}, {"role": "student", "name": "bob"}]}) == [
        "students.0",
        "bob",
    ]


def test_m3_keeps_the_rewritten_examples_and_beats_the_initial_ones(cli: Any, tmp_path: Path) -> None:
    # Scripted: with the initial examples the classifier always answers No; the teacher's rewrite ("GOOD")
    # makes it right on every item.
    task = write_task(tmp_path / "t.jsonl")
    code, out = cli(
        "run",
        "backend=scripted",
        "scenario.variant=m3",
        f"scenario.data.task_path={task}",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert code == 0, out
    splits = split_task(load_task(None, str(task), source=None)[1], 0, M3Params())
    share_no = {k: sum(x["label"] == "No" for x in splits[k]) / len(splits[k]) for k in ("held", "test")}
    m = metrics(tmp_path / "r")
    for arm in ("teacher", "one", "several"):
        assert m[f"held_accuracy|arm={arm}|round=0"] == pytest.approx(share_no["held"])
        assert m[f"held_accuracy|arm={arm}|round=2"] == 1.0
        assert m[f"test_accuracy|arm={arm}"] == 1.0
    assert m["test_accuracy|arm=initial"] == pytest.approx(share_no["test"])
    beams = json.loads((tmp_path / "r" / "m3_beams.json").read_text())
    assert "GOOD" in beams[-1]["beam"][0]["examples"]
