from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from schola.scenarios.tom_teaching import TomParams, explanation, hint
from schola.scenarios.tom_teaching.data import TomData, generate_arithmetic, load, read_deceiving, read_items
from schola.scenarios.tom_teaching.demos import balanced, personalized
from schola.scenarios.tom_teaching.interventions import (
    FUNCTIONS,
    Observation,
    accuracy_curve,
    budget_count,
    intervened,
    rank,
)
from schola.scenarios.tom_teaching.stage import teach

from schola.errors import ConfigError
from schola.store import RunStore


def yes(p: float) -> dict[str, float]:
    return {"yes": p, "no": round(1 - p, 10)}


def obs(i: int, gold: str, pre: float, post: float, teacher: float, mm_pre: float, mm_post: float) -> Observation:
    """An item whose probabilities are P(yes) for the student (pre, post), the teacher and the mental model."""
    return Observation(str(i), gold, ("yes", "no"), yes(pre), yes(post), yes(teacher), yes(mm_pre), yes(mm_post))


# P(gold):       student pre  post | teacher | mm_pre  mm_post  U
ITEMS = [
    obs(0, "yes", 0.9, 0.95, 0.8, 0.7, 0.9),  # right -> right;  T .8; P_pre .7, P_post .9, U .2
    obs(1, "yes", 0.3, 0.8, 0.6, 0.2, 0.9),  # wrong -> right;  T .6; .2, .9, U .7
    obs(2, "no", 0.45, 0.2, 0.1, 0.6, 0.5),  # right -> right;  T .9; .4, .5, U .1
    obs(3, "no", 0.8, 0.7, 0.3, 0.9, 0.4),  # wrong -> wrong;  T .7; .1, .6, U .5
    obs(4, "yes", 0.6, 0.1, 0.5, 0.5, 0.3),  # right -> wrong;  T .5; .5, .3, U -.2
]


@pytest.mark.parametrize(
    ("function", "order"),
    [
        ("teacher_conf", [2, 0, 3, 1, 4]),  # teacher's P(gold), highest first
        ("student_conf", [2, 4, 1, 3, 0]),  # student's confidence .9 .7 .55 .8 .6, lowest first
        ("oracle", [1, 3, 0, 2, 4]),  # the wrong answers first
        ("mm_pre", [3, 1, 2, 4, 0]),  # P_pre(gold) .7 .2 .4 .1 .5, lowest first
        ("mm_post", [0, 1, 3, 2, 4]),  # P_post(gold) .9 .9 .5 .6 .3, highest first; the tie keeps test order
        ("eu", [1, 3, 0, 2, 4]),  # U .2 .7 .1 .5 -.2, highest first
        ("eu_ascending", [4, 2, 0, 3, 1]),  # the misaligned teacher
    ],
)
def test_each_intervention_function_ranks_the_hand_made_set(function: Any, order: list[int]) -> None:
    assert rank(ITEMS, function) == order


def test_random_ranking_is_a_seeded_permutation() -> None:
    orders = {tuple(rank(ITEMS, "random", seed=s)) for s in range(6)}
    assert all(sorted(o) == [0, 1, 2, 3, 4] for o in orders)
    assert rank(ITEMS, "random", seed=3) == rank(ITEMS, "random", seed=3)
    assert len(orders) > 1


@pytest.mark.parametrize(
    ("function", "curve"),
    [
        # pre correct: T F T F T (0.6); post correct: T T T F F
        ("eu", [0.6, 0.8, 0.8, 0.8, 0.8, 0.6]),
        ("eu_ascending", [0.6, 0.4, 0.4, 0.4, 0.4, 0.6]),
        ("oracle", [0.6, 0.8, 0.8, 0.8, 0.8, 0.8]),  # never explains a right answer
        ("teacher_conf", [0.6, 0.6, 0.6, 0.6, 0.8, 0.6]),
        ("student_conf", [0.6, 0.6, 0.4, 0.6, 0.6, 0.6]),
        ("mm_pre", [0.6, 0.6, 0.8, 0.8, 0.6, 0.6]),
        ("mm_post", [0.6, 0.6, 0.8, 0.8, 0.8, 0.6]),
    ],
)
def test_accuracy_vs_budget_by_hand(function: Any, curve: list[float]) -> None:
    got = accuracy_curve(ITEMS, function)
    assert list(got) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert list(got.values()) == pytest.approx(curve)


def test_budget_pays_for_int_of_b_times_n() -> None:
    assert [budget_count(b, 10) for b in (0, 0.2, 0.4, 0.6, 0.8, 1.0)] == [0, 2, 4, 6, 8, 10]
    assert budget_count(0.29, 100) == 29 and budget_count(0.2, 7) == 1 and budget_count(0.5, 3) == 1
    assert intervened(ITEMS, "eu", 0.4) == [1, 3] and intervened(ITEMS, "oracle", 1.0) == [1, 3]
    with pytest.raises(ValueError, match="unknown intervention function"):
        rank(ITEMS, "nope")  # type: ignore[arg-type]


def test_every_function_is_ranked_and_budget_zero_and_one_are_pre_and_post() -> None:
    for function in FUNCTIONS:
        curve = accuracy_curve(ITEMS, function, [0.0, 1.0])
        assert curve[0.0] == pytest.approx(0.6)
        assert curve[1.0] == pytest.approx(0.8 if function == "oracle" else 0.6)


# -- explanation parsing --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A: Bees collect nectar. So the answer is yes.\nQ: next", "Bees collect nectar."),
        ("\nIt is cold there. The answer is no", "It is cold there."),
        ("Choice B fits best. So the correct choice is B", "Choice B fits best."),
        ("It has 3 * 4 = 12. Then 12 - 5 = 7 left", "It has 3 * 4 = 12."),
        ("no full stop here", "no full stop here"),
        ("A: No, the answer is no.", "No"),
        (None, ""),
    ],
)
def test_explanation_is_the_first_line_before_the_conclusion(text: str | None, expected: str) -> None:
    assert explanation(text) == expected


def test_hint_is_the_first_sentence_for_arithmetic_only() -> None:
    text = "He has 3 * 4 = 12 pencils. After giving away 5, 12 - 5 = 7."
    assert hint(text, "arithmetic") == "He has 3 * 4 = 12 pencils."
    assert hint(text, "yesno") == text


# -- demonstrations -------------------------------------------------------------------------------------------
def seen(q: str, answer: str, pre: str, post: str) -> dict[str, str]:
    return {"query": q, "answer": answer, "explanation": f"why {q}", "pre": pre, "post": post}


def test_personalized_demos_are_items_an_explanation_fixed_then_the_students_own() -> None:
    observed = [
        seen("a", "yes", "yes", "yes"),  # right anyway: not useful
        seen("b", "yes", "no", "yes"),  # fixed: useful
        seen("c", "no", "yes", "yes"),  # still wrong
        seen("d", "no", "yes", "no"),  # fixed
    ]
    fallback = [
        {"query": "s1", "answer": "no", "explanation": "e1"},
        {"query": "s2", "answer": "yes", "explanation": "e2"},
    ]
    got = personalized(observed, fallback, k=3)
    assert [d["query"] for d in got] == ["b", "d", "s1"]
    assert personalized(observed, fallback, k=1) == [{"query": "b", "answer": "yes", "explanation": "why b"}]


def test_mental_model_demos_are_balanced_for_two_options() -> None:
    rows = [{"q": i, "prediction": p} for i, p in enumerate(["yes", "yes", "yes", None, "no", "yes", "no", "no"])]
    assert [r["q"] for r in balanced(rows, k=4, options=["yes", "no"])] == [0, 1, 4, 6]
    assert [r["q"] for r in balanced(rows, k=4, options=list("ABCDE"))] == [0, 1, 2, 4]


# -- data: the authors' formats -------------------------------------------------------------------------------
STRATEGYQA = [
    {"qid": "e0044a7b4d146d611e73", "term": "Albany, Georgia", "description": "City in Georgia, United States",
     "question": "Will the Albany in Georgia reach a hundred thousand occupants before the one in New York?",
     "answer": False, "facts": ["Albany, GA has around 75,000 people", "Albany, NY has almost 100,000 people"],
     "decomposition": ["What is the population of Albany, Georgia?"], "evidence": [[[["Albany, Georgia-1"]]]]},
    {"qid": "2", "question": "Is water wet?", "answer": True, "facts": ["Water is a liquid."]},
]  # fmt: skip
GSM8K = [
    {"question": "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
     "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
     "How much in dollars does she make every day at the farmers' market?",
     "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day "
     "at the farmer’s market.\n#### 18"},
    {"question": "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?",
     "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is 2+1=<<2+1=3>>3 bolts of "
     "fabric\n#### 3"},
]  # fmt: skip
CSQA = [
    {"answerKey": "A", "id": "075e483d21c29a511267ef62bedc0461",
     "question": {"question_concept": "punishing", "stem": "The sanctions against the school were a punishing blow, "
                  "and they seemed to what the efforts the school had made to change?",
                  "choices": [{"label": "A", "text": "ignore"}, {"label": "B", "text": "enforce"},
                              {"label": "C", "text": "authoritarian"}, {"label": "D", "text": "yell at"},
                              {"label": "E", "text": "avoid"}]}},
]  # fmt: skip


def write(path: Path, rows: list[Any], *, json_list: bool = False) -> Path:
    path.write_text(json.dumps(rows, indent=4) if json_list else "".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_strategyqa_records_give_yes_no_items_with_facts_as_explanation(tmp_path: Path) -> None:
    items = read_items(write(tmp_path / "dev.json", STRATEGYQA, json_list=True), "yesno")
    assert [i["answer"] for i in items] == ["no", "yes"] and items[0]["options"] == ["yes", "no"]
    assert items[0]["explanation"] == "Albany, GA has around 75,000 people Albany, NY has almost 100,000 people"
    assert items[0]["query"].startswith("Q: Will the Albany")


def test_gsm8k_records_give_the_number_after_hashes_and_a_clean_worked_solution(tmp_path: Path) -> None:
    items = read_items(write(tmp_path / "test.jsonl", GSM8K), "arithmetic")
    assert [i["answer"] for i in items] == ["18", "3"]
    assert items[0]["explanation"] == (
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day. She makes 9 * 2 = $18 every day at the farmer’s market."
    )
    assert "18" in items[0]["options"] and "9" in items[0]["options"] and len(set(items[0]["options"])) == 4
    assert items[1]["explanation"].endswith("3 bolts of fabric.")


def test_commonsenseqa_records_give_labelled_choices(tmp_path: Path) -> None:
    (item,) = read_items(write(tmp_path / "dev.jsonl", CSQA), "multiple_choice")
    assert item["options"] == ["A", "B", "C", "D", "E"] and item["answer"] == "A"
    assert "Choice A: ignore\nChoice B: enforce" in item["query"] and item["conclusion"] == "So the correct choice is"


def test_the_authors_deceiving_explanations_are_read(tmp_path: Path) -> None:
    rows = [{"answer": "yes", "gold_explanation": "Athena was the Greek goddess of war.",
             "harmful_explanation": ["Athena was the Greek goddess of horses.", "Athena was a Norse goddess."],
             "wrong_answer": "no", "index": 1560, "qid": "e8be", "question": "Is Freya a combination of Athena and Aphrodite?"}]  # fmt: skip
    (d,) = read_deceiving(write(tmp_path / "harmful_explanations.json", rows, json_list=True), "yesno")
    assert d["deceiving_explanation"] == "Athena was the Greek goddess of horses." and d["wrong_answer"] == "no"


@pytest.mark.parametrize(
    ("task", "rows", "json_list", "where"),
    [
        ("yesno", [STRATEGYQA[1], {"question": "Q?", "answer": True}], True, ":10: record has no field 'facts'"),
        ("yesno", [{**STRATEGYQA[1], "answer": "yes"}], False, ":1: field 'answer' is str, expected true or false"),
        ("arithmetic", [GSM8K[0], {"question": "x", "answer": "42"}], False, ":2: field 'answer' has no final"),
        ("arithmetic", [{"question": 3, "answer": "#### 3"}], False, ":1: field 'question' is int"),
        ("multiple_choice", [{**CSQA[0], "answerKey": "F"}], False, ":1: field 'answerKey' is 'F'"),
        (
            "multiple_choice",
            [{"answerKey": "A", "question": {"stem": "s"}}],
            False,
            ":1: record has no field 'choices'",
        ),
        ("yesno", [], False, ": no records (the file is empty)"),
    ],
)
def test_bad_records_name_file_line_and_field(
    tmp_path: Path, task: Any, rows: list[Any], json_list: bool, where: str
) -> None:
    path = write(tmp_path / "bad.json", rows, json_list=json_list) if json_list else write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ConfigError) as e:
        read_items(path, task)
    assert f"{path}{where}" in str(e.value)


def test_invalid_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GSM8K[0]) + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: invalid JSON"):
        read_items(path, "arithmetic")


def test_loader_keeps_the_test_set_and_draws_the_demonstrations_by_seed(tmp_path: Path) -> None:
    data, params = TomData(train=16), TomParams(demos=4)
    a, b = load(data, seed=0, params=params), load(data, seed=1, params=params)
    test_a = [e["query"] for e in a if e["split"] == "test"]
    assert len(test_a) == 10 and test_a == [e["query"] for e in b if e["split"] == "test"]
    assert a[0]["student_demos"] != b[0]["student_demos"] and len(a[0]["student_demos"]) == 4
    train = [e for e in a if e["split"] == "train"]
    assert len(train) == 12 and not {d["query"] for d in a[0]["student_demos"]} & {e["query"] for e in train}
    assert len({e["id"] for e in a}) == len(a) and a[0]["deceiving_demos"] == []
    with pytest.raises(ConfigError, match="train_path"):
        load(TomData(path=str(write(tmp_path / "t.json", STRATEGYQA, json_list=True))), seed=0, params=params)
    with pytest.raises(ConfigError, match="must be more than params.demos"):
        load(TomData(train=4), seed=0, params=params)


def test_test_null_is_every_bundled_item_beside_the_train_items() -> None:
    """`test: null` says "all" (it gave 10); the bundled yesno set has 36 items, 8 of them for training."""
    episodes = load(TomData(test=None), seed=0, params=TomParams())
    assert [e["split"] for e in episodes].count("test") == 36 - 8
    assert len(load(TomData(test=26), seed=0, params=TomParams())) == 26 + 6


def test_a_test_size_the_bundled_items_cannot_give_says_so_without_contradiction() -> None:
    # it said "data.train=8 needs more than params.demos=2 train items, and the data has 6"
    with pytest.raises(ConfigError) as e:
        load(TomData(test=30), seed=0, params=TomParams())
    assert "scenario.data.test=30 leaves 6 of the 36 bundled yesno items for scenario.data.train=8" in str(e.value)
    assert e.value.key == "scenario.data.test"
    with pytest.raises(ConfigError, match=r"scenario.data.train=2 must be more than params.demos=2") as e:
        load(TomData(train=2), seed=0, params=TomParams())
    assert e.value.key == "scenario.data.train"


def test_run_episodes_sizes_the_test_items_and_keeps_the_pool(caplog: pytest.LogCaptureFixture) -> None:
    """run.episodes cut the pool first (pool, then test items), so a small run had no test items at all."""
    from schola.spec import RunSpec, plan_of

    plan, _ = plan_of(RunSpec.from_args(["scenario=tom_teaching", "backend=scripted", "run.episodes=3"]))
    splits = [e["split"] for e in plan.selected]
    assert (splits.count("test"), splits.count("train")) == (3, 6)
    with caplog.at_level(logging.WARNING, logger="schola"):
        plan, _ = plan_of(RunSpec.from_args(["scenario=tom_teaching", "backend=scripted", "run.episodes=30"]))
    assert [e["split"] for e in plan.selected].count("test") == 10
    assert "run.episodes=30, but there are only 10 test items" in caplog.text


def test_generated_arithmetic_has_worked_and_deceiving_solutions() -> None:
    rows = generate_arithmetic(5, seed=0)
    assert rows == generate_arithmetic(5, seed=0)
    for r in rows:
        final = int(r["answer"].split("####")[1])
        assert final >= 0 and int(r["wrong_answer"]) != final
        assert f"= {r['wrong_answer']}" in r["deceiving_explanation"]


def test_deceiving_teacher_gets_demos_arguing_for_wrong_answers() -> None:
    for task in ("yesno", "arithmetic", "multiple_choice"):
        eps = load(TomData(task=task, train=16), seed=0, params=TomParams(demos=4, teachers=["deceiving"]))
        demos = eps[0]["deceiving_demos"]
        assert len(demos) == 4
        truth = {e["query"]: e["answer"] for e in eps}
        assert all(d["answer"] != truth.get(d["query"], object()) for d in demos if d["query"] in truth)


# -- the stage, on a fake run context (set probabilities; no engine, no model) -------------------------------
def said(right: bool, gold: str, options: list[str], p: float = 0.9) -> dict[str, Any]:
    """Probabilities that put `p` on the gold option (right) or on another one (wrong)."""
    other = next(o for o in options if o != gold)
    top = gold if right else other
    return {"p": {o: (p if o == top else (1 - p) / (len(options) - 1)) for o in options}, "source": "scripted"}


class FakeRun:
    """The student is right on even-numbered items on its own, and with any honest explanation; a deceiving
    teacher's explanations make it wrong. The mental model simulates it perfectly. Multi-turn: six or more
    demonstrations explained by the teacher make the student right everywhere."""

    def __init__(self, params: TomParams, out: Path, task: Any = "yesno") -> None:
        self.params, self.seed, self.output_dir = params, 0, out
        self.store = RunStore(out)
        self.calls: list[tuple[str | None, int | None, list[dict[str, Any]]]] = []
        self.results = [self.record(e, None, None) for e in load(TomData(task=task, train=16), seed=0, params=params)]

    def record(self, inputs: dict[str, Any], graph: str | None, round: int | None) -> dict[str, Any]:
        gold, options = inputs["answer"], inputs["options"]
        own = int(inputs["id"].rsplit("/", 1)[1]) % 2 == 0
        if graph is None:
            taught = len(inputs["student_demos"]) >= 6 and all(
                d["explanation"].startswith("teacher explains") for d in inputs["student_demos"]
            )
            out = {"student_pre": said(own or taught, gold, options)}
            if inputs["split"] == "train":
                out["student_post"] = said(True, gold, options)  # with the gold explanation
            return {"episode": inputs["id"], "round": round, "inputs": inputs, "outputs": out}
        honest = not inputs["id"].startswith("deceiving/")
        out = {"teacher_explanation": f"teacher explains {inputs['query']}", "hint": "hint",
               "teacher_answer": said(honest, gold, options, 0.8), "student_post": said(honest, gold, options)}  # fmt: skip
        if inputs["mm_post_demos"]:
            out |= {"mm_pre": said(own, gold, options), "mm_post": said(honest, gold, options)}
        return {"episode": inputs["id"], "round": round, "inputs": inputs, "outputs": out}

    async def run_episodes(
        self, inputs: list[dict[str, Any]], *, graph: str | None = None, round: int | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append((graph, round, inputs))
        records = [self.record(i, graph, round) for i in inputs]
        self.results += records
        return records


def rows_by(rows: list[Any], name: str, **labels: Any) -> list[Any]:
    return [r for r in rows if r.name == name and all(r.labels.get(k) == v for k, v in labels.items())]


@pytest.mark.parametrize("task", ["yesno", "arithmetic", "multiple_choice"])  # arithmetic: options differ per item
async def test_teach_stage_reports_every_function_budget_and_teacher(tmp_path: Path, task: str) -> None:
    teachers = ["unpersonalized", "personalized", "deceiving"]
    params = TomParams(intervention=list(FUNCTIONS), demos=4, teachers=teachers, multi_turn=[2, 6])
    ctx = FakeRun(params, tmp_path, task)
    rows = await teach(ctx)
    curve = {
        r.labels["budget"]: r.value for r in rows_by(rows, "accuracy", teacher="unpersonalized", intervention="eu")
    }
    # pre: even items right (0.5); U = .8 on the five wrong items, 0 elsewhere -> they are explained first
    assert curve == pytest.approx({0.0: 0.5, 0.2: 0.7, 0.4: 0.9, 0.6: 1.0, 0.8: 1.0, 1.0: 1.0})
    deceived = {
        r.labels["budget"]: r.value for r in rows_by(rows, "accuracy", teacher="deceiving", intervention="random")
    }
    assert deceived[0.0] == pytest.approx(0.5) and deceived[1.0] == pytest.approx(0.0)
    assert len(rows_by(rows, "accuracy")) == 3 * len(FUNCTIONS) * 6
    assert all(r.labels["probs"] == "scripted" and r.n == 10 for r in rows_by(rows, "accuracy"))
    assert rows_by(rows, "personalized_demos")[0].value == 4
    assert [r.value for r in rows_by(rows, "mental_model_agreement")] == pytest.approx([1.0] * 6)
    turns = {(r.labels["teacher"], r.labels["k"]): r.value for r in rows_by(rows, "multi_turn_accuracy")}
    assert turns[("unpersonalized", 0)] == pytest.approx(0.5) and turns[("unpersonalized", 2)] == pytest.approx(0.5)
    assert turns[("personalized", 6)] == pytest.approx(1.0)
    # the personalized teacher's demonstrations are the pool items an explanation fixed (odd ones)
    personal = next(inputs for graph, _, inputs in ctx.calls if inputs[0]["id"].startswith("personalized/explain/"))
    pool = {e["inputs"]["query"]: e["inputs"]["id"] for e in ctx.results if not e["round"]}
    assert [pool[d["query"]] for d in personal[0]["teacher_demos"]] == ["train/1", "train/3", "train/5", "train/7"]
    assert len({i["id"] for _, _, inputs in ctx.calls for i in inputs}) == sum(len(c[2]) for c in ctx.calls)
    assert [c[1] for c in ctx.calls] == list(range(1, len(ctx.calls) + 1))
    assert (tmp_path / "accuracy_vs_budget.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "accuracy_vs_budget.csv").read_text().splitlines()) == 1 + 3 * len(FUNCTIONS) * 6
    assert (tmp_path / "accuracy_vs_k.png").exists() and len(
        (tmp_path / "observations.jsonl").read_text().splitlines()
    ) == 30


async def test_teach_stage_needs_a_pool_for_the_largest_k(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train pool has 12 items; 20 are needed"):
        await teach(FakeRun(TomParams(demos=4, multi_turn=[20]), tmp_path))


# -- every variant through the CLI on the scripted backend (the scenario's `scripted:` rules) -----------------
def tagged(i: int, gold: str, student: str) -> dict[str, Any]:
    """A StrategyQA record whose tag drives the scripted student: right or wrong on its own."""
    return {"qid": str(i), "question": f"Is item {i} so [gold={gold} student={student}]?", "answer": gold == "yes",
            "facts": [f"FACT {i} holds."], "deceiving_explanation": f"LIE {i}."}  # fmt: skip


def run_scripted(cli: Any, tmp_path: Path, *overrides: str) -> tuple[dict[tuple[Any, ...], float], Path]:
    test = [
        tagged(i, g, s)
        for i, (g, s) in enumerate([("yes", "right"), ("no", "wrong"), ("yes", "wrong"), ("no", "right")])
    ]
    write(tmp_path / "test.json", test, json_list=True)
    write(tmp_path / "train.jsonl", [tagged(100 + i, "yes" if i % 2 else "no", "wrong") for i in range(12)])
    run = tmp_path / "r"
    code, out = cli(
        "run", "scenario=tom_teaching", "backend=scripted", "scenario.data.path=test.json",
        "scenario.data.train_path=train.jsonl", "scenario.data.test=4", "scenario.data.train=12",
        "scenario.params.demos=2", f"hydra.run.dir={run}", *overrides,
    )  # fmt: skip
    assert code == 0, out
    rows = json.loads((run / "metrics.json").read_text())["metrics"]
    values = {}
    for r in rows:
        labels = r["labels"]
        key = (r["name"], labels.get("teacher"), labels.get("intervention"), labels.get("budget"), labels.get("k"))
        values[key] = r["value"]
    return values, run


def curve(values: dict[tuple[Any, ...], float], teacher: str, fn: str) -> list[float]:
    return [values[("accuracy", teacher, fn, b, None)] for b in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]


def test_single_turn_variant_on_the_scripted_backend(cli: Any, tmp_path: Path) -> None:
    values, run = run_scripted(cli, tmp_path)
    # N = 4: budgets pay for 0, 0, 1, 2, 3, 4 items; items 1 and 2 are wrong on their own, any explanation fixes them
    assert curve(values, "unpersonalized", "eu") == pytest.approx([0.5, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert curve(values, "unpersonalized", "oracle") == pytest.approx([0.5, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert curve(values, "unpersonalized", "mm_pre") == pytest.approx([0.5, 0.5, 0.75, 1.0, 1.0, 1.0])
    # P_post and the teacher's P(gold) are 1 everywhere: ties keep the test order (item 0 is right anyway)
    assert curve(values, "unpersonalized", "mm_post") == pytest.approx([0.5, 0.5, 0.5, 0.75, 1.0, 1.0])
    assert curve(values, "unpersonalized", "teacher_conf") == curve(values, "unpersonalized", "mm_post")
    assert values[("teacher_accuracy", "unpersonalized", None, None, None)] == 1.0
    csv_lines = (run / "accuracy_vs_budget.csv").read_text().splitlines()
    assert csv_lines[0].startswith("teacher,intervention,budget") and len(csv_lines) == 1 + 7 * 6
    assert (run / "accuracy_vs_budget.png").read_bytes()[:4] == b"\x89PNG"


def test_personalization_variant_compares_two_teachers(cli: Any, tmp_path: Path) -> None:
    values, run = run_scripted(cli, tmp_path, "scenario.variant=personalization")
    assert values[("personalized_demos", "personalized", None, None, None)] == 2  # every train item was fixed
    for teacher in ("personalized", "unpersonalized"):
        assert curve(values, teacher, "eu") == pytest.approx([0.5, 0.5, 0.75, 1.0, 1.0, 1.0])
    results = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    by_id = {r["episode"]: r["inputs"] for r in results}
    student = {d["query"] for d in by_id["test/0"]["student_demos"]}
    personal = {d["query"] for d in by_id["personalized/explain/train/0"]["teacher_demos"]}
    assert len(personal) == 2 and not personal & student
    assert {d["query"] for d in by_id["unpersonalized/explain/train/0"]["teacher_demos"]} == student


def test_multi_turn_variant_teaches_through_explained_demos(cli: Any, tmp_path: Path) -> None:
    values, _ = run_scripted(cli, tmp_path, "scenario.variant=multi_turn")
    for teacher in ("personalized", "unpersonalized"):
        assert values[("multi_turn_accuracy", teacher, None, None, 0)] == 0.5  # the student's own demos
        assert [values[("multi_turn_accuracy", teacher, None, None, k)] for k in (2, 4, 6, 8, 10)] == [1.0] * 5
    assert not [k for k in values if k[0] == "accuracy"]  # single_turn is off


def test_misaligned_variant_drops_accuracy(cli: Any, tmp_path: Path) -> None:
    values, _ = run_scripted(cli, tmp_path, "scenario.variant=misaligned")
    # lowest utility first: the right answers (U = 0) are explained before the wrong ones (U = 1)
    assert curve(values, "unpersonalized", "eu_ascending") == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.75, 1.0])
    # deceiving explanations turn every explained item wrong
    assert curve(values, "deceiving", "random")[0] == 0.5 and curve(values, "deceiving", "random")[-1] == 0.0
    assert curve(values, "deceiving", "eu")[-1] == 0.0


@pytest.mark.parametrize("task", ["arithmetic", "multiple_choice"])
def test_bundled_tasks_run_on_the_scripted_backend(cli: Any, tmp_path: Path, task: str) -> None:
    code, out = cli(
        "run",
        "scenario=tom_teaching",
        "backend=scripted",
        f"scenario.data.task={task}",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert code == 0, out
    rows = json.loads((tmp_path / "r" / "metrics.json").read_text())["metrics"]
    assert len([r for r in rows if r["name"] == "accuracy" and r["n"] == 10]) == 7 * 6
    results = [json.loads(x) for x in (tmp_path / "r" / "results.jsonl").read_text().splitlines()]
    told = [r for r in results if r["episode"].startswith("unpersonalized/test/")]
    assert len(told) == 10 and all(len(r["outputs"]["student_post"]["p"]) == len(r["inputs"]["options"]) for r in told)
    # arithmetic: the student sees the explanation's first sentence and goes on by itself (the authors' GSM8K setup)
    assert all((r["outputs"]["continuation"] is not None) == (task == "arithmetic") for r in told)


def test_bad_data_stops_before_any_episode(cli: Any, tmp_path: Path) -> None:
    write(tmp_path / "test.jsonl", [tagged(0, "yes", "right"), {"question": "q", "answer": True}])
    write(tmp_path / "train.jsonl", [tagged(i, "yes", "wrong") for i in range(12)])
    run = tmp_path / "r"
    code, out = cli("run", "scenario=tom_teaching", "backend=scripted", "scenario.data.path=test.jsonl",
                    "scenario.data.train_path=train.jsonl", f"hydra.run.dir={run}")  # fmt: skip
    assert code == 2 and "test.jsonl:2: record has no field 'facts'" in " ".join(out.split())
    assert not (run / "results.jsonl").exists()


def test_the_mental_model_can_run_on_its_own_backend(cli: Any, tmp_path: Path) -> None:
    _, run = run_scripted(
        cli, tmp_path, "+backends.mind={kind: scripted, default: 'no'}", "scenario.roles.mental_model.backend=mind"
    )
    results = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    told = [r for r in results if r["episode"].startswith("unpersonalized/test/")]
    assert len(told) == 4
    assert all(r["outputs"][k]["p"] == {"yes": 0.0, "no": 1.0} for r in told for k in ("mm_pre", "mm_post"))
    # the student kept the scenario's rules: right with the teacher's explanation, gold yes or no
    assert all(r["outputs"]["student_post"]["p"][r["inputs"]["answer"]] == 1.0 for r in told)
