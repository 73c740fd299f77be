"""ARTE — Aligning Teacher with Student Preferences for Tailored Training Data Generation (Liu et al., 2024).

1. The teacher drafts questions from a few seed questions of a task, and several rationales per question.
2. Preference: a rationale's score is the student's accuracy on a held preference set when that (question,
   rationale) is its one in-context example (greedy); a question's score is the mean over its rationales.
3. DPO pairs for the teacher: question level (top vs bottom quarter of a task's questions) and rationale level
   (a question's best vs worst rationale): `dpo_questions.jsonl`, `dpo_rationales.jsonl`.
4. The aligned teacher (here: a role of its own, by default the same backend shown the student-preferred
   examples; after `schola train dpo`, the trained checkpoint) regenerates the rationales: the student's SFT set
   `sft_student.jsonl` (beside `sft_drafted.jsonl`, the unaligned teacher's). The student's accuracy on a test
   split with the drafted vs the regenerated example in context measures the alignment.
Paper: BIG-Bench-Hard; a Gemma-2B student 37.6 -> 42.0 (zero-shot) trained on the aligned vs the unaligned data.
"""

from __future__ import annotations

import random
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from schola.scenarios.arte.tasks import GENERATORS, INSTRUCTIONS, generate, load_bbh, matches

from schola import templates
from schola.errors import ConfigError
from schola.metrics import MetricRow, mean_row
from schola.scenario import Scenario


class ArteData(BaseModel):
    """`scenario.data` of arte: procedural BBH-style tasks, or BBH json files."""

    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(default_factory=lambda: list(GENERATORS), description="procedural tasks")
    paths: list[str] = Field(default_factory=list, description="BBH json files (task = file stem) instead")
    seeds: int = Field(3, ge=1, le=64, description="seed questions shown to the teacher per task (at most 64)")
    questions: int = Field(
        2, ge=1, le=10_000, description="questions the teacher drafts per task (episodes; at most 10,000)"
    )
    preference: int = Field(3, ge=1, le=2_000, description="held preference items per task (at most 2,000)")
    test: int = Field(3, ge=1, le=2_000, description="test items per task (at most 2,000)")


class ArteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    demos: int = Field(2, ge=0, description="student-preferred examples the aligned teacher is shown")


def split(items: list[dict[str, str]], data: ArteData, seed: int, *, file: str) -> dict[str, list[dict[str, str]]]:
    need = data.seeds + data.preference + data.test
    if len(items) < need:
        raise ConfigError(
            f"{file}: {len(items)} examples; seeds + preference + test = {need} are needed", key="scenario.data"
        )
    shuffled = list(items)
    random.Random(f"arte-split/{seed}").shuffle(shuffled)
    return {
        "seeds": shuffled[: data.seeds],
        "preference": shuffled[data.seeds : data.seeds + data.preference],
        "test": shuffled[data.seeds + data.preference : need],
    }


def load(data: ArteData, *, seed: int, source: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """One episode per drafted question: `<task>/q<j>`, carrying its task's seeds, preference and test items."""
    tasks: list[tuple[str, str, list[dict[str, str]], str]] = []
    if data.paths:
        for path in data.paths:
            name, items = load_bbh(path, source=source)
            tasks.append((name, INSTRUCTIONS.get(name, name.replace("_", " ")), items, path))
    else:
        for name in data.tasks:
            if name not in GENERATORS:
                raise ConfigError(
                    f"unknown task {name!r}; generated: {', '.join(GENERATORS)}", key="scenario.data.tasks"
                )
            items = generate(name, data.seeds + data.preference + data.test, seed)
            tasks.append((name, INSTRUCTIONS[name], items, f"generator {name}"))
    episodes = []
    for name, instruction, items, file in tasks:
        parts = split(items, data, seed, file=file)
        for j in range(data.questions):
            episodes.append({"id": f"{name}/q{j}", "task": name, "instruction": instruction, "slot": j, **parts})
    return episodes


def correct(reply: str | None, target: Any) -> float:
    """1.0 when the reply's stated answer is the target (numbers, booleans, option letters or words)."""
    return matches(reply, target)


def question(text: str | None) -> str | None:
    """The drafted question: the reply's first non-empty line, without a leading "Question:"."""
    for line in (text or "").splitlines():
        line = re.sub(r"^\s*question\s*:\s*", "", line, flags=re.I).strip()
        if line:
            return line
    return None


def mean(values: list[float | None]) -> float | None:
    nums = [float(v) for v in values if v is not None]
    return sum(nums) / len(nums) if nums else None


def quarter_pairs(scores: list[float]) -> list[tuple[int, int]]:
    """(chosen, rejected): every question in the top quarter (at least one) over every one in the bottom quarter
    whose score is strictly lower. Ranked by score, ties by index."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    q = max(1, len(scores) // 4)
    top, bottom = order[:q], order[len(order) - q :]
    return [(i, j) for i in top for j in bottom if scores[i] > scores[j]]


def best_worst(scores: list[float]) -> tuple[int, int] | None:
    """A question's (best, worst) rationale, first of equals; None when all score the same."""
    if not scores or max(scores) == min(scores):
        return None
    return scores.index(max(scores)), scores.index(min(scores))


def messages(prompt: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def dpo(prompt: str, chosen: str, rejected: str) -> dict[str, Any]:
    """A DPO record in TRL's conversational format."""
    return {
        "prompt": messages(prompt, chosen)[:1],
        "chosen": messages(prompt, chosen)[1:],
        "rejected": messages(prompt, rejected)[1:],
    }


async def align_stage(ctx: Any, *, question_prompt: str, rationale_prompt: str) -> list[MetricRow]:
    """Steps 3 and 4: export the DPO pairs; the aligned teacher regenerates every drafted question's rationale
    (graph `regenerate`, round 1); export the SFT sets. Rows: `pairs{level}`, `margin{level}`."""
    drafted = [r for r in ctx.results if r.get("graph") is None and r["outputs"].get("question")]
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in drafted:
        by_task.setdefault(r["inputs"]["task"], []).append(r)
    pairs: dict[str, list[dict[str, Any]]] = {"questions": [], "rationales": []}
    margins: dict[str, list[float]] = {"questions": [], "rationales": []}
    for records in by_task.values():
        scores = [r["outputs"]["question_score"] or 0.0 for r in records]
        prompt = templates.render(question_prompt, records[0]["inputs"], key="scenario.stages.question_prompt")
        for i, j in quarter_pairs(scores):
            pairs["questions"].append(dpo(prompt, records[i]["outputs"]["question"], records[j]["outputs"]["question"]))
            margins["questions"].append(scores[i] - scores[j])
        for r in records:
            rationale_scores = [s or 0.0 for s in r["outputs"]["rationale_scores"]]
            if (found := best_worst(rationale_scores)) is None:
                continue
            best, worst = found
            text = templates.render(
                rationale_prompt, {**r["inputs"], **r["outputs"]}, key="scenario.stages.rationale_prompt"
            )
            rationales = r["outputs"]["rationales"]
            pairs["rationales"].append(dpo(text, rationales[best], rationales[worst]))
            margins["rationales"].append(rationale_scores[best] - rationale_scores[worst])
    rows = []
    for level, records in pairs.items():
        ctx.export(f"dpo_{level}", records, kind="dpo")
        rows.append(MetricRow("pairs", float(len(records)), {"level": level}, n=len(drafted)))
        rows.append(mean_row("margin", margins[level], seed=ctx.seed, level=level))
    # The student-preferred examples of each task: its best-scored (question, rationale) pairs.
    demos: dict[str, list[dict[str, str]]] = {}
    for task, records in by_task.items():
        ranked = sorted(
            (
                (s or 0.0, r["outputs"]["question"], q)
                for r in records
                for s, q in zip(r["outputs"]["rationale_scores"], r["outputs"]["rationales"], strict=True)
            ),
            key=lambda x: -x[0],
        )
        demos[task] = [{"question": q, "rationale": x} for _, q, x in ranked[: ctx.params.demos]]
    inputs = [
        {
            "id": f"regenerate/{r['episode']}",
            "task": r["inputs"]["task"],
            "instruction": r["inputs"]["instruction"],
            "question": r["outputs"]["question"],
            "drafted": r["outputs"]["rationales"][0],
            "demos": demos[r["inputs"]["task"]],
            "test": r["inputs"]["test"],
        }
        for r in drafted
    ]
    regenerated = await ctx.run_episodes(inputs, graph="regenerate", round=1)
    sft: dict[str, list[dict[str, Any]]] = {"student": [], "drafted": []}
    for rec in regenerated:
        prompt = templates.render(rationale_prompt, rec["inputs"], key="scenario.stages.rationale_prompt")
        if rec["outputs"].get("regenerated"):
            sft["student"].append({"messages": messages(prompt, rec["outputs"]["regenerated"])})
        sft["drafted"].append({"messages": messages(prompt, rec["inputs"]["drafted"])})
    for name, records in sft.items():
        ctx.export(f"sft_{name}", records, kind="sft")
    return rows


scenario = Scenario(
    name="arte",
    description=__doc__.splitlines()[0],
    load=load,
    data=ArteData,
    params=ArteParams,
    scorers={"correct": correct, "mean": mean, "question": question},
    stages={"align": align_stage},
)
