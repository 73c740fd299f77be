"""Teaching problems (TPs) with functional variants as exam problems (EPs), and the binary tasks of M3.

- `additions` (the default): seeded one-step addition word problems, the level of the embedded 135M model;
  each TP's EPs are the same problem with other numbers (the paper's "functional variants").
- `arithmetic_variants`: two-step word problems of the same kind, for bigger models.
- `path`: the authors' MATH-style records: question (or problem), solution (or rationale), answer, unique_id.
  An EP is linked to its TP by unique_id: `<tp unique_id><link><k>` (default link "#"), e.g. `algebra/12.json#1`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schola.data import DataFiles
from schola.errors import ConfigError
from schola.scorers import extract_answer

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jia"]

Draw = Callable[[random.Random], dict[str, int]]


def _pair(r: random.Random) -> dict[str, int]:
    return {"a": r.randint(2, 9), "b": r.randint(2, 9)}


def _sum(n: dict[str, int]) -> int:
    return n["a"] + n["b"]


# One step: measured on the embedded SmolLM2-135M, its teacher answers about a quarter to a half of these right
# at temperature 0.7 and its student mostly copies the worked example's operation (see README, lbt).
ADDITIONS: list[tuple[str, Draw, Callable[[dict[str, int]], int]]] = [
    ("{name} has {a} pens and buys {b} more. How many pens does {name} have now?", _pair, _sum),
    ("There are {a} birds on a tree and {b} more birds join them. How many birds are on the tree now?", _pair, _sum),
    (
        "{name} picks {a} apples in the morning and {b} apples in the afternoon. How many apples does {name} pick in "
        "total?",
        _pair,
        _sum,
    ),
    ("A box has {a} red balls and {b} blue balls. How many balls are in the box?", _pair, _sum),
]

# (template, draw(rng) -> numbers, answer(numbers))
TEMPLATES: list[tuple[str, Callable[[random.Random], dict[str, int]], Callable[[dict[str, int]], int]]] = [
    (
        "{name} has {a} boxes with {b} pencils in each box and gives away {c} pencils. How many pencils are left?",
        lambda r: (lambda a, b: {"a": a, "b": b, "c": r.randint(1, a * b - 1)})(r.randint(2, 9), r.randint(3, 12)),
        lambda n: n["a"] * n["b"] - n["c"],
    ),
    (
        "A train travels {a} km every hour for {b} hours and then {c} km more. How many km does it travel in total?",
        lambda r: {"a": r.randint(20, 90), "b": r.randint(2, 6), "c": r.randint(5, 60)},
        lambda n: n["a"] * n["b"] + n["c"],
    ),
    (
        "{name} buys {a} notebooks at {b} dollars each and pays with a {c}-dollar bill. How many dollars of change "
        "does {name} get?",
        lambda r: (lambda a, b: {"a": a, "b": b, "c": next(x for x in (20, 50, 100, 200) if x > a * b)})(
            r.randint(2, 8), r.randint(2, 12)
        ),
        lambda n: n["c"] - n["a"] * n["b"],
    ),
    (
        "{name} reads {a} pages a day for {b} days, then {c} pages on the last day. How many pages does {name} read?",
        lambda r: {"a": r.randint(5, 40), "b": r.randint(2, 9), "c": r.randint(1, 30)},
        lambda n: n["a"] * n["b"] + n["c"],
    ),
    (
        "A farmer shares {t} apples equally among {a} baskets, then takes {c} apples out of one basket. How many "
        "apples are left in that basket?",
        lambda r: (lambda a, q: {"a": a, "t": a * q, "c": r.randint(1, q - 1)})(r.randint(2, 9), r.randint(4, 15)),
        lambda n: n["t"] // n["a"] - n["c"],
    ),
    (
        "There are {a} rows of {b} chairs in a hall and {c} chairs are taken. How many chairs are free?",
        lambda r: (lambda a, b: {"a": a, "b": b, "c": r.randint(1, a * b - 1)})(r.randint(3, 12), r.randint(4, 15)),
        lambda n: n["a"] * n["b"] - n["c"],
    ),
]


class LbtData(BaseModel):
    """`scenario.data` of lbt."""

    model_config = ConfigDict(extra="forbid")
    generator: Literal["additions", "arithmetic_variants"] | None = "additions"
    problems: int = Field(4, ge=1, le=100_000, description="teaching problems (at most 100,000)")
    variants: int = Field(3, ge=1, le=100, description="exam problems per teaching problem (at most 100)")
    path: str | None = Field(None, description="MATH-style JSONL/JSON records instead of the generator")
    link: str = Field("#", description="unique_id of an exam problem = <TP unique_id><link><k>")
    task: Literal["fallacy", "claims"] | None = Field(None, description="M3: a bundled binary task")
    task_path: str | None = Field(None, description="M3: a JSONL file of {text, label} records")


def generate(
    problems: int, variants: int, seed: int, *, generator: str = "arithmetic_variants"
) -> list[dict[str, Any]]:
    """TPs with `variants` functional variants each; the same seed gives the same problems."""
    templates = ADDITIONS if generator == "additions" else TEMPLATES
    episodes = []
    for i in range(problems):
        template, draw, answer = templates[i % len(templates)]
        rng = random.Random(f"lbt/{seed}/{i}")
        items = []
        for _ in range(variants + 1):
            numbers = draw(rng)
            text = template.format(name=rng.choice(NAMES), **numbers)
            items.append({"question": text, "answer": str(answer(numbers))})
        tp, eps = items[0], items[1:]
        episodes.append({"id": f"tp{i}", "question": tp["question"], "answer": tp["answer"], "exams": eps})
    return episodes


def load_math(path: str, *, link: str, source: str | None) -> list[dict[str, Any]]:
    """TPs and their EPs from MATH-style records linked by unique_id."""
    files = DataFiles(source)
    file = files.path(path)
    rows = [record for _, record in files.rows(file)]
    by_id: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        question = row.get("question", row.get("problem"))
        uid = row.get("unique_id")
        if question is None or uid is None:
            raise ConfigError(
                f"{file}: record {i + 1} has no field '{'unique_id' if question is not None else 'question'}' "
                "(expected question or problem, unique_id, and answer or solution)",
                key="scenario.data.path",
            )
        answer = row.get("answer") or extract_answer(row.get("solution", row.get("rationale", "")))
        if answer is None:
            raise ConfigError(
                f"{file}: record {i + 1} ({uid}) has no field 'answer' and no \\boxed{{}} in its 'solution'",
                key="scenario.data.path",
            )
        by_id[str(uid)] = {"question": question, "answer": str(answer), "unique_id": str(uid)}
    episodes = []
    for uid, rec in by_id.items():
        if link in uid:
            continue
        exams = [r for k, r in by_id.items() if k.startswith(uid + link)]
        if not exams:
            raise ConfigError(
                f"{file}: teaching problem {uid} has no exam problems ({uid}{link}1, ...)", key="scenario.data.path"
            )
        episodes.append({"id": uid, **rec, "exams": exams})
    return episodes


def load_problems(data: LbtData, *, seed: int, source: str | None = None) -> list[dict[str, Any]]:
    """M1/M2 episodes: the teaching problems with their exam problems."""
    if data.path:
        return load_math(data.path, link=data.link, source=source)
    return generate(data.problems, data.variants, seed, generator=data.generator or "additions")
