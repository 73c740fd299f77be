"""Plan building: a composed config turned into checked parts — backends, roles, scenario plugin, data and graphs —
before any model call. Every problem is a ConfigError naming the file and key."""

from __future__ import annotations

import inspect
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from schola import findings, plugins
from schola.data import check_size
from schola.errors import ConfigError
from schola.graph import GLOBALS, Graph
from schola.roles import Role, RoleConfig, check_role_class
from schola.scenario import GENERIC, Scenario, member_names, roles_used_by
from schola.schema import Config, Files, validate, validation_error

MAX_ROLES = 100_000
# Episodes in flight when run.concurrency is null: enough for every slot of the backends a role uses, but no more
# than 256: past that the event loop only interleaves more coroutines (1,024 scripted episodes in flight ran 15-20%
# slower than 64 and showed the first result late); an episode usually holds several calls, so 256 fills servers.
MIN_AUTO_CONCURRENCY, MAX_AUTO_CONCURRENCY = 8, 256


@dataclass
class Plan:
    """A validated run, ready to start: nothing here has called a model."""

    config: Config
    raw: dict[str, Any]
    files: Files
    scenario: Scenario
    data: BaseModel
    params: BaseModel
    #: Each backend's client (a class, or a `plugins.Client` imported when the run builds it) and validated config.
    backends: dict[str, tuple[Callable[..., Any], Any]] = field(default_factory=dict)
    roles: dict[str, tuple[type[Role], RoleConfig]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    graph: Graph | None = None
    graphs: dict[str, Graph] = field(default_factory=dict)
    #: The loader's episodes: a list, or a sequence read again as it is used (a JSONL file's `FileRecords`), so a
    #: run of a million episodes need not hold them.
    episodes: Sequence[dict[str, Any]] = field(default_factory=list)
    #: Episodes in flight: run.concurrency, or (null) enough to fill every backend a role uses. Derived values live
    #: here; the validated config stays as the user gave it.
    concurrency: int = 1
    #: The loader took `episodes` (run.episodes) and sized the run itself: every episode it gave runs.
    sized_by_loader: bool = False

    @property
    def selected(self) -> Sequence[dict[str, Any]]:
        """The episodes this run runs: the first `run.episodes`, or all; all when the loader sized them itself."""
        n = None if self.sized_by_loader else self.config.run.episodes
        return self.episodes[:n] if n else self.episodes

    def find_scorer(self, name: str) -> Callable[..., Any]:
        found: Callable[..., Any] = find_scorer(self.scenario, name)
        return found

    def find_stage(self, name: str) -> Callable[..., Any]:
        found: Callable[..., Any] = find_stage(self.scenario, name)
        return found

    def graph_named(self, name: str | None) -> Graph:
        if name is None:
            assert self.graph is not None
            return self.graph
        if name not in self.graphs:
            known = ", ".join(self.graphs) or "none"
            raise ConfigError(f"run_episodes(graph='{name}'): no such graph under scenario.graphs (has: {known})")
        return self.graphs[name]


def _own(scenario: Scenario, kind: str, name: str) -> Any:
    prefix, _, rest = name.partition(".")
    own: dict[str, Any] = getattr(scenario, kind)
    return own.get(rest) if rest and prefix == scenario.name else None


def find_scorer(scenario: Scenario, name: str, *, key: str | None = None, file: str | None = None) -> Any:
    """`<scenario>.<scorer>` from the scenario plugin, else a registered scorer."""
    found: Callable[..., Any] = _own(scenario, "scorers", name) or plugins.scorers.get(name, key=key, file=file)
    return found


def find_stage(scenario: Scenario, name: str, *, key: str | None = None, file: str | None = None) -> Any:
    """`<scenario>.<stage>` from the scenario plugin, else a generic stage (schola.stages entry points)."""
    found = _own(scenario, "stages", name)
    if found is not None:
        return found
    if _own(scenario, "scorers", name) is not None or name in plugins.scorers.names():
        raise ConfigError(f"'{name}' is a scorer, not a stage: use it in a score step of the graph", key=key, file=file)
    return plugins.stages.get(name, key=key, file=file)


def check_variant(scenario: dict[str, Any], files: Files) -> None:
    """The selected variant exists, and only sets keys a variant may set (composition merged it already)."""
    variants = scenario.get("variants") or {}
    variant = scenario.get("variant")
    if not isinstance(variants, dict) or not variants or variant is None:
        return
    if not isinstance(variant, str) or variant not in variants:
        raise ConfigError(
            f"unknown variant '{variant}'; the scenario has: {', '.join(map(str, variants))}",
            key="scenario.variant",
            file=files.scenario,
        )
    for name, over in variants.items():
        if not isinstance(over, dict):
            raise ConfigError(
                "expected a mapping of scenario keys", key=f"scenario.variants.{name}", file=files.scenario
            )
        for forbidden in ("name", "kind", "variant", "variants", "source"):
            if forbidden in over:
                raise ConfigError(f"a variant cannot set '{forbidden}'", key=f"scenario.variants.{name}.{forbidden}",
                                  file=files.scenario)  # fmt: skip


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
    if not isinstance(raw, dict) or not isinstance(raw.get("scenario"), dict):
        raise ConfigError("expected a mapping with a scenario: section", key="scenario", file=files.scenario)
    check_variant(raw["scenario"], files)
    cfg = validate(Config, raw, "", files)
    sc = cfg.scenario
    f_sc = files.scenario
    scenario = plugins.scenarios.get(sc.kind, key="scenario.kind", file=f_sc) if sc.kind else GENERIC
    data = validate(scenario.data, sc.data, "scenario.data", files)
    params = validate(scenario.params, sc.params, "scenario.params", files)
    plan = Plan(config=cfg, raw=raw, files=files, scenario=scenario, data=data, params=params)
    _backends(plan, cfg, files)
    _roles(plan, files)
    used = {role_config.backend for _, role_config in plan.roles.values()}
    slots = sum(plan.backends[b][1].max_concurrency for b in used if b in plan.backends)
    plan.concurrency = cfg.run.concurrency or max(MIN_AUTO_CONCURRENCY, min(MAX_AUTO_CONCURRENCY, slots))
    # a loader with an `episodes` parameter is given run.episodes and sizes the run itself (tom_teaching: the
    # test items, beside the train pool that every run needs); others are cut to the first run.episodes
    plan.sized_by_loader = "episodes" in inspect.signature(scenario.load).parameters
    sized = {"episodes": cfg.run.episodes} if plan.sized_by_loader else {}
    try:
        plan.episodes = scenario.load(data, params=params, seed=cfg.seed, source=sc.source, **sized)
    except ConfigError as e:
        raise ConfigError(e.detail, key=e.key or "scenario.data", file=e.file or f_sc) from None
    if not plan.episodes:
        raise ConfigError("the data has no episodes", key="scenario.data", file=f_sc)
    if not plan.sized_by_loader:
        check_size(cfg.run.episodes, len(plan.episodes), key="run.episodes", what="episodes in the data")
    fields = _check_episodes(plan.episodes, files)  # one pass: ids unique, and how many records have each field
    if not sc.graph:
        raise ConfigError("expected a list of steps (agent, map, join, score, route)", key="scenario.graph", file=f_sc)
    init = set(sc.init)
    for name in init & GLOBALS:
        raise ConfigError(f"'{name}' is a name every template sees; init cannot set it", key=f"scenario.init.{name}",
                          file=f_sc)  # fmt: skip
    scorers = set(plugins.scorers.names()) | {f"{scenario.name}.{k}" for k in scenario.scorers}
    roles = set(plan.roles)
    plan.graph = Graph(sc.graph, file=f_sc)
    plan.graph.check(known=set(fields) | init, roles=roles, scorers=scorers)
    _check_reads(plan.graph, plan.episodes, fields, init, files)
    for name, spec in sc.graphs.items():
        g = Graph(spec.steps, where=f"scenario.graphs.{name}.steps", file=f_sc)
        g.check(known=set(spec.inputs) | init, roles=roles, scorers=scorers)
        plan.graphs[name] = g
    for g in [plan.graph, *plan.graphs.values()]:
        _check_scorer_roles(plan, g)
    for i, st in enumerate(sc.stages):
        fn = find_stage(scenario, st.fn, key=f"scenario.stages[{i}].fn", file=f_sc)
        args = set(st.model_extra or {}) - (set() if stage_takes_labels(fn) else {"labels"})
        plugins.check_arguments(fn, f"stage '{st.fn}'", args, ctx=True, key=f"scenario.stages[{i}]", file=f_sc)
    findings.check_plan(plan)
    return plan


def _backends(plan: Plan, cfg: Config, files: Files) -> None:
    """`default` is `backend`; more by name under `backends`. A scenario's scripted rules are the rules of every
    scripted backend that brings no replies of its own (no rules, default or transcript set)."""
    for name, bcfg in {"default": cfg.backend, **cfg.backends}.items():
        key = "backend" if name == "default" else f"backends.{name}"
        kind = bcfg.get("kind") if isinstance(bcfg, dict) else None
        if not isinstance(kind, str) or not kind:
            raise ConfigError("expected kind: embedded, openai, litellm, vllm, scripted, autogen, transformers or a plugin's",
                              key=f"{key}.kind", file=files.for_key(key))  # fmt: skip
        backend = plugins.backend(kind, key=f"{key}.kind", file=files.for_key(key))
        own = bcfg.get("rules") or bcfg.get("transcript") or bcfg.get("default", "{{ prompt }}") != "{{ prompt }}"
        if kind == "scripted" and cfg.scenario.scripted and not own:
            bcfg = {**bcfg, "rules": list(cfg.scenario.scripted)}
        plan.backends[name] = (backend.client, validate(backend.config, bcfg, key, files))


def _roles(plan: Plan, files: Files) -> None:
    """A list under roles makes a group whose members are <group>.<i> (or their `name`)."""
    f_sc = files.scenario
    count = sum(len(s) if isinstance(s, list) else 1 for s in plan.config.scenario.roles.values())
    if count > MAX_ROLES:
        raise ConfigError(f"{count} roles; at most {MAX_ROLES}", key="scenario.roles", file=f_sc)
    for group, spec in plan.config.scenario.roles.items():
        members = spec if isinstance(spec, list) else [spec]
        names = member_names(group, spec)
        for i, rcfg in enumerate(members):
            key = f"scenario.roles.{group}" + (f"[{i}]" if isinstance(spec, list) else "")
            kind = rcfg.get("role")
            if not isinstance(kind, str):
                raise ConfigError("expected role: teacher, student, judge, ... or a plugin's role (a name)",
                                  key=f"{key}.role", file=f_sc)  # fmt: skip
            cls = plugins.roles.get(kind, key=f"{key}.role", file=f_sc)
            role_config = validate(cls.Config, rcfg, key, files)
            check_role_class(cls, role_config, key=key, file=f_sc)
            if role_config.backend is not None and role_config.backend not in plan.backends:
                raise ConfigError(
                    f"unknown backend '{role_config.backend}'; defined: {', '.join(plan.backends)} "
                    f"(add one with +backends.{role_config.backend}={{kind: ..., ...}})",
                    key=f"{key}.backend",
                    file=f_sc,
                )
            name = names[i]
            if name in plan.roles or (name in plan.groups and name != group):
                raise ConfigError(f"role name '{name}' is used twice", key=key, file=f_sc)
            plan.roles[name] = (cls, role_config)
        plan.groups[group] = names


def _check_episodes(episodes: Sequence[dict[str, Any]], files: Files) -> dict[str, int]:
    """Episode ids are unique and no data field shadows a name every template sees; returns each data field with
    the number of records that have it. One pass holding 8 bytes an episode (its id's hash), so a sequence that is
    read again as it is used (a JSONL file's) is never held; ids that share a hash are compared in a second pass."""
    hashes = array("q")
    fields: dict[str, int] = {}
    for i, e in enumerate(episodes):
        if not isinstance(e, dict) or "id" not in e:
            raise ConfigError(f"episode {i} is not a record with an id", key="scenario.data", file=files.scenario)
        hashes.append(hash(str(e["id"])))
        for k in e:
            fields[k] = fields.get(k, 0) + 1
    if _repeats(hashes):
        _duplicate_id(episodes, files)
    shadow = sorted((set(fields) - {"id"}) & GLOBALS)
    if shadow:
        raise ConfigError(
            f"data field(s) {', '.join(shadow)} would hide the template globals of the same name "
            f"({', '.join(sorted(GLOBALS))}); rename them with data.fields",
            key="scenario.data",
            file=files.scenario,
        )
    return fields


def _repeats(hashes: array[int]) -> bool:
    """Whether a hash comes twice (sorted: 8 bytes an id, not a set of ids; numpy only for a large run)."""
    if len(hashes) < 4096:
        return len(set(hashes)) != len(hashes)
    import numpy as np

    ordered = np.frombuffer(hashes, dtype=np.int64)
    ordered.sort()  # in place: the hashes are not needed in their order
    return bool((ordered[1:] == ordered[:-1]).any())


def _duplicate_id(episodes: Sequence[dict[str, Any]], files: Files) -> None:
    """The first id that comes twice, named with both records (only on error: it holds the ids)."""
    seen: dict[str, int] = {}
    for i, e in enumerate(episodes):
        eid = str(e["id"])
        if eid in seen:
            raise ConfigError(
                f"duplicate episode id '{eid}' (records {seen[eid]} and {i}); ids must be unique "
                "(set data.id_field to a unique column, or give each record its own id)",
                key="scenario.data",
                file=files.scenario,
            )
        seen[eid] = i


def _check_reads(
    graph: Graph, episodes: Sequence[dict[str, Any]], fields: dict[str, int], init: set[str], files: Files
) -> None:
    """Every data field the graph reads is in every record, not only in some (from the counts of one pass; the
    record that lacks it is looked for only on error)."""
    wanted = graph.reads() & (set(fields) - init)
    if not any(fields[f] < len(episodes) for f in wanted):
        return
    for i, e in enumerate(episodes):
        if missing := wanted - e.keys():
            raise ConfigError(
                f"record {i} (episode '{e['id']}') has no field '{sorted(missing)[0]}', which the graph reads",
                key="scenario.data",
                file=files.scenario,
            )


def _check_scorer_roles(plan: Plan, graph: Graph) -> None:
    """Every score step gives its scorer the arguments it needs and no others, and a scorer that asks roles
    (llm_judge's judge) finds them in the scenario."""
    for key, node in graph.score_steps():
        fn = find_scorer(plan.scenario, node.scorer)
        if clash := set(node.inputs) & set(node.params):
            raise ConfigError(
                f"'{sorted(clash)[0]}' is given both as an input and a param", key=key, file=plan.files.scenario
            )
        given = set(node.inputs) | set(node.params)
        what = f"scorer '{node.scorer}'"
        plugins.check_arguments(fn, what, given, ctx=wants_context(fn), key=key, file=plan.files.scenario)
        if (check_params := getattr(fn, "__schola_check__", None)) is not None:  # e.g. the regex scorer's pattern
            try:
                check_params(node.params)
            except ConfigError as e:
                raise ConfigError(e.detail, key=f"{key}.params", file=plan.files.scenario) from None
        for role in roles_used_by(fn, node.params):
            if role not in plan.roles:
                raise ConfigError(
                    f"scorer '{node.scorer}' asks role '{role}', which the scenario does not have "
                    f"(add it under scenario.roles, or set params to another role: {', '.join(sorted(plan.roles))})",
                    key=key,
                    file=plan.files.scenario,
                )


def stage_takes_labels(fn: Callable[..., Any]) -> bool:
    """Whether a stage takes `labels:` itself (else the run takes them and adds them to the stage's rows)."""
    try:
        return "labels" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def wants_context(fn: Callable[..., Any]) -> bool:
    """Scorers and stages with a `ctx` parameter get the episode (or run) context."""
    try:
        return "ctx" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


__all__ = ["Plan", "build_plan", "find_scorer", "find_stage", "validation_error", "wants_context"]
