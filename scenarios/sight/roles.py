"""SIGHT's human annotators, simulated or recorded: roles without a model.

A simulated human reads the comment right with its `reliability` for the category (it gives the gold label);
otherwise it guesses "true" with probability `guess_rate`. Two such humans with reliabilities r1 and r2 agree
with Cohen's kappa of about r1 * r2 when the guess rate matches the category's share of positives; so the
paper's IRR of a category (0.74 to 0.95) is reached with reliabilities of about 0.86 to 0.97. With data from
the authors' file, a human with `recorded: H1` gives that annotator's real label instead (None where the file
has none).
"""

from __future__ import annotations

import random
from typing import ClassVar

from pydantic import Field

from schola.roles import ActRequest, Reply, Role, RoleConfig


def simulated_label(gold: int, *, reliability: float, guess_rate: float, rng: random.Random) -> int:
    """The gold label with probability `reliability`, else a guess: 1 with probability `guess_rate`."""
    if rng.random() < reliability:
        return gold
    return int(rng.random() < guess_rate)


class HumanAnnotatorConfig(RoleConfig):
    backend: str | None = Field(None, description="none: a human annotator needs no model")
    reliability: float | dict[str, float] = Field(
        0.9, description="chance of reading a comment right: one number, or per category (others: `default`)"
    )
    guess_rate: float = Field(0.2, ge=0, le=1, description="chance that a guess is 'true'")
    recorded: str | None = Field(None, description="give this annotator's labels from the data file where it has them")

    def reliability_for(self, category: str) -> float:
        if isinstance(self.reliability, dict):
            return self.reliability.get(category, self.reliability.get("default", 0.9))
        return self.reliability


class HumanAnnotator(Role):
    """A human annotator of SIGHT comments: the file's recorded label, or a label simulated from the gold one."""

    Config = HumanAnnotatorConfig
    config: HumanAnnotatorConfig
    sees_state: ClassVar[bool] = True

    async def act(self, request: ActRequest) -> Reply:
        state, sample = request.state or {}, request.sample
        category = str(state.get("category"))
        recorded = state.get("recorded") or {}
        label: int | None
        if self.config.recorded is not None and self.config.recorded in recorded:
            label = recorded[self.config.recorded]
        elif state.get("gold") is not None:
            rng = random.Random(f"{self.seed}/{self.name}/{state.get('episode_id')}/{sample}")
            reliability = self.config.reliability_for(category)
            label = simulated_label(
                int(state["gold"]), reliability=reliability, guess_rate=self.config.guess_rate, rng=rng
            )
        else:
            label = None
        return Reply(text="" if label is None else str(label), data=label)
