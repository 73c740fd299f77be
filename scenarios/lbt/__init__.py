"""Can LLMs Learn by Teaching? (Ning et al., NeurIPS 2024): M1, M2 and M3.

M1, "observe students' feedback" (`scenario.variant=m1`, the default), per teaching problem (TP):
  1. the teacher samples K rationale + answer pairs;
  2. each pair is a student's one in-context example for the exam problems (EPs): functional variants of the TP;
  3. LbT score S_k = exam problems answered correctly, summed over students (and repeats);
then, as a run-level stage, the K answers are grouped and one is selected by MAJ (self-consistency), MAX, SUM or
AVG of S_k, and each rule's accuracy over TPs is reported side by side with its 95% CI.

M2, "learn from feedback" (`scenario.variant=m2`): M1, then the LbT scores become DPO preference pairs for the
teacher, beside correctness-only pairs (`m2.py`); train on them with `schola train dpo`.

M3, "learn iteratively" (`scenario.variant=m3`): the teacher's in-context examples for a binary task are
rewritten from the students' mistakes and kept by beam search (`m3.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from schola.scenarios.lbt import m3
from schola.scenarios.lbt.data import LbtData, load_problems
from schola.scenarios.lbt.m2 import preferences_stage
from schola.scenarios.lbt.m3 import M3Params

from schola.metrics import MetricRow, mean_row
from schola.scenario import Scenario
from schola.scorers import extract_answer, same_answer, to_number

Rule = Literal["MAJ", "MAX", "SUM", "AVG"]
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_STATED = re.compile(r"final answer|the answer is|answer\s*:", re.IGNORECASE)  # as schola.scorers finds it


class LbtParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repeats: int = Field(1, ge=1, description="times each student answers each exam problem")
    m3: M3Params = Field(default_factory=M3Params, description="M3's beam search (scenario.variant=m3)")


def canonical(answer: str) -> str:
    number = to_number(answer)
    return str(number) if number is not None else answer.lower()


def select(answers: list[str | None], scores: list[float], rule: Rule) -> str | None:
    """The answer chosen among K rationales: group by final answer, rank groups by the rule; ties go to the
    larger group, then to the group seen first. None when no rationale gave an answer."""
    groups: dict[str, list[int]] = {}
    for k, a in enumerate(answers):
        if a is not None:
            groups.setdefault(canonical(a), []).append(k)
    if not groups:
        return None
    value: Callable[[list[Any]], float] = {
        "MAJ": lambda ks: len(ks),
        "MAX": lambda ks: max(scores[k] for k in ks),
        "SUM": lambda ks: sum(scores[k] for k in ks),
        "AVG": lambda ks: sum(scores[k] for k in ks) / len(ks),
    }[rule]
    order = list(groups)
    best = max(order, key=lambda g: (value(groups[g]), len(groups[g]), -order.index(g)))
    return answers[groups[best][0]]


def _equation_result(text: str) -> str | None:
    """The result of an equation in the answer sentence ("The answer is 3 + 4 = 7." -> 7): the first number after
    its last "=". None when the last stated answer's sentence holds no "=" (its leading number is then read)."""
    stated = list(_STATED.finditer(text))
    if not stated:
        return None
    sentence = re.split(r"(?<=\D)\.(?:\s|$)|\n", text[stated[-1].end() :].strip(), maxsplit=1)[0]
    numbers = _NUMBER.findall(sentence.rsplit("=", 1)[1]) if "=" in sentence else []
    return numbers[0] if numbers else None


def answer(text: str | None, strict: bool = True) -> str | None:
    """The final answer in a rationale: `[[Final Answer]]`, `\\boxed{}` or "the answer is N". Of an answer
    sentence that says more: the number after its last "=" ("The answer is 3 + 4 = 7."), else the number it starts
    with ("the answer is 6, and the change is 5"), as the embedded model writes them (tests pin its replies);
    none when it goes on in words without a number. Not strict: else the last number in the text."""
    found = extract_answer(text, strict=True)
    if found is not None and (result := _equation_result(text or "")) is not None:
        found = result
    elif found is not None and to_number(found) is None and (numbers := _NUMBER.findall(found)):
        found = numbers[0]
    elif found is not None and len(found) > 24 and not any(c.isdigit() for c in found):
        found = None  # "the answer is not given here": prose, not an answer
    if found is None and not strict and (numbers := _NUMBER.findall(text or "")):
        found = numbers[-1]
    return found


def correct(prediction: str | None, target: Any, strict: bool = True) -> float:
    """1.0 when the answer in `prediction` (read as `answer` reads it) equals `target`."""
    return float(same_answer(answer(prediction, strict), str(target)))


def select_stage(ctx: Any, *, rules: list[Rule] = ["MAJ", "MAX", "SUM", "AVG"]) -> list[MetricRow]:
    """Accuracy of the selected answer over TPs for each rule; also the teacher's answer-parse rate."""
    rows = []
    choices: list[dict[str, Any]] = []
    episodes = [r for r in ctx.results if r.get("graph") is None]
    for r in episodes:
        out, gold = r["outputs"], r["inputs"]["answer"]
        picked: dict[str, str | None] = {rule: select(out["answers"], out["lbt_scores"], rule) for rule in rules}
        choices.append({"episode": r["episode"], "gold": gold, **picked})
    for rule in rules:
        hits = [float(same_answer(c[rule], c["gold"])) for c in choices]
        rows.append(row := mean_row("accuracy", hits, seed=ctx.seed, rule=rule))
        row.items = {c["episode"]: h for c, h in zip(choices, hits)}  # findings pair rules by teaching problem
    # in the expected form: a stated answer ("The answer is N"), not the lenient reading's last number
    parsed = [answer(text, strict=True) is not None for r in episodes for text in r["outputs"]["rationales"]]
    rows.append(mean_row("answer_parse_rate", parsed, seed=ctx.seed, role="teacher"))
    exam = [s for r in episodes for c in r["outputs"]["exam_correct"] for s in c]
    rows.append(mean_row("exam_accuracy", exam, seed=ctx.seed, role="students"))
    ctx.store.write_jsonl("selections.jsonl", choices)
    return rows


def load(data: LbtData, *, params: LbtParams, seed: int, source: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """M3 (a binary task given): its first episode; else the teaching problems of M1/M2."""
    if data.task or data.task_path:
        return m3.initial_episodes(data, params.m3, seed=seed, source=source)
    return load_problems(data, seed=seed, source=source)


scenario = Scenario(
    name="lbt",
    description=__doc__.splitlines()[0],
    load=load,
    data=LbtData,
    params=LbtParams,
    scorers={
        "answer": answer,
        "correct": correct,
        "case": m3.case,
        "accuracy": m3.accuracy,
        "failures": m3.failures,
        "examples": m3.examples,
    },
    stages={"select": select_stage, "preferences": preferences_stage, "m3": m3.m3_stage},
)
