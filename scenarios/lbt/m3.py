"""M3, "learn iteratively from students' feedback": the teacher's in-context examples for a binary task are
optimized by beam search (the authors' patch of ProTeGi, "Automatic Prompt Optimization with Gradient Descent
and Beam Search").

Each round, for every candidate set of examples in the beam: the students answer a minibatch of the task with
those examples; the teacher explains their mistakes (the "gradient" prompt) and writes a new set of examples
(the "apply gradient" prompt); the new candidates are scored by the teacher's accuracy on a held batch with them
as its examples, and the best `beam` are kept. The comparison of the paper: feedback from no student (the
teacher's own mistakes, plain ProTeGi), one student, or several different students. At the end, each arm's best
candidate (and the initial one) is scored on a test split.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schola.data import DataFiles
from schola.errors import ConfigError
from schola.metrics import MetricRow, mean_row
from schola.scenario import member_names

Arm = Literal["teacher", "one", "several"]
LABELS = ("Yes", "No")
TASKS = {  # bundled binary tasks: the question the classifier answers
    "fallacy": "Is this argument a logical fallacy?",
    "claims": "Is this claim true?",
}
MAX_EXAMPLES_CHARS = 1500  # a rewritten example set longer than this is cut (bounded prompts on small models)


class M3Params(BaseModel):
    """`scenario.params.m3` of lbt (paper: 8 examples, 5 rounds, beam 4, minibatch 64)."""

    model_config = ConfigDict(extra="forbid")
    arms: list[Arm] = Field(["teacher", "one", "several"], description="whose mistakes drive the rewrite")
    rounds: int = Field(2, ge=1, le=100)
    beam: int = Field(2, ge=1, le=64)
    minibatch: int = Field(4, ge=1, description="train items the students answer per candidate and round")
    held: int = Field(6, ge=1, description="items that score candidates")
    test: int = Field(8, ge=1, description="items that score each arm's best candidate at the end")
    examples: int = Field(2, ge=1, description="in-context examples in a candidate")
    failures: int = Field(3, ge=1, description="failure cases shown to the teacher per rewrite")


def _label(value: Any) -> str | None:
    text = str(value).strip().lower()
    return {"yes": "Yes", "true": "Yes", "1": "Yes", "no": "No", "false": "No", "0": "No"}.get(text)


def load_task(task: str | None, path: str | None, *, source: str | None) -> tuple[str, list[dict[str, str]]]:
    """(question, items) of a binary task: a bundled one by name, or a JSONL file of {text, label} records
    (label Yes/No, true/false or 1/0; the authors' liar/fallacy files have this shape)."""
    files = DataFiles(source)
    if path:
        file = files.path(path, key="scenario.data.task_path")
        question = TASKS.get(task or "", "Answer Yes or No.")
    elif task in TASKS:
        file, question = Path(__file__).parent / "tasks" / f"{task}.jsonl", TASKS[task]
    else:
        raise ConfigError(f"unknown task {task!r}; bundled: {', '.join(TASKS)}", key="scenario.data.task")
    items = []
    for where, row in files.rows(file, key="scenario.data.task_path"):
        for field in ("text", "label"):
            if field not in row:
                raise ConfigError(
                    f"{where}: record has no field '{field}' (expected text, label)", key="scenario.data.task_path"
                )
        label = _label(row["label"])
        if label is None:
            raise ConfigError(
                f"{where}: field 'label' is {row['label']!r}; expected Yes/No, true/false or 1/0",
                key="scenario.data.task_path",
            )
        items.append({"text": str(row["text"]).strip(), "label": label})
    return question, items


def split_task(items: list[dict[str, str]], seed: int, params: M3Params) -> dict[str, list[dict[str, str]]]:
    """Seeded train / held / test splits; train holds the rest (the initial examples and the minibatches)."""
    need = params.held + params.test + max(params.examples, params.minibatch)
    if len(items) < need:
        raise ConfigError(
            f"the task has {len(items)} items; held + test + max(examples, minibatch) = {need} are needed",
            key="scenario.params.m3",
        )
    shuffled = list(items)
    random.Random(f"lbt-m3/{seed}").shuffle(shuffled)
    held, test = shuffled[: params.held], shuffled[params.held : params.held + params.test]
    return {"held": held, "test": test, "train": shuffled[params.held + params.test :]}


def format_examples(items: list[dict[str, str]]) -> str:
    return "\n\n".join(f"Text: {x['text']}\nLabel: {x['label']}" for x in items)


def initial_examples(train: list[dict[str, str]], n: int, seed: int) -> str:
    """`n` train items as examples, half of them (rounded up) labelled Yes (the authors' `init_method=train`)."""
    rng = random.Random(f"lbt-m3-init/{seed}")
    yes = [x for x in train if x["label"] == "Yes"]
    no = [x for x in train if x["label"] == "No"]
    picked = rng.sample(yes, min(len(yes), (n + 1) // 2))
    picked += rng.sample(no, min(len(no), n - len(picked)))
    rng.shuffle(picked)
    return format_examples(picked)


def minibatch(train: list[dict[str, str]], size: int, seed: int, round: int) -> list[dict[str, str]]:
    return random.Random(f"lbt-m3-batch/{seed}/{round}").sample(train, min(size, len(train)))


# -- scorers (graph steps) ---------------------------------------------------------------------------
def case(item: dict[str, str], probs: dict[str, Any] | None = None, reply: str | None = None) -> dict[str, Any]:
    """One answer of a classifier: its prediction (the likelier option, else the label its reply names)."""
    p = (probs or {}).get("p") or {}
    if p:
        prediction: str | None = max(LABELS, key=lambda o: (p.get(o, 0.0), o == "No"))
    else:
        words = re.findall(r"[a-z]+", (reply or "").lower())
        prediction = next((_label(w) for w in words if _label(w)), None)
    return {
        "text": item["text"],
        "label": item["label"],
        "prediction": prediction,
        "correct": float(prediction == item["label"]),
    }


def accuracy(cases: list[dict[str, Any]]) -> float | None:
    return sum(c["correct"] for c in cases) / len(cases) if cases else None


def failures(cases: list[dict[str, Any]], limit: int = 3) -> str:
    """The first `limit` mistakes as the teacher reads them (the authors' "## Failure Case" blocks)."""
    wrong = [c for c in cases if not c["correct"]][:limit]
    return "\n\n".join(
        f'## Failure Case {i}\nText: "{c["text"]}"\nLabel: {c["label"]}\nPrediction: {c["prediction"] or "none"}'
        for i, c in enumerate(wrong, start=1)
    )


def examples(text: str | None) -> str | None:
    """The new example set in a rewrite: the text between <START> and <END> (or after <START>, or all of it),
    cut to a bounded length; None when empty."""
    body = text or ""
    if "<START>" in body:
        body = body.split("<START>")[-1]
    body = body.split("<END>")[0].strip()
    return body[:MAX_EXAMPLES_CHARS].strip() or None


# -- the beam search (a run-level stage) -----------------------------------------------------------
def keep_beam(candidates: list[str], scores: dict[str, float], beam: int) -> list[str]:
    """The `beam` best candidates by score; ties keep the earlier candidate (the incumbents come first)."""
    unique = list(dict.fromkeys(candidates))
    return sorted(unique, key=lambda c: (-scores[c], unique.index(c)))[:beam]


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def arm_students(arm: str, students: list[str]) -> list[str]:
    if arm == "teacher":
        return ["teacher"]
    if not students:
        raise ConfigError(f"arm '{arm}' needs students (scenario.roles.students)", key="scenario.params.m3.arms")
    if arm == "several" and len(students) < 2:
        raise ConfigError("arm 'several' needs two or more students", key="scenario.roles.students")
    return students[:1] if arm == "one" else students


def student_names(roles: dict[str, Any]) -> list[str]:
    """Role names of the `students` group, as the engine names group members."""
    return member_names("students", roles.get("students") or [])


async def m3_stage(ctx: Any) -> list[MetricRow]:
    """Rounds of expand -> score -> keep the beam, per arm; then every arm's best candidate on the test split.

    Rows: `held_accuracy{arm, round}` (the beam's best; round 0 is the initial examples), `test_accuracy{arm}`
    with its 95% CI over the test items (arm `initial`: the initial examples), `candidates{arm, round}` (new
    example sets written)."""
    params: M3Params = ctx.params.m3
    data = ctx.scenario.data
    question, items = load_task(data.get("task"), data.get("task_path"), source=ctx.scenario.source)
    splits = split_task(items, ctx.seed, params)
    students = student_names(ctx.scenario.roles)
    start = next(r for r in ctx.results if r["episode"] == "m3/initial")
    initial = start["inputs"]["examples"]
    scores = {initial: start["outputs"]["accuracy"] or 0.0}
    beams = {arm: [initial] for arm in params.arms}
    rows = [MetricRow("held_accuracy", scores[initial], {"arm": arm, "round": 0}, n=params.held) for arm in params.arms]
    history: list[dict[str, Any]] = []
    for rnd in range(1, params.rounds + 1):
        batch = minibatch(splits["train"], params.minibatch, ctx.seed, rnd)
        expand = [
            {
                "id": f"m3/r{rnd}/{arm}/expand{j}",
                "arm": arm,
                "question": question,
                "examples": cand,
                "items": batch,
                "students": arm_students(arm, students),
            }
            for arm in params.arms
            for j, cand in enumerate(beams[arm])
        ]
        written: dict[str, list[str]] = {arm: [] for arm in params.arms}
        for rec in await ctx.run_episodes(expand, graph="expand", round=rnd):
            new = rec["outputs"].get("new_examples")
            if new and new not in written[rec["inputs"]["arm"]]:
                written[rec["inputs"]["arm"]].append(new)
        score = [
            {
                "id": f"m3/r{rnd}/{arm}/{_short(c)}",
                "arm": arm,
                "split": "held",
                "question": question,
                "examples": c,
                "items": splits["held"],
            }
            for arm in params.arms
            for c in written[arm]
            if c not in scores
        ]
        for rec in await ctx.run_episodes(score, round=rnd):
            scores[rec["inputs"]["examples"]] = rec["outputs"]["accuracy"] or 0.0
        for arm in params.arms:
            expanded = len(beams[arm])
            beams[arm] = keep_beam(beams[arm] + written[arm], scores, params.beam)
            rows.append(MetricRow("held_accuracy", scores[beams[arm][0]], {"arm": arm, "round": rnd}, n=params.held))
            rows.append(MetricRow("candidates", float(len(written[arm])), {"arm": arm, "round": rnd}, n=expanded))
            history.append({"round": rnd, "arm": arm, "beam": [{"examples": c, "held": scores[c]} for c in beams[arm]]})
    best: dict[str, Any] = {"initial": initial, **{arm: beams[arm][0] for arm in params.arms}}
    test = [
        {
            "id": f"m3/test/{arm}",
            "arm": arm,
            "split": "test",
            "question": question,
            "examples": c,
            "items": splits["test"],
        }
        for arm, c in best.items()
    ]
    for rec in await ctx.run_episodes(test, round=params.rounds + 1):  # the CI: exact, over the test items
        correct = [c["correct"] for c in rec["outputs"].get("cases") or []]
        rows.append(mean_row("test_accuracy", correct, seed=ctx.seed, arm=rec["inputs"]["arm"]))
    ctx.store.write_file("m3_beams.json", json.dumps(history, indent=1) + "\n")
    return rows


def initial_episodes(data: Any, params: M3Params, *, seed: int, source: str | None) -> list[dict[str, Any]]:
    """M3's first episode: the initial examples scored on the held batch (every arm starts from them)."""
    question, items = load_task(data.task, data.task_path, source=source)
    splits = split_task(items, seed, params)
    examples_text = initial_examples(splits["train"], params.examples, seed)
    return [
        {
            "id": "m3/initial",
            "arm": "initial",
            "split": "held",
            "question": question,
            "examples": examples_text,
            "items": splits["held"],
        }
    ]
