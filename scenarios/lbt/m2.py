"""M2, "learn from students' feedback": M1's LbT scores become DPO preference pairs for the teacher.

Per teaching problem, a rationale with a higher LbT score is preferred over one with a lower score (by at least
`min_margin` exam points); beside them, correctness-only pairs (a rationale whose answer is right over one whose
answer is wrong or missing) are the paper's baseline (M2 +1.8 points over correctness-only DPO, LLaMA3-8B). The
exact pairing rule of the paper is unverified (its M2 code is not public); both rules are options here.
"""

from __future__ import annotations

from itertools import permutations
from typing import Any

from schola import templates
from schola.metrics import MetricRow, mean_row
from schola.scorers import same_answer

Pair = tuple[int, int]  # (chosen, rejected) indices into the K rationales


def lbt_pairs(scores: list[float], *, min_margin: float = 1.0, max_pairs: int | None = None) -> list[Pair]:
    """(chosen, rejected) with score[chosen] - score[rejected] >= min_margin; widest margins first, then by
    index; at most `max_pairs`."""
    pairs = [(i, j) for i, j in permutations(range(len(scores)), 2) if scores[i] - scores[j] >= min_margin]
    pairs.sort(key=lambda p: (-(scores[p[0]] - scores[p[1]]), p))
    return pairs[:max_pairs] if max_pairs is not None else pairs


def correctness_pairs(answers: list[str | None], gold: str, *, max_pairs: int | None = None) -> list[Pair]:
    """(chosen, rejected) with chosen's answer right and rejected's wrong (or missing), by index."""
    right = [same_answer(a, gold) for a in answers]
    pairs = [(i, j) for i in range(len(answers)) for j in range(len(answers)) if right[i] and not right[j]]
    return pairs[:max_pairs] if max_pairs is not None else pairs


def dpo_record(prompt: str, chosen: str, rejected: str) -> dict[str, Any]:
    """A DPO record in TRL's conversational format."""
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def preferences_stage(
    ctx: Any, *, prompt: str, min_margin: float = 1.0, max_pairs: int | None = None
) -> list[MetricRow]:
    """Export `dpo_lbt` (LbT-score pairs) and `dpo_correctness` (correct over incorrect) from the M1 episodes.

    Args:
        prompt: the teacher's prompt (a template over the episode's data), the DPO records' prompt.
        min_margin: the least LbT-score difference of a pair.
        max_pairs: at most this many pairs of each kind per teaching problem.

    Returns:
        `pairs{kind}` (how many), `margin{kind}` (mean LbT-score difference of the pairs, with its CI) and
        `chosen_correct{kind=lbt}` (how often the LbT-preferred rationale has the right answer).
    """
    exports: dict[str, list[dict[str, Any]]] = {"lbt": [], "correctness": []}
    margins: dict[str, list[float]] = {"lbt": [], "correctness": []}
    chosen_right: list[bool] = []
    for r in ctx.results:
        out = r["outputs"]
        if r.get("graph") is not None or not out.get("rationales"):
            continue
        text = templates.render(prompt, r["inputs"], key="scenario.stages.prompt")
        rationales, answers, scores = out["rationales"], out["answers"], out["lbt_scores"]
        gold = r["inputs"]["answer"]
        kinds = {
            "lbt": lbt_pairs(scores, min_margin=min_margin, max_pairs=max_pairs),
            "correctness": correctness_pairs(answers, gold, max_pairs=max_pairs),
        }
        for kind, pairs in kinds.items():
            for i, j in pairs:
                if rationales[i] == rationales[j]:
                    continue
                exports[kind].append(dpo_record(text, rationales[i], rationales[j]))
                margins[kind].append(float(scores[i]) - float(scores[j]))
                if kind == "lbt":
                    chosen_right.append(same_answer(answers[i], gold))
    rows = []
    problems = sum(1 for r in ctx.results if r.get("graph") is None)
    for kind, records in exports.items():
        ctx.export(f"dpo_{kind}", records, kind="dpo")
        rows.append(MetricRow(name="pairs", value=float(len(records)), labels={"kind": kind}, n=problems))
        rows.append(mean_row("margin", margins[kind], seed=ctx.seed, kind=kind))
    rows.append(mean_row("chosen_correct", chosen_right, seed=ctx.seed, kind="lbt"))
    return rows
