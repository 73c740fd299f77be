"""Competitive distillation (Li et al.; text-only here): teacher and student compete on an instruction pool.

Per round:
  1. the teacher and the student answer every instruction of the pool;
  2. an assessor (the `judge` role) compares their answers, by scores or pairwise (options), and flags the
     instructions where the student is clearly worse (by at least `margin`);
  3. an augmentor writes a harder variant of each flagged instruction and the teacher answers it;
  4. the round's SFT set (`sft_round<r>.jsonl`: the teacher's answers to the flagged and the new instructions)
     is exported, and the new instructions join the pool for the next round.
Metrics per round: the student's win rate against the teacher, flagged instructions, pool size. Paper: 4 rounds;
a 7B student passes a 13B teacher on ScienceQA. The assessor's prompt and thresholds are unverified: options.
Between rounds the loop can be closed by training the student on a round's export (`schola train sft`) and
running the next round with the checkpoint as the student's backend.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schola.data import DataFiles
from schola.errors import ConfigError
from schola.metrics import MetricRow, mean_row
from schola.scenario import Scenario

BUNDLED = Path(__file__).parent / "instructions.jsonl"


class ComdData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, description="JSONL/JSON of {instruction, input?, output?, id?}; null: bundled")
    instructions: int | None = Field(6, ge=1, description="the first N instructions; null: all")


class AssessorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["score", "pairwise"] = Field("pairwise", description="which is better, or scores 1-10 for each")
    margin: float = Field(0.02, ge=0, description="pairwise: P(teacher) - P(student); score: points")
    swap: bool = Field(True, description="judge twice, in both orders (a split verdict is a tie)")


class ComdParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(2, ge=1, le=100, description="rounds (paper: 4)")
    assessor: AssessorParams = Field(default_factory=AssessorParams)


def first_order(seed: int, episode: str) -> int:
    """The order a comparison shows first, drawn per comparison by the run seed: 0 shows the teacher's answer
    as A, 1 the student's (an assessor that favours a position then favours neither side on average)."""
    return random.Random(f"comd/order/{seed}/{episode}").randrange(2)


def load(data: ComdData, *, seed: int, source: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """The instruction pool; Alpaca-style records (`instruction`, optional `input` appended, `output` kept as
    `reference`), each with the order its comparison shows first (`first`). A record without an instruction
    names its file and record."""
    files = DataFiles(source)
    file = files.path(data.path) if data.path else BUNDLED
    rows = [record for _, record in files.rows(file)]
    pool = []
    for i, row in enumerate(rows):
        text = row.get("instruction")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(
                f"{file}: record {i + 1} has no field 'instruction' (expected instruction, input?, output?, id?)",
                key="scenario.data.path",
            )
        if isinstance(row.get("input"), str) and row["input"].strip():
            text = f"{text.strip()}\n\n{row['input'].strip()}"
        key = str(row.get("id", f"i{i}"))
        pool.append({
            "id": key, "key": key, "instruction": text.strip(), "reference": row.get("output"), "origin": "seed",
            "first": first_order(seed, key),
        })  # fmt: skip
    if len({p["id"] for p in pool}) != len(pool):
        raise ConfigError(f"{file}: two records share an id", key="scenario.data.path")
    return pool[: data.instructions] if data.instructions else pool


_SCORE = re.compile(r"\b([AB])\s*[:=]\s*(\d+(?:\.\d+)?)", re.I)


def shown(text: str | None, probs: dict[str, Any] | None, mode: str) -> tuple[float | None, float | None]:
    """(value of the answer shown as A, of the one shown as B) in one judgement: score mode reads
    "A: <1-10> B: <1-10>" from the text, pairwise mode the option probabilities of A and B."""
    if mode == "pairwise":
        p = (probs or {}).get("p") or {}
        return p.get("A"), p.get("B")
    found = {k.upper(): float(v) for k, v in _SCORE.findall(text or "")}
    return found.get("A"), found.get("B")


def verdict(
    texts: list[str | None],
    probs: list[dict[str, Any] | None] | None = None,
    *,
    orders: list[int] | None = None,
    mode: str = "score",
    margin: float = 2.0,
) -> dict[str, Any]:
    """The assessor's judgement of the teacher against the student, from one or two judgements, each shown in
    its order (`orders`; 0: the teacher's answer as A, 1: as B; default 0, 1, ...). Each judgement prefers one
    side (or ties); the student's result is the mean of 1 (preferred), 0.5 (tie) and 0 (not): two judgements
    that disagree, as an assessor that always picks A does, are a tie, not the sign of a 0.02 difference.
    Flagged: the teacher preferred in every judgement and ahead by `margin` (teacher - student, averaged).
    `prefers_a` records, per judgement, whether it preferred the answer shown as A (None: a tie), for the
    position-bias row. Without a readable judgement it is unassessed (win None, not flagged)."""
    orders = list(range(len(texts))) if orders is None else list(orders)
    teacher, student, results, prefers_a = [], [], [], []
    for i, text in enumerate(texts):
        a, b = shown(text, (probs or [None] * len(texts))[i], mode)
        if a is None or b is None:
            continue
        t, s = (a, b) if orders[i] == 0 else (b, a)
        teacher.append(t)
        student.append(s)
        results.append(1.0 if s > t else 0.5 if s == t else 0.0)
        prefers_a.append(None if a == b else a > b)
    base = {"orders": orders, "prefers_a": prefers_a}
    if not teacher:
        return {"teacher": None, "student": None, "win": None, "flagged": False, **base}
    t, s = sum(teacher) / len(teacher), sum(student) / len(student)
    win = sum(results) / len(results)
    return {"teacher": t, "student": s, "win": win, "flagged": win == 0.0 and t - s >= margin, **base}


def instruction(text: str | None) -> str | None:
    """The augmentor's new instruction: its reply without a leading label ("Harder instruction:"), first
    paragraph; None when empty."""
    body = re.sub(r"^\s*(?:new|harder)?\s*(?:instruction|question)\s*:\s*", "", (text or "").strip(), flags=re.I)
    first = body.split("\n\n")[0].strip()
    return first or None


def messages(prompt: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def round_records(
    records: list[dict[str, Any]], rnd: int, *, seed: int = 0
) -> tuple[list[dict[str, Any]], list[MetricRow], list[dict[str, Any]]]:
    """(the round's SFT records, its rows, the new pool items) from the round's episodes."""
    sft, new, wins, flagged = [], [], [], 0
    prefers_a: list[bool | None] = []
    for r in records:
        out, item = r["outputs"], r["inputs"]
        v = out.get("verdict") or {}
        wins.append(v.get("win"))
        prefers_a += v.get("prefers_a") or []
        if not v.get("flagged"):
            continue
        flagged += 1
        if out.get("teacher_answer"):
            sft.append(messages(item["instruction"], out["teacher_answer"]))
        if out.get("harder") and out.get("harder_answer"):
            sft.append(messages(out["harder"], out["harder_answer"]))
            key = f"{item['key']}+{rnd + 1}"
            new.append({"id": key, "key": key, "instruction": out["harder"], "reference": None, "origin": "augmented"})
    rows = [
        mean_row("win_rate", wins, seed=seed, round=rnd),
        # share of the assessor's decided judgements that preferred the answer shown as A: 0.5 is no position bias
        mean_row("position_bias", prefers_a, seed=seed, round=rnd),
        MetricRow("flagged", float(flagged), {"round": rnd}, n=len(records)),
        MetricRow("pool", float(len(records)), {"round": rnd}, n=len(records)),
        MetricRow("sft_records", float(len(sft)), {"round": rnd}, n=len(records)),
    ]
    return sft, rows, new


async def rounds_stage(ctx: Any) -> list[MetricRow]:
    """Round 0 is the run's own episodes; rounds 1.. answer the grown pool (`r<round>/<key>` episodes)."""
    records = [r for r in ctx.results if r.get("graph") is None and r.get("round", 0) == 0]
    pool = [r["inputs"] for r in records]
    rows: list[MetricRow] = []
    for rnd in range(ctx.params.rounds):
        if rnd > 0:
            inputs = [{**item, "id": f"r{rnd}/{item['key']}"} for item in pool]
            for item in inputs:
                item["first"] = first_order(ctx.seed, item["id"])
            records = await ctx.run_episodes(inputs, round=rnd)
        sft, found, new = round_records(records, rnd, seed=ctx.seed)
        rows += found
        ctx.export(f"sft_round{rnd}", sft, kind="sft")
        seen = {p["instruction"] for p in pool}
        for item in new:
            if item["instruction"] not in seen:
                pool.append(item)
                seen.add(item["instruction"])
    return rows


scenario = Scenario(
    name="comd",
    description=__doc__.splitlines()[0],
    load=load,
    data=ComdData,
    params=ComdParams,
    scorers={"verdict": verdict, "instruction": instruction},
    stages={"rounds": rounds_stage},
)
