"""The curriculum scenario's two roles, neither with a language model (`backend: null`):

- `curriculum_designer` (the teacher): reads the dataset's features and, asked about an order, answers its score
  S; asked to generate, answers its curricula with the distance matrix and v behind them;
- `curriculum_learner` (the student): learns the tasks in the order it is given, single pass, as naive
  fine-tuning, EWC or LwF, and answers its accuracy curves with A and Δ.

A request is a JSON object, so a stage can ask a role as a graph step does:
`{"dataset": {...}, "order": [2, 0, 4, 1, 3]}` or `{"dataset": {...}, "generate": true}`.
"""

from __future__ import annotations

import asyncio
import json
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import Field
from schola.scenarios.curriculum.data import load_split
from schola.scenarios.curriculum.designer import Design
from schola.scenarios.curriculum.learners import Hyper, require_torch, run_order

from schola.errors import ConfigError
from schola.roles import ActRequest, Reply, Role, RoleConfig


def request(role: str, prompt: str) -> dict[str, Any]:
    """The JSON request a curriculum role answers."""
    try:
        body = json.loads(prompt)
    except json.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or "dataset" not in body or not ("order" in body or "generate" in body):
        raise ConfigError(
            f"role '{role}' expects a JSON request {{\"dataset\": ..., \"order\": [...]}} or "
            f"{{\"dataset\": ..., \"generate\": true}}; got {prompt[:120]!r}",
            key="scenario.graph",
        )  # fmt: skip
    return body


@lru_cache(maxsize=8)
def _design(dataset: str) -> Design:
    split = load_split(json.loads(dataset))
    return Design.from_features(split.x_train, split.y_train, split.tasks)


class DesignerConfig(RoleConfig):
    backend: str | None = None
    curricula: int = Field(2, ge=1, description="curricula to generate, one per task of lowest v (authors: 2)")


class Designer(Role):
    """The curriculum designer: S of an order, or its own curricula."""

    Config: ClassVar[type[RoleConfig]] = DesignerConfig
    system_prompt: ClassVar[str] = ""
    config: DesignerConfig

    async def act(self, asked: ActRequest) -> Reply:
        body = request(self.name, asked.prompt)
        split = load_split(body["dataset"])
        design = _design(json.dumps(body["dataset"], sort_keys=True))
        if "order" in body:
            order = [int(t) for t in body["order"]]
            s = design.score(order)
            return Reply(text=f"S = {s:.4f} for {' > '.join(split.names(t) for t in order)}", data={"S": s})
        curricula = design.generate(self.config.curricula)
        shown = "; ".join(" > ".join(split.names(t) for t in c) for c in curricula)
        return Reply(
            text=f"curricula: {shown}",
            data={
                "curricula": curricula, "v": design.v.tolist(), "distance": design.distance.tolist(),
                "normalised": design.normalised.tolist(), "tasks": [split.names(t) for t in range(len(split.tasks))],
            },
        )  # fmt: skip


class LearnerConfig(RoleConfig, Hyper):
    backend: str | None = None
    runs: int = Field(1, ge=1, description="initial weights averaged per order (authors: 3 runs)")


class Learner(Role):
    """A continual learner: learns an order of tasks and reports its accuracy (training runs off the event loop)."""

    Config: ClassVar[type[RoleConfig]] = LearnerConfig
    system_prompt: ClassVar[str] = ""
    config: LearnerConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        require_torch()  # fail before the first episode, with how to install it
        self.hyper = Hyper.model_validate(self.config.model_dump(include=set(Hyper.model_fields)))

    async def act(self, asked: ActRequest) -> Reply:
        body = request(self.name, asked.prompt)
        if "order" not in body:
            raise ConfigError(
                f'role \'{self.name}\' learns an order: send {{"dataset": ..., "order": [...]}}', key="scenario.graph"
            )
        split = load_split(body["dataset"])
        order = [int(t) for t in body["order"]]
        result = await asyncio.to_thread(run_order, split, order, self.hyper, seed=self.seed, runs=self.config.runs)
        text = f"{self.name}: A = {result['A']:.3f}, forgetting = {result['delta']:.3f}"
        return Reply(text=text, data={"learner": self.name, **result})
