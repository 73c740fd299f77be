"""What a scenario plugin provides: a data loader, scorers for episode steps and run-level stages.

The episode graph and the roles are YAML (the scenario's config); a scenario that needs no Python uses the
generic loader and scorers only. Run-level stages run after the episodes, read every episode's results, may
start further episodes (rounds), and return metric rows (dataset-level statistics live here)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from schola.data import DataConfig, load_records
from schola.metrics import MetricRow


class AnyParams(BaseModel):
    """`scenario.params` of a scenario that declares no schema: free-form."""

    model_config = ConfigDict(extra="allow")


class StageContext(Protocol):
    """What a run-level stage gets."""

    results: list[dict[str, Any]]
    params: Any
    seed: int
    output_dir: Path

    async def run_episodes(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    async def act(self, role: str, prompt: str, *, sample: int = 0) -> str: ...


Stage = Callable[..., "list[MetricRow] | None | Awaitable[list[MetricRow] | None]"]


@dataclass
class Scenario:
    """A scenario plugin.

    Args:
        name: registered name (also the namespace of its scorers and stages: `lbt.select`).
        load: `load(data, *, params, seed, source) -> list of episode inputs`, each with an `id`.
        data: schema of `scenario.data`.
        params: schema of `scenario.params`.
        scorers: step scorers, referenced as `<name>.<key>`.
        stages: run-level stages, referenced as `<name>.<key>`.
    """

    name: str
    description: str = ""
    load: Callable[..., list[dict[str, Any]]] = load_records
    data: type[BaseModel] = DataConfig
    params: type[BaseModel] = AnyParams
    scorers: dict[str, Callable[..., Any]] = field(default_factory=dict)
    stages: dict[str, Stage] = field(default_factory=dict)


GENERIC = Scenario(name="yaml", description="a scenario written in YAML alone (generic loader and scorers)")
