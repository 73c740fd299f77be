"""Can LLMs Learn by Teaching? (Ning et al., NeurIPS 2024) — method M1, "observe students' feedback".

Per teaching problem (TP):
  1. the teacher samples K rationale + answer pairs;
  2. each pair is a student's one in-context example for the exam problems (EPs): functional variants of the TP;
  3. LbT score S_k = exam problems answered correctly, summed over students (and repeats);
then, as a run-level stage, the K answers are grouped and one is selected by MAJ (self-consistency), MAX, SUM or
AVG of S_k, and each rule's accuracy over TPs is reported side by side with its 95% CI.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schola.metrics import MetricRow, mean_row
from schola.scenario import Scenario
from schola.scorers import extract_answer, same_answer, to_number

from schola.scenarios.lbt.data import LbtData, load

Rule = Literal["MAJ", "MAX", "SUM", "AVG"]


class LbtParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repeats: int = Field(1, ge=1, description="times each student answers each exam problem")


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
    value = {
        "MAJ": lambda ks: len(ks),
        "MAX": lambda ks: max(scores[k] for k in ks),
        "SUM": lambda ks: sum(scores[k] for k in ks),
        "AVG": lambda ks: sum(scores[k] for k in ks) / len(ks),
    }[rule]
    order = list(groups)
    best = max(order, key=lambda g: (value(groups[g]), len(groups[g]), -order.index(g)))
    return answers[groups[best][0]]


def answer(text: str | None) -> str | None:
    """The teacher's final answer in a rationale (strict: `[[Final Answer]]`, `\\boxed{}`, "the answer is")."""
    return extract_answer(text, strict=True)


def select_stage(ctx: Any, *, rules: list[Rule] = ["MAJ", "MAX", "SUM", "AVG"]) -> list[MetricRow]:
    """Accuracy of the selected answer over TPs for each rule; also the teacher's answer-parse rate."""
    rows = []
    choices = []
    for r in ctx.results:
        out, gold = r["outputs"], r["inputs"]["answer"]
        picked = {rule: select(out["answers"], out["lbt_scores"], rule) for rule in rules}
        choices.append({"episode": r["episode"], "gold": gold, **picked})
    for rule in rules:
        hits = [float(same_answer(c[rule], c["gold"])) for c in choices]
        rows.append(mean_row("accuracy", hits, seed=ctx.seed, rule=rule))
    parsed = [a is not None for r in ctx.results for a in r["outputs"]["answers"]]
    rows.append(mean_row("answer_parse_rate", parsed, seed=ctx.seed, role="teacher"))
    exam = [s for r in ctx.results for c in r["outputs"]["exam_correct"] for s in c]
    rows.append(mean_row("exam_accuracy", exam, seed=ctx.seed, role="students"))
    (ctx.output_dir / "selections.jsonl").write_text("".join(json.dumps(c) + "\n" for c in choices))
    return rows


scenario = Scenario(
    name="lbt",
    description=__doc__.splitlines()[0],
    load=load,
    data=LbtData,
    params=LbtParams,
    scorers={"answer": answer},
    stages={"select": select_stage},
)
