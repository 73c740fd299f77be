"""What a scenario plugin provides: a data loader, scorers for episode steps and run-level stages.

The episode graph and the roles are YAML (the scenario's config); a scenario that needs no Python uses the
generic loader and scorers only. Run-level stages run after the episodes, read every episode's results, may
start further episodes (rounds), and return metric rows (dataset-level statistics live here)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from schola.data import DataConfig, load_records

if TYPE_CHECKING:
    from schola.metrics import MetricRow
    from schola.roles import Reply
    from schola.schema import ScenarioConfig
    from schola.store import RunStore

F = TypeVar("F", bound=Callable[..., Any])


class AnyParams(BaseModel):
    """`scenario.params` of a scenario that declares no schema: free-form."""

    model_config = ConfigDict(extra="allow")


class StageContext(Protocol):
    """What a run-level stage gets as `ctx` (the plugin API for stages).

    Attributes:
        results: every finished episode so far (all rounds): `{"episode", "round", "inputs", "outputs", "scores"}`.
        params: the validated `scenario.params`.
        seed: the run seed.
        output_dir: the run directory.
        store: its one writer: `store.write_file(name, text_or_bytes)` (and `write_jsonl`, `write_json`) writes a
            plot or a table whole, never through a link a prepared run directory holds.
        scenario: the validated scenario config.
    """

    results: list[dict[str, Any]]
    params: Any
    seed: int
    output_dir: Path
    store: RunStore
    scenario: ScenarioConfig

    async def run_episodes(
        self, inputs: list[dict[str, Any]], *, graph: str | None = None, round: int | None = None
    ) -> list[dict[str, Any]]:
        """Run more episodes (ids unique in the run) like any other; on resume, finished ones are not rerun."""
        ...

    async def act(
        self,
        role: str,
        prompt: str,
        *,
        sample: int = 0,
        sampling: dict[str, Any] | None = None,
        options: Sequence[str] | None = None,
    ) -> Reply:
        """A role answers outside any episode (booked in the transcript under episode '-stage-')."""
        ...

    def export(self, name: str, records: Sequence[Mapping[str, Any]], *, kind: Literal["sft", "dpo"]) -> Path:
        """Write `<output_dir>/<name>.jsonl` in TRL's format and list it in metrics.json."""
        ...


Stage = Callable[..., "list[MetricRow] | Awaitable[list[MetricRow] | None] | None"]


@dataclass
class Scenario:
    """A scenario plugin.

    Args:
        name: registered name (also the namespace of its scorers and stages: `lbt.select`).
        load: `load(data, *, params, seed, source) -> list of episode inputs`, each with a unique `id`.
        data: schema of `scenario.data`.
        params: schema of `scenario.params`.
        scorers: step scorers, referenced as `<name>.<key>`.
        stages: run-level stages, referenced as `<name>.<key>`.
        config: the scenario's default YAML (graph, roles) shipped with the plugin, so `scenario=<name>`
            works after `pip install`; built-ins keep theirs in `conf/scenario/`.
    """

    name: str
    description: str = ""
    load: Callable[..., Sequence[dict[str, Any]]] = load_records
    data: type[BaseModel] = DataConfig
    params: type[BaseModel] = AnyParams
    scorers: dict[str, Callable[..., Any]] = field(default_factory=dict)
    stages: dict[str, Stage] = field(default_factory=dict)
    config: str | Path | None = None


GENERIC = Scenario(name="yaml", description="a scenario written in YAML alone (generic loader and scorers)")


def uses_roles(*params: str) -> Callable[[F], F]:
    """Mark a scorer whose parameters `params` name roles it asks (so `schola check` verifies they exist).

    Example: `@uses_roles("judge")` on `async def llm_judge(ctx, *, answer, judge="judge")`."""

    def mark(fn: F) -> F:
        fn.__schola_roles__ = params  # type: ignore[attr-defined]
        return fn

    return mark


def roles_used_by(fn: Callable[..., Any], params: Mapping[str, Any]) -> list[str]:
    """The role names a scorer will ask, from the step's params or the scorer's defaults."""
    names = getattr(fn, "__schola_roles__", ())
    if not names:
        return []
    try:
        defaults = {k: p.default for k, p in inspect.signature(fn).parameters.items()}
    except (TypeError, ValueError):
        defaults = {}
    out = []
    for p in names:
        value = params.get(p, defaults.get(p))
        if isinstance(value, str) and "{{" not in value:
            out.append(value)
    return out


def member_names(group: str, spec: Any) -> list[str]:
    """The role names of a group under `scenario.roles`, as the engine, the viewer and a stage all name them: a
    group of one (a mapping) is its member's `name` or the group's own (`teacher`); each member of a list is its
    `name` or `group.i` (`students.0`)."""
    many = isinstance(spec, list)
    names = []
    for i, member in enumerate(spec if many else [spec]):
        name = member.get("name") if isinstance(member, Mapping) else None
        names.append(str(name) if name else f"{group}.{i}" if many else group)
    return names
