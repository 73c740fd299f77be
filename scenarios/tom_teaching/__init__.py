"""Can Language Models Teach? Teacher explanations via Theory of Mind (Saha, Hase, Bansal, NeurIPS 2023).

Roles: a student, a teacher, and the teacher's mental model of the student (a role of its own, possibly on
another backend). Protocol (the authors' ExplanationIntervention code):
  1. The student answers every item on its own with chain of thought from a few demonstrations (main episodes);
     on train items it also answers with the gold explanation (what personalization observes).
  2. The teacher explains items from its own demonstrations: the student's (unpersonalized), items where an
     explanation helped this student (personalized), or deceiving explanations (a misaligned teacher).
  3. Single-turn: with intervention budget B, the teacher explains the top int(B·N) test items ranked by an
     intervention function (random, teacher_conf, student_conf, oracle, mm_pre, mm_post, eu = Expected Utility
     P_post(gold) − P_pre(gold) from the mental model); the student answers those with the explanation.
     Metric: student accuracy vs budget per function, with 95% bootstrap CIs over items.
  4. Multi-turn: explanations of k train items become the student's demonstrations; the student is then tested
     without intervention (does teaching generalize?).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from schola.scenarios.tom_teaching.data import TomData, load, sentences
from schola.scenarios.tom_teaching.demos import Teacher
from schola.scenarios.tom_teaching.interventions import BUDGETS, FUNCTIONS, Function
from schola.scenarios.tom_teaching.stage import teach

from schola.scenario import Scenario


def _reported() -> list[Function]:
    return [f for f in FUNCTIONS if f != "eu_ascending"]


def _unpersonalized() -> list[Teacher]:
    return ["unpersonalized"]


class TomParams(BaseModel):
    """`scenario.params` of tom_teaching."""

    model_config = ConfigDict(extra="forbid")
    intervention: list[Function] = Field(
        default_factory=_reported,
        description="intervention functions reported (one name or a list; sweepable)",
    )
    budgets: list[float] = Field(default_factory=lambda: list(BUDGETS), description="intervention budgets B in [0, 1]")
    demos: int = Field(2, ge=1, description="demonstrations of the student, the teacher and the mental model (ic_num)")
    teachers: list[Teacher] = Field(
        default_factory=_unpersonalized, description="unpersonalized, personalized, deceiving"
    )
    single_turn: bool = Field(True, description="accuracy vs intervention budget")
    multi_turn: list[int] = Field(default_factory=list, description="k values: explained train items as demos")

    @field_validator("intervention", "teachers", mode="before")
    @classmethod
    def one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("budgets")
    @classmethod
    def in_unit_interval(cls, value: list[float]) -> list[float]:
        if any(not 0 <= b <= 1 for b in value):
            raise ValueError("every intervention budget must lie in [0, 1]")
        return value


CONCLUSION = re.compile(r"\s*(?:so\s+)?the (?:correct choice|answer) is\b.*$", re.IGNORECASE | re.DOTALL)


def explanation(text: str | None) -> str:
    """The explanation in a chain of thought: its first line, without a leading `A:` and cut before
    "So the answer is" (else after its last full stop), as the authors' code takes it."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    first = re.sub(r"^A:\s*", "", lines[0]) if lines else ""
    cut = CONCLUSION.sub("", first)
    if cut != first:
        return cut.strip().rstrip(",;:").strip()
    return first[: first.rfind(".") + 1].strip() if "." in first else first


def hint(explanation: str | None, task: str) -> str:
    """What the student is shown: the whole explanation, or for arithmetic only its first sentence (the authors'
    GSM8K setting, where a whole worked solution would give the answer away)."""
    text = (explanation or "").strip()
    if task == "arithmetic":
        first = sentences(text)
        return first[0] if first else ""
    return text


scenario = Scenario(
    name="tom_teaching",
    description=__doc__.splitlines()[0],
    load=load,
    data=TomData,
    params=TomParams,
    scorers={"explanation": explanation, "hint": hint},
    stages={"teach": teach},
)
