"""Peer graders of a MOOC, simulated: roles without a model.

A peer reads the answer with probability `care` and then grades close to the instructor (the instructor's grade
plus Gaussian noise of `noise` points); otherwise it skims and gives a generous guess, 50-100% of the scale,
whatever the answer says. `leniency` points are added either way. The grade is rounded and kept on the scale.
(For peers played by a model, use the `grader` role with a persona instead.)
"""

from __future__ import annotations

import random
from typing import ClassVar

from pydantic import Field

from schola.roles import ActRequest, Reply, Role, RoleConfig


def peer_grade(
    gold: float, max_points: float, *, care: float, leniency: float, noise: float, rng: random.Random
) -> float:
    """One simulated peer's grade of an answer whose instructor grade is `gold`."""
    if rng.random() < care:
        grade = gold + rng.gauss(0.0, noise)
    else:
        grade = rng.uniform(0.5, 1.0) * max_points
    return float(min(max(round(grade + leniency), 0), max_points))


class PeerConfig(RoleConfig):
    backend: str | None = Field(None, description="none: a simulated peer needs no model")
    care: float = Field(0.8, ge=0, le=1, description="chance of reading the answer before grading it")
    leniency: float = Field(0.0, description="points added to every grade (negative: a harsh peer)")
    noise: float = Field(1.0, ge=0, description="spread, in points, of a careful grade around the instructor's")


class SimulatedPeer(Role):
    """A MOOC classmate who grades an answer: careful or skimming, lenient or harsh (see the module docstring)."""

    Config = PeerConfig
    config: PeerConfig
    sees_state: ClassVar[bool] = True

    async def act(self, request: ActRequest) -> Reply:
        state, sample = request.state or {}, request.sample
        if state.get("instructor_grade") is None or state.get("max_points") is None:
            return Reply(text="", data=None)
        rng = random.Random(f"{self.seed}/{self.name}/{state.get('episode_id')}/{sample}")
        grade = peer_grade(
            float(state["instructor_grade"]), float(state["max_points"]),
            care=self.config.care, leniency=self.config.leniency, noise=self.config.noise, rng=rng,
        )  # fmt: skip
        return Reply(text=f"Grade: {grade:g}", data=grade)
