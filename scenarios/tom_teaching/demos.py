"""Demonstrations chosen from what the teacher observed of the student (pure functions).

- Teacher: `unpersonalized` uses the student's own demonstrations (the paper's blind teacher); `personalized` uses
  train items where this student was wrong without an explanation and right with one (the paper's "useful
  teacher": its demonstrations are explanations that helped this student); `deceiving` uses deceiving
  explanations arguing for wrong answers (the misaligned teacher).
- Mental model: P_pre is prompted with items and the student's observed answers without an explanation; P_post
  with items, the teacher's explanations and the student's answers with them. For two options the demonstrations
  are balanced: at most k/2 per predicted answer (the authors' choice for StrategyQA).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

Teacher = Literal["unpersonalized", "personalized", "deceiving"]


def personalized(
    observed: Sequence[dict[str, Any]], fallback: Sequence[dict[str, Any]], *, k: int
) -> list[dict[str, Any]]:
    """Up to `k` observed items where the student's answer without an explanation was wrong and with the gold
    explanation right (in pool order), filled up from `fallback` (the student's demonstrations) when fewer exist.

    Each observed item: `{query, answer, explanation, pre, post}` (pre/post: the student's answers)."""
    useful = [o for o in observed if o["pre"] != o["answer"] and o["post"] == o["answer"]][:k]
    chosen = [{"query": o["query"], "answer": o["answer"], "explanation": o["explanation"]} for o in useful]
    seen = {d["query"] for d in chosen}
    chosen += [d for d in fallback if d["query"] not in seen][: k - len(chosen)]
    return chosen


def balanced(
    observed: Sequence[dict[str, Any]], *, k: int, options: Sequence[str], key: str = "prediction"
) -> list[dict[str, Any]]:
    """The first `k` items, at most k//2 per value of `key` when there are two options (else simply the first k).
    Items without a prediction are skipped."""
    cap = k // 2 if len(options) == 2 and k >= 2 else k
    taken: dict[Any, int] = {}
    out = []
    for o in observed:
        value = o.get(key)
        if value is None or taken.get(value, 0) >= cap:
            continue
        taken[value] = taken.get(value, 0) + 1
        out.append(dict(o))
        if len(out) == k:
            break
    return out
