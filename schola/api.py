"""The Python API: `schola.run(...)` from a script or a notebook, `await schola.arun(...)` from async code.

    import schola
    result = schola.run("lbt", ["backend=scripted", "run.episodes=2"])
    result.status, result.metric("accuracy", rule="SUM").value, result.to_pandas()

Both compose the config as the CLI does (one `RunSpec` through `schola.spec.open_run`), validate it, run it into a
run directory and return the `RunResult` the CLI reports too. A configuration problem raises ConfigError before
anything runs; a run that stops (budget, backend, interrupt) returns its result with that status, like the CLI's
exit code."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from schola.aio import run_sync
from schola.runtime import Progress, RunResult, arun_plan
from schola.spec import RunSpec, open_run

__all__ = ["RunResult", "arun", "run"]


async def arun(
    scenario: str | Path | None = None,
    overrides: str | Sequence[str] = (),
    *,
    config_dir: str | Path | Sequence[str | Path] = (),
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run a scenario in the running event loop.

    Args:
        scenario: a scenario name (`"lbt"`), a scenario YAML file, or None for the default.
        overrides: Hydra overrides, as on the command line (`["backend=scripted", "seed=1"]`; one may be a str).
        config_dir: more config folders (like `--config-dir`): a str, a Path or a list of them.
        run_dir: where to write the run (default: Hydra's `runs/<date>/<time>-<scenario>`).
        resume: a run directory to continue (then `overrides` may change only budget, concurrency, endpoints,
            and `scenario`, `config_dir` and `run_dir` must be left out: a ConfigError says so).
        progress: a callback(done, total, ledger) after each episode.
    """
    plan, store = open_run(RunSpec.of(scenario, overrides, config_dir=config_dir, run_dir=run_dir, resume=resume))
    return await arun_plan(plan, store, progress=progress)


def run(
    scenario: str | Path | None = None,
    overrides: str | Sequence[str] = (),
    *,
    config_dir: str | Path | Sequence[str | Path] = (),
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run a scenario and wait for it; works inside a running event loop (a notebook) too. See `arun`."""
    return run_sync(
        lambda: arun(scenario, overrides, config_dir=config_dir, run_dir=run_dir, resume=resume, progress=progress)
    )
