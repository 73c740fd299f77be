"""Configuration: Hydra composes it, pydantic validates it right after (the one source of truth for every key),
and `build_plan` turns it into checked parts — backends, roles, scenario plugin, data and graph — before any
model call. Every problem is a ConfigError naming the file and key."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schola import plugins
from schola.errors import ConfigError
from schola.graph import Graph, Node
from schola.roles import Role, RoleConfig
from schola.scenario import GENERIC, Scenario



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunConfig(_Strict):
    episodes: int | None = Field(None, ge=1, description="run the first N episodes; null: all")
    concurrency: int = Field(8, ge=1, description="episodes in flight")


class BudgetConfig(_Strict):
    max_tokens: int | None = Field(None, ge=1)
    max_cost_usd: float | None = Field(None, gt=0)
    max_requests: int | None = Field(None, ge=1)


class CacheConfig(_Strict):
    enabled: bool = True
    dir: str | None = Field(None, description="null: $SCHOLA_CACHE_DIR or ~/.cache/schola")


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    fn: str = Field(description="a stage: <scenario>.<name>, or a registered scorer")


class ScenarioConfig(_Strict):
    name: str
    kind: str | None = Field(None, description="a registered scenario plugin; null: YAML only")
    variant: str | None = None
    description: str = ""
    source: str | None = Field(None, description="the scenario's YAML file (set by the CLI)")
    data: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    roles: dict[str, dict[str, Any] | list[dict[str, Any]]] = Field(default_factory=dict)
    graph: list[Node] = Field(default_factory=list)
    stages: list[StageConfig] = Field(default_factory=list)


class Config(_Strict):
    seed: int = 0
    resume: str | None = None
    run: RunConfig = Field(default_factory=RunConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    backend: dict[str, Any]
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    scenario: ScenarioConfig


# Only these may differ between a run and its resume.
RESUMABLE = ("budget", "run.concurrency", "resume", "backend.base_url", "cache")


@dataclass
class Files:
    """Which file each top-level key came from, for error messages."""

    scenario: str = "conf/scenario/?.yaml"
    backend: str = "conf/backend/?.yaml"
    config: str = "conf/config.yaml"

    def for_key(self, key: str | None) -> str:
        head = (key or "").split(".")[0].split("[")[0]
        return {"scenario": self.scenario, "backend": self.backend}.get(head, self.config)

    @classmethod
    def from_choices(cls, choices: dict[str, Any], scenario_source: str | None) -> Files:
        return cls(
            scenario=scenario_source or f"conf/scenario/{choices.get('scenario')}.yaml",
            backend=f"conf/backend/{choices.get('backend')}.yaml",
        )


def validation_error(e: ValidationError, *, prefix: str, files: Files) -> ConfigError:
    """The first problem of a pydantic error as a ConfigError naming file, key and what was expected."""
    err = e.errors()[0]
    loc = prefix
    for part in err["loc"]:
        if isinstance(part, int):
            loc += f"[{part}]"
        elif not (isinstance(part, str) and part in {"agent", "map", "join", "score", "route"} and loc.endswith("]")):
            loc += ("." if loc else "") + str(part)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; see `schola check` and the README for the keys)"
    elif err["type"] == "union_tag_invalid":
        msg = f"unknown step kind {err.get('input', {}).get('kind')!r}; expected agent, map, join, score or route"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return ConfigError(msg + more, key=loc, file=files.for_key(loc))


@dataclass
class Plan:
    """A validated run, ready to start: nothing here has called a model."""

    config: Config
    raw: dict[str, Any]
    files: Files
    scenario: Scenario
    data: BaseModel
    params: BaseModel
    backends: dict[str, tuple[type, Any]] = field(default_factory=dict)
    roles: dict[str, tuple[type[Role], RoleConfig]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    graph: Graph | None = None
    episodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def selected(self) -> list[dict[str, Any]]:
        """The episodes this run runs: the first `run.episodes`, or all."""
        return self.episodes[: self.config.run.episodes] if self.config.run.episodes else self.episodes

    def find_scorer(self, name: str) -> Any:
        return find(self.scenario, "scorers", name)

    def find_stage(self, name: str) -> Any:
        return find(self.scenario, "stages", name)


def find(scenario: Scenario, kind: str, name: str, *, key: str | None = None) -> Any:
    """`<scenario>.<fn>` from the scenario plugin, else a registered scorer."""
    own = getattr(scenario, kind)
    prefix, _, rest = name.partition(".")
    if rest and prefix == scenario.name and rest in own:
        return own[rest]
    return plugins.scorers.get(name, key=key)


def build_plan(raw: dict[str, Any], files: Files) -> Plan:
    """Validate a composed config and everything it names (plugins, graph, data) without calling a model.
    Every error names the file its key came from."""
    try:
        return _build_plan(raw, files)
    except ConfigError as e:
        if e.file is not None:
            raise
        raise ConfigError(e.detail, key=e.key, file=files.for_key(e.key)) from None


def _build_plan(raw: dict[str, Any], files: Files) -> Plan:
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise validation_error(e, prefix="", files=files) from None
    sc = cfg.scenario
    f_sc = files.scenario
    scenario = plugins.scenarios.get(sc.kind, key="scenario.kind", file=f_sc) if sc.kind else GENERIC
    data = _validate(scenario.data, sc.data, "scenario.data", files)
    params = _validate(scenario.params, sc.params, "scenario.params", files)

    plan = Plan(config=cfg, raw=raw, files=files, scenario=scenario, data=data, params=params)
    # Backends: `default` is `backend`; more by name under `backends`.
    for name, bcfg in {"default": cfg.backend, **cfg.backends}.items():
        key = "backend" if name == "default" else f"backends.{name}"
        kind = bcfg.get("kind")
        if not kind:
            raise ConfigError("expected kind: embedded, litellm, vllm, scripted or autogen", key=f"{key}.kind", file=files.for_key(key))
        cls = plugins.backends.get(kind, key=f"{key}.kind", file=files.for_key(key))
        plan.backends[name] = (cls, _validate(cls.Config, bcfg, key, files))
    # Roles: a list makes a group whose members are named <group>.<i> (or their `name`).
    for group, spec in sc.roles.items():
        members = spec if isinstance(spec, list) else [spec]
        names = []
        for i, rcfg in enumerate(members):
            key = f"scenario.roles.{group}" + (f"[{i}]" if isinstance(spec, list) else "")
            if "role" not in rcfg:
                raise ConfigError("expected role: teacher, student, judge or a plugin's role", key=f"{key}.role", file=f_sc)
            cls = plugins.roles.get(rcfg["role"], key=f"{key}.role", file=f_sc)
            rc = _validate(cls.Config, rcfg, key, files)
            if rc.backend is not None and rc.backend not in plan.backends:
                raise ConfigError(
                    f"unknown backend '{rc.backend}'; defined: {', '.join(plan.backends)} "
                    f"(add one with +backends.{rc.backend}={{kind: ..., ...}})",
                    key=f"{key}.backend",
                    file=f_sc,
                )
            name = rc.name or (f"{group}.{i}" if isinstance(spec, list) else group)
            plan.roles[name] = (cls, rc)
            names.append(name)
        plan.groups[group] = names
    # Data and graph.
    try:
        plan.episodes = scenario.load(data, params=params, seed=cfg.seed, source=sc.source)
    except ConfigError as e:
        raise ConfigError(e.detail, key=e.key or "scenario.data", file=e.file or f_sc) from None
    if not plan.episodes:
        raise ConfigError("the data has no episodes", key="scenario.data", file=f_sc)
    if not sc.graph:
        raise ConfigError("expected a list of steps (agent, map, join, score, route)", key="scenario.graph", file=f_sc)
    plan.graph = Graph(sc.graph, file=f_sc)
    known_scorers = set(plugins.scorers.names()) | {f"{scenario.name}.{k}" for k in scenario.scorers}
    fields = set().union(*(e.keys() for e in plan.episodes[:50]))
    plan.graph.check(known=fields, roles=set(plan.roles), scorers=known_scorers)
    for i, st in enumerate(sc.stages):
        find(scenario, "stages", st.fn, key=f"scenario.stages[{i}].fn")
    return plan


def _validate(model: type[BaseModel], value: Any, key: str, files: Files) -> BaseModel:
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise validation_error(e, prefix=key, files=files) from None


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: d}


def check_resume(saved: dict[str, Any], plan: Plan, finished: list[dict[str, Any]], *, run_dir: str) -> None:
    """A resumed run must be the same experiment: only budget, concurrency and endpoints may change, and the
    finished episodes must have the inputs the data gives them now."""
    a, b = flatten(saved), flatten(plan.raw)

    def free(k: str) -> bool:
        return k.startswith(RESUMABLE) or k.endswith(".base_url") or k == "scenario.source"

    diff = sorted(k for k in set(a) | set(b) if not free(k) and a.get(k) != b.get(k) and a.get(k) != "***")
    if diff:
        shown = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:5])
        raise ConfigError(
            f"cannot resume {run_dir} with a different configuration ({shown}); "
            "only budget.*, run.concurrency and endpoints may change",
            key=diff[0],
        )
    current = {str(e["id"]): e for e in plan.episodes}
    for r in finished:
        if json.loads(json.dumps(current.get(r["episode"]), default=str)) != r["inputs"]:
            raise ConfigError(
                f"episode '{r['episode']}' of {run_dir} was run on other data than scenario.data gives now; "
                "resume needs the same data (start a new run instead)",
                key="scenario.data",
            )


# -- Hydra composition -------------------------------------------------------------------------
class ScenarioFile:
    """A user's scenario YAML outside the package, made a `scenario` option: a temporary config folder holds a
    link to it as scenario/<stem>.yaml, and both that folder and the file's own join Hydra's search path."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise ConfigError(f"no such scenario file: {path}")
        try:
            body = yaml.safe_load(self.path.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"malformed YAML{where}: {getattr(e, 'problem', e)}", file=str(self.path)) from None
        if not isinstance(body, dict):
            raise ConfigError("expected a mapping (name:, roles:, graph:, ...)", file=str(self.path))
        self.name = self.path.stem
        self.tmp = Path(tempfile.mkdtemp(prefix="schola-conf-"))
        (self.tmp / "scenario").mkdir()
        (self.tmp / "scenario" / f"{self.name}.yaml").symlink_to(self.path)

    def overrides(self) -> list[str]:
        return [f"scenario={self.name}", f"++scenario.source={self.path}"]

    @property
    def search_paths(self) -> list[str]:
        return [str(self.tmp), str(self.path.parent)]

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def searchpath_override(dirs: list[str]) -> list[str]:
    if not dirs:
        return []
    return ["hydra.searchpath=[" + ",".join(f"file://{Path(d).resolve()}" for d in dirs) + "]"]


def compose(overrides: list[str], *, search_dirs: list[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compose the config as Hydra would for a run; returns (resolved config, group choices)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf, open_dict

    with hydra_errors():
        with initialize_config_module("schola.conf", version_base=None):
            cfg = hydra_compose("config", overrides=overrides + searchpath_override(list(search_dirs)), return_hydra_config=True)
            choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
            with open_dict(cfg):
                del cfg["hydra"]
            raw = OmegaConf.to_container(cfg, resolve=True)
    return raw, choices  # type: ignore[return-value]


class hydra_errors:
    """Turn Hydra's and OmegaConf's errors into ConfigErrors with a message a user can act on."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type | None, e: BaseException | None, tb: Any) -> bool:
        if e is None or isinstance(e, ConfigError):
            return False
        from hydra.errors import HydraException, MissingConfigException, OverrideParseException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(e, MissingConfigException):
            group = "scenario" if "scenario" in str(e) else "backend" if "backend" in str(e) else None
            options = sorted(p.name[:-5] for p in files("schola.conf").joinpath(group).iterdir() if p.name.endswith(".yaml")) if group else []
            hint = f"; available {group}s: {', '.join(options)}" if options else ""
            raise ConfigError(f"{str(e).splitlines()[0]}{hint}", key=group) from None
        if isinstance(e, OverrideParseException):
            raise ConfigError(f"bad override: {str(e).splitlines()[0]}", file="command line") from None
        if isinstance(e, (HydraException, OmegaConfBaseException)):
            cause = e.__cause__ or e.__context__
            msg = (str(e).strip() or f"{type(cause).__name__}: {cause}").splitlines()
            key = getattr(e, "full_key", None)
            text = " ".join(m.strip() for m in msg if m.strip() and not m.startswith("    "))[:400]
            if "Key '" in text and "is not in struct" in text or "Could not override" in text:
                text += " (keys not in the config need '+key=value')"
            raise ConfigError(text, key=key or None, file="command line") from None
        if isinstance(e, yaml.YAMLError):
            raise ConfigError(f"malformed YAML: {e}") from None
        return False
