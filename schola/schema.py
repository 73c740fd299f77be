"""The typed schema of a run's configuration: the one source of truth for every key (pydantic models validated
right after Hydra composes the config), and the translation of validation errors into ConfigErrors that name
the file, the key and what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schola.errors import ConfigError
from schola.findings import FindingConfig
from schola.graph import Node

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RayConfig(Strict):
    """run.executor=ray: where the Ray cluster is and how many workers run episodes (schola/executors.py)."""

    address: str | None = Field(
        None, description="auto, ray://host:10001, host:6379; null: $RAY_ADDRESS, else a local Ray of the run's own"
    )
    workers: int | None = Field(None, ge=1, le=100_000, description="Ray workers; null: one per cpus_per_worker CPUs")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each worker reserves")


class RunConfig(Strict):
    episodes: int | None = Field(None, ge=1, le=10_000_000, description="run the first N episodes; null: all")
    concurrency: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="episodes in flight (over every Ray worker together); null: enough to keep every backend's "
        "max_concurrency requests in flight (at least 8, at most 4,096)",
    )
    executor: Literal["local", "ray"] = Field("local", description="episodes in this process, or on Ray workers")
    ray: RayConfig = Field(default_factory=RayConfig)
    # 0 by default: failures are seldom random (an empty label, a field some rows lack), so metrics over the rest
    # would quietly measure another data set; the user decides to go on without them.
    max_failed: int | float = Field(
        0,
        ge=0,
        description="episodes that may fail (a count, or a fraction below 1 of the run's episodes) before the run stops",
    )
    until: Literal["all", "decided"] = Field(
        "all", description="all: every episode; decided: stop once every finding is decided (schola/findings.py)"
    )

    @field_validator("max_failed")
    @classmethod
    def _count_or_fraction(cls, v: int | float) -> int | float:
        if isinstance(v, float) and v >= 1:
            raise ValueError("expected a count (0, 1, 2, ...) or a fraction of the episodes below 1 (0.05)")
        return v

    @field_validator("executor")
    @classmethod
    def _ray_installed(cls, v: str) -> str:  # found before a run directory is written
        import importlib.util

        if v == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError("run.executor=ray needs Ray: pip install 'schola[ray]' (or set run.executor=local)")
        return v


class BudgetConfig(Strict):
    """Limits for the whole run, across every resume of it."""

    max_tokens: int | None = Field(None, ge=1, description="stop (exit 4) once the run used this many tokens")
    max_cost_usd: float | None = Field(None, gt=0, description="stop (exit 4) once the run cost this many dollars")
    max_requests: int | None = Field(None, ge=1, description="stop (exit 4) after this many model requests")


class CacheConfig(Strict):
    enabled: bool = Field(True, description="answer a request seen before from the response cache")
    dir: str | None = Field(None, description="the cache folder; null: $SCHOLA_CACHE_DIR or ~/.cache/schola")


class StageConfig(BaseModel):
    """A run-level stage: `fn` names it; every other key is a keyword argument."""

    model_config = ConfigDict(extra="allow")
    fn: str = Field(description="a generic stage (schola.stages entry point) or <scenario>.<stage>")


class GraphSpec(Strict):
    """A named graph for episodes a stage starts (`ctx.run_episodes(inputs, graph=NAME)`)."""

    inputs: list[str] = Field(default_factory=list, description="the fields those episodes carry")
    steps: list[Node]


class ScenarioConfig(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="letters, digits, _ - . (it names the run directory)")
    kind: str | None = Field(None, description="a registered scenario plugin; null: YAML only")
    variant: str | None = None
    description: str = ""
    caption: str = Field("", max_length=1000, description="a line under the results table: what the numbers mean")
    source: str | None = Field(None, description="the scenario's YAML file (set by the CLI)")
    data: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    roles: dict[str, dict[str, Any] | list[dict[str, Any]]] = Field(default_factory=dict)
    init: dict[str, Any] = Field(default_factory=dict, description="initial episode state (loop accumulators)")
    graph: list[Node] = Field(default_factory=list)
    graphs: dict[str, GraphSpec] = Field(default_factory=dict, description="more graphs, for stage-run episodes")
    stages: list[StageConfig] = Field(default_factory=list)
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="variant name -> scenario keys merged over these when selected"
    )
    scripted: list[dict[str, Any]] = Field(
        default_factory=list, description="rules the scripted backend uses for this scenario (its tests)"
    )
    findings: list[FindingConfig] = Field(
        default_factory=list, description="the paper's claims, measured with a verdict at the end of a run"
    )


class Config(Strict):
    seed: int = Field(0, ge=0, le=2**63 - 1, description="the run seed: data generators, sampling seeds, cache keys")
    resume: str | None = Field(None, description="a run directory to continue (its saved config, your changes)")
    run: RunConfig = Field(default_factory=RunConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    backend: dict[str, Any]
    backends: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="more named backends: +backends.strong={kind: litellm, model: ...}"
    )
    cache: CacheConfig = Field(default_factory=CacheConfig)
    scenario: ScenarioConfig


@dataclass
class Files:
    """Which file each top-level key came from, for error messages."""

    scenario: str = "conf/scenario/?.yaml"
    backend: str = "conf/backend/?.yaml"
    config: str = "conf/config.yaml"
    given: frozenset[str] = frozenset()  # keys typed on the command line: their errors name it

    def for_key(self, key: str | None) -> str:
        k = (key or "").replace("[", ".").replace("]", "")
        if any(k == g or k.startswith(g + ".") or g.startswith(k + ".") for g in self.given):
            return "command line"
        head = k.split(".")[0]
        return {"scenario": self.scenario, "backend": self.backend}.get(head, self.config)

    @classmethod
    def from_choices(
        cls, choices: dict[str, Any], scenario_file: str | None, given: frozenset[str] = frozenset()
    ) -> Files:
        """Files of a composition: the scenario's YAML (a built-in's shown as conf/scenario/NAME.yaml); keys in
        `given` were typed on the command line."""
        builtin = f"conf/scenario/{choices.get('scenario')}.yaml"
        shown = (
            builtin
            if scenario_file
            and scenario_file.replace("\\", "/").endswith("schola/conf/scenario/" + builtin.split("/")[-1])
            else scenario_file
        )
        keys = frozenset(g for g in given if g not in ("backend", "scenario") and not g.startswith("hydra"))
        return cls(scenario=shown or builtin, backend=f"conf/backend/{choices.get('backend')}.yaml", given=keys)

    @classmethod
    def of_saved(cls, path: str, scenario_source: str | None) -> Files:
        """Errors in a run's saved config name that file (or the scenario's own file where it still exists)."""
        return cls(scenario=scenario_source or path, backend=path, config=path)


STEP_KINDS = {"agent", "map", "join", "score", "route"}


def _models(annotation: Any) -> set[type[BaseModel]]:
    """The pydantic models an annotation holds (`X`, `X | None`, `dict[str, X]`, `list[X]`, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    return {m for a in get_args(annotation) for m in _models(a)}


def close_key(model: type[BaseModel], loc: Sequence[Any]) -> str | None:
    """For an unknown key at `loc` (below `model`), the key the user probably meant: the nearest spelling among
    the fields beside it (a dict's own keys and list indices are passed over)."""
    models: set[type[BaseModel]] = {model}
    for part in loc[:-1]:
        inner = {m for c in models if isinstance(part, str) and part in c.model_fields
                 for m in _models(c.model_fields[part].annotation)}  # fmt: skip
        models = inner or models
    return difflib_near(str(loc[-1]), {f for m in models for f in m.model_fields}) if loc else None


def unknown_key(key: str, model: type[BaseModel] | None, loc: Sequence[Any]) -> str:
    """'unknown key X; did you mean Y?' when a field is spelled nearly so."""
    near = close_key(model, loc) if model is not None and loc else None
    if near is None:
        return "unknown key (check the spelling; see `schola check` and the README for the keys)"
    return f"unknown key {key}; did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{near}?"


def suggest_key(key: str) -> str:
    """What to say of a key typed on the command line that the config does not have: the nearest key Schola
    knows (a backend's keys are those of every backend kind), or how to add a new one."""
    from schola import plugins

    parts = key.split(".")
    if parts[0] in ("backend", "backends") and len(parts) > (1 if parts[0] == "backend" else 2):
        fields = {f for name in plugins.backends.names() for f in plugins.backend(name).config.model_fields}
        cut = 1 if parts[0] == "backend" else 2
        near = difflib_near(parts[-1], fields) if len(parts) == cut + 1 else None
        hint = f"did you mean {'.'.join(parts[:-1])}.{near}?" if near else None
    else:
        hint = unknown_key(key, Config, parts).partition("; ")[2] or None
    return f"unknown key {key}; {hint or f'a key the config does not have needs +{key}=VALUE, and the schema must allow it'}"


def difflib_near(word: str, choices: Any) -> str | None:
    import difflib

    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.7)
    return match[0] if match else None


def validation_error(
    e: ValidationError, *, prefix: str, files: Files, model: type[BaseModel] | None = None
) -> ConfigError:
    """The first problem of a pydantic error as a ConfigError naming file, key and what was expected."""
    err = e.errors()[0]
    loc = prefix
    for part in err["loc"]:
        if isinstance(part, int):
            loc += f"[{part}]"
        elif not (isinstance(part, str) and part in STEP_KINDS and loc.endswith("]")):
            loc += ("." if loc else "") + str(part)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = unknown_key(loc, model, err["loc"])
    elif err["type"] == "union_tag_invalid":
        msg = f"unknown step kind {err.get('input', {}).get('kind')!r}; expected agent, map, join, score or route"
    elif "input" in err and not isinstance(err["input"], (dict, list)) and not _secret(loc, err["input"]):
        shown = repr(err["input"])
        msg += f" (got {shown[:80]}{'...' if len(shown) > 80 else ''})"
    more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return ConfigError(msg + more, key=loc, file=files.for_key(loc))


def _secret(key: str, value: Any) -> bool:
    from schola.secrets import SECRET_KEY, looks_like_key

    return bool(SECRET_KEY.search(key.split(".")[-1])) or (isinstance(value, str) and looks_like_key(value))


def validate(model: type[BaseModel], value: Any, key: str, files: Files) -> Any:
    """`model` validated from `value`, or a ConfigError naming `key` in its file."""
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise validation_error(e, prefix=key, files=files, model=model) from None


def config_keys(model: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default as it is typed, description) of every field of a schema model, nested ones flat."""
    import json

    rows = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            rows += config_keys(kind, f"{prefix}{name}.")
            continue
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        shown = "(required)" if field.is_required() else default if isinstance(default, str) else json.dumps(default)
        rows.append((prefix + name, shown, field.description or ""))
    return rows
