"""One run path. What a user asks for — a scenario, overrides, config folders, a run directory, or a run to
resume — is a `RunSpec`, built alike by the CLI, the Python API, each job of a sweep and resume; `plan_of` turns
it into a checked Plan (nothing written), `open_run` into the Plan and the RunStore it runs into."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schola.compose import YAML_SUFFIXES, Composition, compose, parse_overrides
from schola.errors import ConfigError

if TYPE_CHECKING:
    from schola.plan import Plan
    from schola.store import RunStore

PathLike = str | Path


@dataclass(frozen=True)
class RunSpec:
    """What to run.

    Attributes:
        scenario: a scenario name (`"lbt"`), a scenario YAML file, or None for conf/config.yaml's default.
        overrides: Hydra overrides, as typed on the command line (`backend=scripted`, `run.episodes=2`).
        config_dirs: more config folders (`--config-dir`).
        run_dir: where the run is written; None: Hydra's `runs/<date>/<time>-<scenario>`.
        resume: a run directory to continue from its saved config (then `overrides` may change only what
            `schola.resume` allows, and `scenario`, `config_dirs` and `run_dir` must be left out).
        job: a config Hydra already composed for this run (a sweep's job); the scenario is still resolved here.
    """

    scenario: str | None = None
    overrides: tuple[str, ...] = ()
    config_dirs: tuple[str, ...] = ()
    run_dir: str | None = None
    resume: str | None = None
    job: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        scenario: PathLike | None = None,
        overrides: str | Sequence[str] = (),
        *,
        config_dir: PathLike | Sequence[PathLike] = (),
        run_dir: PathLike | None = None,
        resume: PathLike | None = None,
    ) -> RunSpec:
        """A spec from the Python API's arguments: a str or Path where one is expected, a list where several are
        (`config_dir="conf"` is one folder; `overrides="seed=1"` one override); anything else is a ConfigError."""
        items = [overrides] if isinstance(overrides, str) else list(_sequence(overrides, "overrides"))
        for o in items:
            if not isinstance(o, str):
                raise ConfigError(f"overrides: expected strings like 'seed=1', got {o!r}", key="overrides")
        dirs = [config_dir] if isinstance(config_dir, (str, Path)) else list(_sequence(config_dir, "config_dir"))
        for d in dirs:
            if not isinstance(d, (str, Path)):
                raise ConfigError(f"config_dir: expected a folder (str or Path), got {d!r}", key="config_dir")
        for name, value in (("scenario", scenario), ("run_dir", run_dir), ("resume", resume)):
            if value is not None and not isinstance(value, (str, Path)):
                raise ConfigError(f"{name}: expected a str or Path, got {value!r}", key=name)
        spec = cls(
            scenario=None if scenario is None else str(scenario),
            config_dirs=tuple(str(d) for d in dirs),
            run_dir=None if run_dir is None else str(run_dir),
            resume=None if resume is None else str(resume),
        )
        return spec.with_args(items)

    @classmethod
    def from_args(cls, args: Sequence[str], config_dirs: Sequence[str] = ()) -> RunSpec:
        """A spec from the command line's words: `[SCENARIO.yaml] [KEY=VALUE ...]`."""
        return cls(config_dirs=tuple(config_dirs)).with_args(args)

    def with_args(self, args: Sequence[str]) -> RunSpec:
        """This spec with more words: a `.yaml`/`.yml` word that names a file (whatever characters its name holds)
        is the scenario; `scenario=NAME` chooses one; `resume=DIR` names the run to continue; every other word is
        an override, parsed by Hydra's own grammar (a bad one is a ConfigError naming the command line)."""
        scenario, resume, overrides = self.scenario, self.resume, list(self.overrides)
        chosen = None  # a scenario chosen by name (`scenario=lbt`): resuming may name the run's own again
        for a in args:
            if a.lower().endswith(YAML_SUFFIXES) and ("=" not in a or Path(a).is_file()) and scenario is None:
                scenario = a
            elif "=" not in a and not a.startswith(("+", "~")):
                raise ConfigError(
                    f"'{a}' is neither a scenario .yaml file nor a KEY=VALUE override", file="command line"
                )
            else:
                overrides.append(a)
        for o, parsed in zip(list(overrides), parse_overrides(overrides), strict=True):
            key = parsed.key_or_group
            if key == "scenario" and not parsed.is_sweep_override() and not parsed.is_delete():
                overrides.remove(o)
                scenario = chosen = str(parsed.value())
            elif key == "resume":
                overrides.remove(o)
                resume = str(parsed.value())
        run_dir = self.run_dir
        if resume is not None:  # what a resumed run would otherwise ignore must be what it uses, or left out
            if chosen is not None and scenario == chosen:
                scenario, overrides = None, [*overrides, f"scenario={chosen}"]  # `schola.resume` checks it is the same
            if run_dir is not None and Path(run_dir).resolve() == Path(resume).resolve():
                run_dir = None
            given = [n for n, v in (("config_dir", self.config_dirs), ("run_dir", run_dir)) if v]
            if given:
                raise ConfigError(
                    f"resume= continues {resume} from its saved config, in place: leave out {' and '.join(given)}",
                    key="resume",
                )
        return RunSpec(scenario, tuple(overrides), self.config_dirs, run_dir, resume, self.job)

    @property
    def scenario_file(self) -> str | None:
        """The scenario as a YAML file, when it is one (else it is a name, or the default)."""
        s = self.scenario
        return s if s is not None and (s.lower().endswith(YAML_SUFFIXES) or Path(s).is_file()) else None

    def composition(self) -> Composition:
        file = self.scenario_file
        choice = [] if file is not None or self.scenario is None else [f"scenario={self.scenario}"]
        return Composition([*choice, *self.overrides], list(self.config_dirs), file)


def _sequence(value: Any, name: str) -> Sequence[Any]:
    if isinstance(value, (list, tuple)):
        return value
    raise ConfigError(f"{name}: expected a list, got {type(value).__name__}", key=name)


def plan_of(spec: RunSpec) -> tuple[Plan, str]:
    """The checked plan of a spec and the run directory it would write to; no model is called, nothing written."""
    from schola.plan import build_plan
    from schola.resume import saved_config
    from schola.schema import Files

    if spec.resume is not None:
        raw, files = saved_config(spec.resume, list(spec.overrides))
        source = raw["scenario"].get("source")
        if spec.scenario is not None and not (source and Path(spec.scenario).resolve() == Path(source).resolve()):
            raise ConfigError(
                f"resume= continues {spec.resume} with the scenario it was run with ({source or raw['scenario'].get('name')}); "
                f"leave out {spec.scenario}, or start a new run for another scenario",
                key="resume",
            )
        return build_plan(raw, files), spec.resume
    composition = spec.composition()
    given = frozenset(o.key_or_group for o in parse_overrides(list(spec.overrides)))
    if spec.job is not None:  # a sweep's job: Hydra composed the rest; the scenario is resolved by the composition
        raw, choices, run_dir = composed_job(spec.job, composition, spec.overrides)
    else:
        raw, choices, run_dir = compose(composition)
    files = Files.from_choices(choices, composition.file, given=given)
    return build_plan(raw, files), spec.run_dir or run_dir


def composed_job(
    cfg: Any, composition: Composition, overrides: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(config, group choices, run directory) of a sweep's job, from the config Hydra composed for it."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from schola.compose import hydra_errors

    hc = HydraConfig.get()
    with hydra_errors():  # the scenario is never resolved by Hydra: no resolver may run on it
        rest = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "scenario"])
        raw: dict[str, Any] = OmegaConf.to_container(rest, resolve=True)  # type: ignore[assignment]
    raw["scenario"] = composition.scenario(list(overrides))
    return raw, {**dict(hc.runtime.choices), "scenario": composition.option}, str(hc.runtime.output_dir)


def open_run(spec: RunSpec) -> tuple[Plan, RunStore]:
    """The plan of a spec and its run store, checked and ready: see `schola.runtime.prepare`."""
    from schola.runtime import prepare

    plan, run_dir = plan_of(spec)
    return prepare(plan.raw, run_dir, plan.files, plan=plan)
