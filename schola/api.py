"""The Python API: `schola.run(...)` from a script or a notebook, `await schola.arun(...)` from async code.

    import schola
    result = schola.run("lbt", ["backend=scripted", "run.episodes=2"])
    result.status, result.metric("accuracy", rule="SUM").value, result.to_pandas()

Both compose the config as the CLI does (Hydra), validate it, run it into a run directory and return a
`RunResult`. A configuration problem raises ConfigError before anything runs; a run that stops (budget, backend,
interrupt) returns its result with that status, like the CLI's exit code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schola.aio import run_sync
from schola.metrics import MetricRow
from schola.store import read_jsonl

if TYPE_CHECKING:
    import pandas

    from schola.runtime import Progress


@dataclass
class RunResult:
    """A finished (or stopped) run, as data.

    Attributes:
        run_dir: the run directory.
        status: finished | budget | backend_error | config_error | interrupted | error.
        exit_code: what the CLI would exit with.
        message: why it stopped, when it did.
        metrics: the metric rows of metrics.json.
    """

    run_dir: Path
    status: str
    exit_code: int
    message: str = ""
    metrics: list[MetricRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def episodes(self) -> list[dict[str, Any]]:
        """Every finished episode's record (results.jsonl)."""
        return read_jsonl(self.run_dir / "results.jsonl")

    def metric(self, name: str, **labels: Any) -> MetricRow | None:
        """The row named `name` whose labels include `labels` (None when there is none)."""
        for row in self.metrics:
            if row.name == name and all(str(row.labels.get(k)) == str(v) for k, v in labels.items()):
                return row
        return None

    def to_pandas(self) -> pandas.DataFrame:
        """The metric rows as a DataFrame (one column per label); needs pandas."""
        import pandas as pd

        return pd.DataFrame([{"name": r.name, **r.labels, "value": r.value, "ci_low": r.ci_low,
                              "ci_high": r.ci_high, "n": r.n} for r in self.metrics])  # fmt: skip

    def episodes_frame(self) -> pandas.DataFrame:
        """One row per episode: id, round, and every score; needs pandas."""
        import pandas as pd

        return pd.DataFrame([{"episode": e["episode"], "round": e.get("round", 0), **e.get("scores", {})}
                             for e in self.episodes])  # fmt: skip


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
    from schola.runtime import arun_plan
    from schola.spec import RunSpec, open_run

    spec = RunSpec.of(scenario, overrides, config_dir=config_dir, run_dir=run_dir, resume=resume)
    plan, store = open_run(spec)
    outcome = await arun_plan(plan, store, progress=progress)
    return RunResult(
        run_dir=outcome.run_dir,
        status=outcome.status,
        exit_code=outcome.exit_code,
        message=outcome.message,
        metrics=[MetricRow(**m) for m in outcome.metrics],
    )


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
