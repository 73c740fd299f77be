from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from schola.scenarios.instruct_mtl import InstructData, InstructParams, load, report
from schola.scenarios.instruct_mtl.box import (
    Example,
    Task,
    instruction_prompt,
    load_instances,
    load_instructions,
    single_task_prompt,
)
from schola.scenarios.instruct_mtl.metrics import exact_match, rouge_l, token_f1
from schola.scenarios.instruct_mtl.tasks import LEXICON, generate

from schola.errors import ConfigError

# The HoC entry of the authors' templates/BoX_instructions.json (abridged), keys exactly as they spell them.
AUTHORS = {
    "HoC": {
        "Definition:": "In this task, you are given a medical text related to cancer. Your job is to classify it.",
        "Examples": [
            {
                "input": "Studies of cell-cycle progression showed an increase in the G1/S phase of PC3 cells .",
                "output": ["Evading growth suppressors", "Sustaining proliferative signaling"],
                "explanation": "Given text is classified into two categories.",
            },
            {
                "input": "Roscovitine leads to a significant up-regulation of p21 expression .",
                "output": "Resisting cell death",
                "explanation": "One category.",
            },
            {"input": "Angiogenesis markers rose .", "output": "Inducing angiogenesis", "explanation": "One category."},
        ],
        "Prompt": "Given a text, classify it.",
    }
}


def write(path: Path, obj: Any) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


# -- metrics, pinned on hand-computed cases ------------------------------------------------------
@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        # tokens aspirin|for|migraine vs aspirin|drug: LCS 1, P 1/3, R 1/2, F = 2PR/(P+R) = 0.4
        ("aspirin for migraine", "aspirin <Drug>", 0.4),
        # the best over the gold labels split on ", " (against the whole gold it would be 2/3)
        ("migraine <Disease>", "aspirin <Drug>, migraine <Disease>", 1.0),
        # Porter stemming: treating -> treat, treats -> treat
        ("treating", "treats", 1.0),
        # only the first line counts, without a leading "output:"
        ("output: yes\nbecause the context says so", "yes", 1.0),
        # a chat model's "The output is:" on a line of its own
        ("The output is:\n\nmigraine <Disease>\nbecause", "aspirin <Drug>, migraine <Disease>", 1.0),
        ("", "yes", 0.0),
    ],
)
def test_rouge_l_is_the_best_over_gold_labels(prediction: str, gold: str, expected: float) -> None:
    assert rouge_l(prediction, gold) == pytest.approx(expected)


def test_token_f1_and_exact_match_follow_the_squad_normalisation() -> None:
    # aspirin|tablets vs aspirin|drug: one common token, P = R = 1/2
    assert token_f1("aspirin tablets", "aspirin <Drug>") == pytest.approx(0.5)
    # vs the second label migraine|disease: P = 1, R = 1/2, F1 = 2/3; the first label shares nothing
    assert token_f1("migraine", "aspirin <Drug>, migraine <Disease>") == pytest.approx(2 / 3)
    assert token_f1("the", "yes") == 0.0  # nothing left after removing the article
    assert exact_match("Yes.", "yes") == 1.0
    assert exact_match("METHODS", "RESULTS, METHODS") == 1.0
    assert exact_match("the RESULTS", "RESULTS") == 1.0
    assert exact_match("no", "yes") == 0.0
    assert exact_match("aspirin <Drug>, migraine <Disease>", ["aspirin <Drug>", "migraine <Disease>"]) == 0.0


# -- the BoX format ----------------------------------------------------------------------------
def test_box_prompt_matches_the_authors_format() -> None:
    task = Task("HoC", "Classify the text.", ())
    one = [Example("Fan is anti-proliferative .", "Evading growth suppressors", "One category.")]
    assert instruction_prompt(task, "Roscovitine raises p21 .", one) == (
        "Instruction: Definition: Classify the text., Positive Examples: [[input: Fan is anti-proliferative ., "
        "output: Evading growth suppressors, explanation: One category.] ]; Instance: input: Roscovitine raises "
        "p21 ., output: ?"
    )
    assert (
        instruction_prompt(task, "x", [])
        == "Instruction: Definition: Classify the text.; Instance: input: x, output: ?"
    )
    two = instruction_prompt(task, "x", [Example("a", "b", "c"), Example("d", "e", "f")])
    assert "[[input: a, output: b, explanation: c] [input: d, output: e, explanation: f] ]; Instance" in two
    assert single_task_prompt("x", [Example("a", "b", "c")]) == "input: a, output: b\ninput: x, output:"


def test_the_authors_instruction_file_loads_with_its_keys_as_they_are(tmp_path: Path) -> None:
    file = write(tmp_path / "BoX_instructions.json", AUTHORS)
    tasks = load_instructions(file, source=None)
    hoc = tasks["HoC"]
    assert hoc.definition.startswith("In this task, you are given a medical text")
    assert hoc.examples[0].output == "Evading growth suppressors, Sustaining proliferative signaling"
    assert hoc.prompt == "Given a text, classify it."
    no_colon = {"T": {"Definition": "Do it.", "Examples": [{"input": "a", "output": "b"}]}}
    assert load_instructions(write(tmp_path / "b.json", no_colon), source=None)["T"].examples[0].explanation == ""


def test_a_task_without_instances_is_tested_on_its_examples_leave_one_out(tmp_path: Path) -> None:
    file = write(tmp_path / "box.json", AUTHORS)
    eps = load(InstructData(instructions=file), params=InstructParams(shots=[0, 2]), seed=0)
    assert [e["id"] for e in eps] == ["HoC/example0", "HoC/example1", "HoC/example2"]
    first = eps[0]
    assert first["output"] == "Evading growth suppressors, Sustaining proliferative signaling"
    few = next(p["text"] for p in first["prompts"] if p["arm"] == "instruction" and p["shots"] == 2)
    # the two other examples are the demonstrations; the instance itself is not among them
    assert few.count("[input: ") == 2 and "Roscovitine" in few and "Angiogenesis" in few
    assert few.endswith("Instance: input: " + first["input"] + ", output: ?")


def examples_in(prompt: dict[str, Any]) -> int:
    """The demonstrations a prompt shows, counted in its text."""
    if prompt["arm"] == "instruction":
        return prompt["text"].count("[input: ")
    return prompt["text"].count("input: ") - 1 if prompt["arm"] == "single_task" else 0


def test_every_prompts_shots_label_is_the_number_of_examples_it_shows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The authors' file has 1-3 examples per task: tested leave-one-out, rows labelled shots=2 held 0-shot prompts
    (byte-identical to shots=0) for tasks with one example and 1-shot prompts for tasks with two."""
    one = {"Definition:": "Tag proteins.", "Examples": [{"input": "p53 binds", "output": "p53 <Protein>"}]}
    two = {"Definition:": "Tag genes.", "Examples": [{"input": "BRCA1 .", "output": "BRCA1 <GENE>"},
                                                     {"input": "TP53 .", "output": "TP53 <GENE>"}]}  # fmt: skip
    file = write(tmp_path / "box.json", {**AUTHORS, "BioNLP13GE": one, "BC2GM": two})
    with caplog.at_level(logging.WARNING, logger="schola"):
        eps = load(InstructData(instructions=file), params=InstructParams(shots=[0, 1, 2]), seed=0)
    assert len(eps) == 3 + 1 + 2
    for e in eps:
        assert all(examples_in(p) == p["shots"] for p in e["prompts"]), e["id"]
        texts = [p["text"] for p in e["prompts"]]
        assert len(set(texts)) == len(texts), e["id"]  # no prompt is run twice under two labels
    shots = {e["task"]: sorted({(p["arm"], p["shots"]) for p in e["prompts"]}) for e in eps}
    assert shots["BioNLP13GE"] == [("instruction", 0), ("no_instruction", 0)]
    assert shots["BC2GM"] == [("instruction", 0), ("instruction", 1), ("no_instruction", 0), ("single_task", 1)]
    assert ("instruction", 2) in shots["HoC"]
    assert "shots=2 cannot be given to 2 of 3 tasks" in caplog.text
    assert "BioNLP13GE (at most 0)" in caplog.text and "BC2GM (at most 1)" in caplog.text


def test_instances_come_from_jsonl_and_tasks_without_them_fall_back_to_their_examples(tmp_path: Path) -> None:
    tasks = {
        **AUTHORS,
        "NCBI": {"Definition:": "Find diseases.", "Examples": [{"input": "a", "output": "b", "explanation": "c"}]},
    }
    file = write(tmp_path / "box.json", tasks)
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"task": "HoC", "input": "Tumour cells invade .", "output": ["Activating invasion and metastasis"]})
        + "\n"
    )
    eps = load(
        InstructData(instructions=file, path=str(tmp_path / "test.jsonl")), params=InstructParams(shots=[1]), seed=0
    )
    assert [(e["id"], e["output"]) for e in eps] == [
        ("HoC/0", "Activating invasion and metastasis"),
        ("NCBI/example0", "b"),
    ]
    arms = [(p["arm"], p["shots"]) for p in eps[0]["prompts"]]
    assert arms == [("instruction", 1), ("single_task", 1), ("no_instruction", 0)]
    assert eps[0]["prompts"][-1]["text"] == "Tumour cells invade ."  # without instruction: the input alone
    only = load(InstructData(instructions=file, tasks=["NCBI"]), params=InstructParams(arms=["no_instruction"]), seed=0)
    assert [e["task"] for e in only] == ["NCBI"] and [p["arm"] for p in only[0]["prompts"]] == ["no_instruction"]


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"HoC": {"Examples": []}}, "'Definition:'"),
        ({"HoC": {"Definition:": "x", "Examples": [{"input": "a"}]}}, "Examples[0] has no field 'output'"),
        ({"HoC": {"Definition:": "x", "Examples": {"input": "a"}}}, "'Examples' must be a list"),
        (["not", "an", "object"], "expected a JSON object"),
    ],
)
def test_a_bad_instruction_file_is_one_error_naming_file_and_field(tmp_path: Path, obj: Any, field: str) -> None:
    file = write(tmp_path / "bad.json", obj)
    with pytest.raises(ConfigError, match="bad.json") as e:
        load_instructions(file, source=None)
    assert field in str(e.value) and e.value.key == "scenario.data.instructions"


def test_bad_instances_are_one_error_naming_file_record_and_field(tmp_path: Path) -> None:
    tasks = load_instructions(write(tmp_path / "box.json", AUTHORS), source=None)
    path = tmp_path / "test.jsonl"
    path.write_text(
        json.dumps({"task": "HoC", "input": "a", "output": "b"})
        + "\n"
        + json.dumps({"task": "HoC", "input": "a"})
        + "\n"
    )
    with pytest.raises(ConfigError, match=r"test.jsonl: record 2 has no field 'output'"):
        load_instances(str(path), tasks, source=None)
    path.write_text(json.dumps({"task": "BioASQ", "input": "a", "output": "b"}) + "\n")
    with pytest.raises(ConfigError, match=r"record 1: field 'task' is 'BioASQ'"):
        load_instances(str(path), tasks, source=None)
    path.write_text('{"task": "HoC", \n')
    with pytest.raises(ConfigError, match=r"test.jsonl:1: invalid JSON"):
        load_instances(str(path), tasks, source=None)
    with pytest.raises(ConfigError, match="unknown task"):
        load(InstructData(tasks=["HoC"]), params=InstructParams(), seed=0)


# -- the bundled tasks -------------------------------------------------------------------------
def test_bundled_tasks_are_seeded_distinct_and_never_repeat_a_demonstration() -> None:
    a = load(InstructData(instances=6), params=InstructParams(), seed=0)
    assert a == load(InstructData(instances=6), params=InstructParams(), seed=0)
    assert a != load(InstructData(instances=6), params=InstructParams(), seed=1)
    tasks = load_instructions(None, source=None)
    assert {e["task"] for e in a} == set(tasks) and len(a) == 6 * len(tasks)
    for name, task in tasks.items():
        inputs = [e["input"] for e in a if e["task"] == name]
        assert len(set(inputs)) == 6 and not set(inputs) & {x.input for x in task.examples}


def test_bundled_gold_labels_follow_the_lexicon() -> None:
    for inst in generate("drug_disease_ner", 30, seed=3):
        for tag in inst["output"].split(", "):
            if tag != "none":
                assert tag.rsplit(" <", 1)[0] in inst["input"]
    for inst in generate("drug_disease_relation", 30, seed=3):
        drug, disease = inst["input"].split("[drug: ")[1].rstrip("]").split("; disease: ")
        treats, causes = LEXICON[drug]
        assert (inst["output"] == "treats") <= (disease in treats)
        assert (inst["output"] == "causes") <= (disease in causes)
        assert (inst["output"] == "none") <= (disease not in treats + causes)
    for inst in generate("biomedical_yesno", 30, seed=3):
        drug = inst["input"].split("Is ")[1].split(" used")[0]
        asked = inst["input"].split("to treat ")[-1].rstrip(" ?")
        assert inst["output"] == ("yes" if asked in LEXICON[drug][0] else "no")


# -- the report stage --------------------------------------------------------------------------
class FakeContext:
    def __init__(self, results: list[dict[str, Any]]) -> None:
        self.results, self.seed, self.exports = results, 0, {}

    def export(self, name: str, records: list[dict[str, Any]], *, kind: str) -> Path:
        self.exports[name] = (kind, records)
        return Path(name + ".jsonl")


def record(episode: str, task: str, gold: str, replies: dict[tuple[str, int], str]) -> dict[str, Any]:
    prompts = [{"arm": arm, "shots": k, "text": f"{arm}/{k}: {episode}"} for arm, k in replies]
    return {
        "episode": episode, "inputs": {"task": task, "input": f"x {episode}", "output": gold, "prompts": prompts},
        "outputs": {"replies": list(replies.values())}, "scores": {},
    }  # fmt: skip


def test_report_gives_rows_per_task_and_arm_paired_differences_and_sft_exports() -> None:
    ctx = FakeContext(
        [
            record(
                "q/0",
                "yesno",
                "yes",
                {("instruction", 0): "no", ("instruction", 2): "yes", ("no_instruction", 0): "no"},
            ),
            record(
                "q/1",
                "yesno",
                "no",
                {("instruction", 0): "no", ("instruction", 2): "no", ("no_instruction", 0): "maybe"},
            ),
            record(
                "c/0",
                "roles",
                "RESULTS",
                {("instruction", 0): "RESULTS", ("instruction", 2): "METHODS", ("no_instruction", 0): "x"},
            ),
        ]
    )
    rows = {(r.name, tuple(sorted(r.labels.items()))): r for r in report(ctx, metrics=["exact_match"])}
    em = rows[("exact_match", (("arm", "instruction"), ("shots", "2"), ("task", "yesno")))]
    assert (em.value, em.n) == (1.0, 2)
    assert rows[("exact_match", (("arm", "instruction"), ("shots", "0"), ("task", "yesno")))].value == 0.5
    assert rows[("exact_match", (("arm", "instruction"), ("shots", "2"), ("task", "roles")))].value == 0.0
    # paired over the three instances: instruction/2 scores 1, 1, 0; no_instruction 0, 0, 0; instruction/0 0, 1, 1
    diff = rows[("exact_match_difference", (("arm", "instruction/2"), ("versus", "no_instruction/0")))]
    assert diff.value == pytest.approx(2 / 3) and diff.n == 3
    assert rows[
        ("exact_match_difference", (("arm", "instruction/2"), ("versus", "instruction/0")))
    ].value == pytest.approx(0.0)
    kind, sft = ctx.exports["sft_instructions"]
    assert kind == "sft" and sft[0] == {"prompt": "instruction/2: q/0", "completion": "yes"} and len(sft) == 3
    assert ctx.exports["sft_no_instructions"][1][2] == {"prompt": "x c/0", "completion": "RESULTS"}
    with pytest.raises(ConfigError, match="unknown metric"):
        report(ctx, metrics=["bleu"])


# -- the whole scenario on the scripted backend --------------------------------------------------
def rows_of(run: Path) -> dict[tuple[str, tuple[tuple[str, Any], ...]], dict[str, Any]]:
    metrics = json.loads((run / "metrics.json").read_text())
    return {(m["name"], tuple(sorted(m["labels"].items()))): m for m in metrics["metrics"]}


def test_every_arm_runs_through_the_cli_on_the_scripted_student(cli: Any, tmp_path: Path) -> None:
    code, out = cli("run", "scenario=instruct_mtl", "backend=scripted", f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    run = tmp_path / "r"
    rows = rows_of(run)
    eps = load(InstructData(), params=InstructParams(), seed=0)
    firsts = {name: t.examples[0].output for name, t in load_instructions(None, source=None).items()}
    n = len(eps)

    def em(arm: str, shots: int) -> float:
        return rows[("exact_match", (("arm", arm), ("shots", str(shots))))]["value"]

    # the scripted student: zero-shot "yes"; few-shot (BoX or single-task) copies the first demonstration's
    # output; without instruction it echoes the input, which never is a gold label
    assert em("instruction", 0) == pytest.approx(sum(e["output"] == "yes" for e in eps) / n)
    expected = sum(e["output"] == firsts[e["task"]] and "," not in firsts[e["task"]] for e in eps) / n
    assert em("instruction", 2) == pytest.approx(expected) == em("single_task", 2)
    assert em("no_instruction", 0) == 0.0
    assert all(
        rows[("rouge_l", (("arm", a), ("shots", s)))]["n"] == n
        for a, s in [("instruction", "0"), ("instruction", "2"), ("single_task", "2"), ("no_instruction", "0")]
    )
    yesno = [e for e in eps if e["task"] == "biomedical_yesno"]
    per_task = rows[("exact_match", (("arm", "instruction"), ("shots", "0"), ("task", "biomedical_yesno")))]
    assert per_task["value"] == pytest.approx(sum(e["output"] == "yes" for e in yesno) / len(yesno))
    diff = rows[("exact_match_difference", (("arm", "instruction/2"), ("versus", "single_task/2")))]
    assert diff["value"] == 0.0 and diff["n"] == n
    sft = [json.loads(x) for x in (run / "sft_instructions.jsonl").read_text().splitlines()]
    assert len(sft) == n and all(r["prompt"].startswith("Instruction: Definition: ") for r in sft)
    assert sorted(r["completion"] for r in sft) == sorted(e["output"] for e in eps)
    exports = {e["name"]: e["records"] for e in json.loads((run / "metrics.json").read_text())["exports"]}
    assert exports == {"sft_instructions": n, "sft_no_instructions": n}


def test_a_bad_instruction_file_stops_the_cli_before_anything_is_written(cli: Any, tmp_path: Path) -> None:
    file = write(tmp_path / "box.json", {"HoC": {"Definition:": "x", "Examples": [{"output": "a"}]}})
    code, out = cli(
        "run",
        "scenario=instruct_mtl",
        "backend=scripted",
        f"scenario.data.instructions={file}",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert code == 2 and "box.json" in out and "Examples[0] has no field 'input'" in out
    assert not (tmp_path / "r").exists()


def test_rouge_leaves_absl_logging_on_the_process_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """absl (under rouge-score) binds its handler to sys.stderr as it is at import; pytest's or a notebook's
    stand-in is closed later, and a sweep in the same process then crashed writing to it."""
    import io

    from absl import logging as absl_logging
    from schola.scenarios.instruct_mtl import metrics

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    absl_logging.get_absl_handler().python_handler.stream = sys.stderr
    metrics._rouge.cache_clear()
    assert metrics.rouge_l("a cat", "a cat") == 1.0
    assert absl_logging.get_absl_handler().python_handler.stream is sys.__stderr__
