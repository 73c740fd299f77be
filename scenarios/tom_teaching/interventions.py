"""Intervention functions and the accuracy-vs-budget arithmetic (pure functions; no model calls).

With an intervention budget B, the teacher explains the top int(B·N) of the N test items ranked by an intervention
function; there the student answers with the teacher's explanation, elsewhere on its own. Each item's answer with
and without the explanation is observed once, so every budget's accuracy follows from the two:

    accuracy(f, B) = (1/N) · Σ_i  [i ∈ top_f(int(B·N))] · post_correct_i + [i ∉ top_f(int(B·N))] · pre_correct_i

Functions (the paper's, Saha et al. 2023, Sec. 5):
- `random`: a seeded permutation;
- `teacher_conf`: the teacher's P(gold) after its own explanation, highest first;
- `student_conf`: the student's confidence in its own answer (max option probability), lowest first;
- `oracle`: only the items the student gets wrong (true utility; it never spends budget on a right answer);
- `mm_pre`: the mental model's P_pre(gold), the student's simulated answer without an explanation, lowest first;
- `mm_post`: the mental model's P_post(gold) with the teacher's explanation, highest first;
- `eu`: Expected Utility U = P_post(gold) − P_pre(gold), highest first;
- `eu_ascending`: the misaligned teacher, U lowest first.
Ties keep the test set's order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Function = Literal["random", "teacher_conf", "student_conf", "oracle", "mm_pre", "mm_post", "eu", "eu_ascending"]
FUNCTIONS: tuple[Function, ...] = (
    "random",
    "teacher_conf",
    "student_conf",
    "oracle",
    "mm_pre",
    "mm_post",
    "eu",
    "eu_ascending",
)
BUDGETS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
Probs = Mapping[str, float]


def p_of(probs: Probs | None, option: str) -> float:
    """P(option), normalised over the options (0 when the model gave no probabilities)."""
    if not probs:
        return 0.0
    total = sum(probs.values())
    return probs.get(option, 0.0) / total if total > 0 else 0.0


def argmax(probs: Probs | None, options: Sequence[str]) -> str | None:
    """The most probable option; ties go to the option listed first."""
    if not probs:
        return None
    return max(options, key=lambda o: (probs.get(o, 0.0), -options.index(o)))


@dataclass(frozen=True)
class Observation:
    """One test item as observed: probabilities over the options from the student without (pre) and with (post)
    the teacher's explanation, from the teacher, and from the teacher's mental model of the student."""

    id: str
    gold: str
    options: tuple[str, ...]
    student_pre: Probs
    student_post: Probs
    teacher: Probs
    mm_pre: Probs
    mm_post: Probs

    @property
    def pre_correct(self) -> bool:
        return argmax(self.student_pre, self.options) == self.gold

    @property
    def post_correct(self) -> bool:
        return argmax(self.student_post, self.options) == self.gold

    @property
    def utility(self) -> float:
        """Expected utility as the mental model predicts it: P_post(gold) − P_pre(gold)."""
        return p_of(self.mm_post, self.gold) - p_of(self.mm_pre, self.gold)


def score(item: Observation, function: Function) -> float:
    """The number the function sorts by, oriented so that higher is explained first."""
    if function == "teacher_conf":
        return p_of(item.teacher, item.gold)
    if function == "student_conf":
        return -max((p_of(item.student_pre, o) for o in item.options), default=0.0)
    if function == "oracle":
        return 0.0 if item.pre_correct else 1.0
    if function == "mm_pre":
        return -p_of(item.mm_pre, item.gold)
    if function == "mm_post":
        return p_of(item.mm_post, item.gold)
    if function == "eu":
        return item.utility
    if function == "eu_ascending":
        return -item.utility
    raise ValueError(f"unknown intervention function {function!r}; expected one of {', '.join(FUNCTIONS)}")


def rank(items: Sequence[Observation], function: Function, *, seed: int = 0) -> list[int]:
    """Indices of `items` in the order the teacher would explain them."""
    order = list(range(len(items)))
    if function == "random":
        random.Random(f"tom/random/{seed}").shuffle(order)
        return order
    scores = [score(it, function) for it in items]
    return sorted(order, key=lambda i: -scores[i])  # stable: ties keep the test set's order


def budget_count(budget: float, n: int) -> int:
    """int(B·N), the number of items a budget pays for (robust to 0.6·10 = 6.000000000000001 and to 0.29·100)."""
    return math.floor(budget * n + 1e-9)


def intervened(items: Sequence[Observation], function: Function, budget: float, *, seed: int = 0) -> list[int]:
    """The items the teacher explains at this budget (in rank order)."""
    top = rank(items, function, seed=seed)[: budget_count(budget, len(items))]
    if function == "oracle":
        top = [i for i in top if not items[i].pre_correct]
    return top


def correctness(items: Sequence[Observation], function: Function, budget: float, *, seed: int = 0) -> list[bool]:
    """Per item: is the student right at this budget (with the explanation where the teacher intervened)?"""
    chosen = set(intervened(items, function, budget, seed=seed))
    return [it.post_correct if i in chosen else it.pre_correct for i, it in enumerate(items)]


def accuracy_curve(
    items: Sequence[Observation], function: Function, budgets: Sequence[float] = BUDGETS, *, seed: int = 0
) -> dict[float, float]:
    """Student accuracy at each budget."""
    out = {}
    for b in budgets:
        hits = correctness(items, function, b, seed=seed)
        out[b] = sum(hits) / len(hits) if hits else math.nan
    return out
