"""schola run / check / list / show / report.

Exit codes: 0 ok, 2 configuration, 3 backend, 4 budget reached, 130 interrupted. No traceback unless --debug.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from schola import plugins
from schola.errors import ConfigError, ScholaError

USAGE = """\
schola run [SCENARIO.yaml] [-m] [--config-dir DIR] [KEY=VALUE ...]   run a scenario (or a Hydra sweep with -m)
schola check [SCENARIO.yaml] [--config-dir DIR] [KEY=VALUE ...]      validate config, graph, plugins, data; no model call
schola list                                                          registered roles, scenarios, scorers, backends
schola show RUN_DIR                                                  metrics of a finished or stopped run
schola report DIR                                                    one table (+ CSV, PNG) over every run under DIR

examples:
  schola run                                         # lbt on the embedded model
  schola run scenario=lbt backend=scripted run.episodes=3 seed=1
  schola run my_scenario.yaml backend=litellm backend.model=openai/smollm2 backend.base_url=http://127.0.0.1:8000/v1
  schola run -m backend=scripted seed=0,1,2 && schola report runs/multirun
  schola run resume=runs/2026-11-25/10-00-00-lbt     # continue a stopped run

global flags: --debug (show tracebacks)
exit codes: 0 ok, 2 configuration, 3 backend, 4 budget reached, 130 interrupted
"""

def _console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr, soft_wrap=True)
    return c if c.is_terminal else Console(stderr=stderr, soft_wrap=True, width=int(os.environ.get("COLUMNS", 160)))


out = _console()
err = _console(stderr=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="schola", usage=USAGE, add_help=True)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command")
    for name in ("run", "check"):
        s = sub.add_parser(name, usage=USAGE)
        s.add_argument("args", nargs="*", help="[SCENARIO.yaml] KEY=VALUE overrides")
        s.add_argument("-m", "--multirun", action="store_true", help="a Hydra sweep (seed=0,1,2)")
        s.add_argument("--config-dir", "-cd", action="append", default=[], help="another folder of configs")
        s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for name in ("show", "report"):
        s = sub.add_parser(name, usage=USAGE)
        s.add_argument("path")
        s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    s = sub.add_parser("list", usage=USAGE)
    s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI in-process; returns the exit code."""
    ns = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not ns.command:
        out.print(USAGE, markup=False, highlight=False)
        return 0
    try:
        return {"run": cmd_run, "check": cmd_check, "list": cmd_list, "show": cmd_show, "report": cmd_report}[
            ns.command
        ](ns)
    except ScholaError as e:
        if ns.debug:
            raise
        fail("error", str(e))
        return e.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def fail(status: str, message: str) -> None:
    """One line on stderr; the message is user data (paths, keys like graph[0]), never markup."""
    err.print(f"[bold red]schola: {status}:[/] {escape(message)}", highlight=False)


def entry() -> None:
    sys.exit(main())


# -- run / check -------------------------------------------------------------------------------
def split_args(args: list[str]) -> tuple[str | None, list[str]]:
    """(scenario YAML path or None, overrides)."""
    path, overrides = None, []
    for a in args:
        if "=" not in a and a.endswith((".yaml", ".yml")) and path is None:
            path = a
        elif "=" not in a and not a.startswith(("+", "~")):
            raise ConfigError(f"'{a}' is neither a scenario .yaml file nor a KEY=VALUE override", file="command line")
        else:
            overrides.append(a)
    return path, overrides


def prepare(ns: argparse.Namespace) -> tuple[list[str], list[str], Any]:
    from schola.config import ScenarioFile

    path, overrides = split_args(ns.args)
    sf = ScenarioFile(path) if path else None
    search = list(ns.config_dir) + (sf.search_paths if sf else [])
    return (sf.overrides() if sf else []) + overrides, search, sf


def validate(overrides: list[str], search: list[str]) -> Any:
    from schola.config import Files, build_plan, compose

    raw, choices = compose(overrides, search_dirs=search)
    return build_plan(raw, Files.from_choices(choices, raw.get("scenario", {}).get("source")))


def cmd_check(ns: argparse.Namespace) -> int:
    overrides, search, sf = prepare(ns)
    try:
        plan = validate(overrides, search)
    finally:
        if sf:
            sf.cleanup()
    sc = plan.config.scenario
    out.print(
        f"ok: scenario '{sc.name}' ({sc.kind or 'yaml'}), {len(plan.episodes)} episodes, "
        f"{len(sc.graph)} steps, roles {', '.join(plan.roles)}, backends "
        + ", ".join(f"{n}={c.kind}" for n, (_, c) in plan.backends.items()),
        markup=False,
    )
    return 0


def resumable(override: str) -> bool:
    from schola.config import RESUMABLE

    key = override.split("=", 1)[0].lstrip("+")
    return key.startswith(RESUMABLE) or key.endswith(".base_url")


def resume_saved(run_dir: Path, overrides: list[str], *, debug: bool) -> int:
    """`schola run resume=DIR [budget.../run.concurrency/endpoint overrides]`: the saved config, as it was."""
    from omegaconf import OmegaConf

    from schola.config import Files
    from schola.store import RunStore

    saved = OmegaConf.create(RunStore(run_dir).read_config())
    saved.merge_with_dotlist([o.lstrip("+") for o in overrides])
    raw = OmegaConf.to_container(saved, resolve=True)
    raw["resume"] = str(run_dir)
    choices = {"backend": raw["backend"].get("kind"), "scenario": raw["scenario"]["name"]}
    files = Files.from_choices(choices, raw["scenario"].get("source"))
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    return execute(raw, run_dir, files, debug=debug)


def cmd_run(ns: argparse.Namespace) -> int:
    overrides, search, sf = prepare(ns)
    try:
        resume = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
        if resume:
            if ns.multirun:
                raise ConfigError("resume= continues one run; it cannot be swept", key="resume")
            if not (Path(resume) / "config.yaml").exists():
                raise ConfigError(f"{resume} is not a run directory (no config.yaml)", key="resume")
            if sf is None and all(resumable(o) for o in overrides):
                return resume_saved(Path(resume), overrides, debug=ns.debug)
            overrides.append(f"hydra.run.dir={Path(resume).resolve()}")
        plan = None
        if not ns.multirun:
            plan = validate(overrides, search)  # bad input fails here, before Hydra prints anything
        else:  # each job validates its own config; the sweep's syntax is checked here
            from hydra.core.override_parser.overrides_parser import OverridesParser

            from schola.config import hydra_errors

            with hydra_errors():
                OverridesParser.create().parse_overrides(overrides)
        return launch(overrides, search, multirun=ns.multirun, debug=ns.debug, plan=plan)
    finally:
        if sf:
            sf.cleanup()


def launch(overrides: list[str], search: list[str], *, multirun: bool, debug: bool, plan: Any = None) -> int:
    """Hand over to Hydra's app, so sweeps (-m) and launchers work; each job runs `run_job`.

    `plan`: the plan already validated for this very config (a single run), so its data is not loaded twice."""
    import hydra

    from schola.config import searchpath_override

    codes: list[int] = []

    @hydra.main(config_path="pkg://schola.conf", config_name="config", version_base=None)
    def app(cfg: Any) -> int:
        code = run_job(cfg, debug=debug, plan=plan)
        codes.append(code)
        return code

    argv = sys.argv
    sys.argv = ["schola", *(["-m"] if multirun else []), *overrides, *searchpath_override(search)]
    try:
        app()
    except SystemExit as e:  # Hydra exits on its own errors
        if not codes:
            codes.append(2 if e.code not in (0, None) else 0)
    finally:
        sys.argv = argv
    return max(codes, key=lambda c: (c != 0, c)) if codes else 1


def run_job(cfg: Any, *, debug: bool, plan: Any = None) -> int:
    """One Hydra job: validate, run, print the results table. Never raises (Hydra would print a traceback)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from schola.config import Files

    hc = HydraConfig.get()
    raw = OmegaConf.to_container(cfg, resolve=True)
    files = Files.from_choices(dict(hc.runtime.choices), raw["scenario"].get("source"))
    reuse = plan if plan is not None and plan.raw == raw else None
    return execute(raw, Path(hc.runtime.output_dir), files, debug=debug, plan=reuse)


def execute(raw: dict[str, Any], run_dir: Path, files: Any, *, debug: bool, plan: Any = None) -> int:
    """Validate, run into `run_dir`, print the results table and the run directory."""
    from schola.config import build_plan, check_resume
    from schola.runtime import run_plan
    from schola.store import RunStore

    try:
        if plan is None:
            plan = build_plan(raw, files)
        store = RunStore(run_dir)
        if plan.config.resume:
            check_resume(store.read_config(), plan, store.results(), run_dir=str(store.dir))
        elif store.results():
            raise ConfigError(f"{store.dir} already holds a run; continue it with resume={store.dir}", key="hydra.run.dir")
        store.write_config(raw)
        with Progress(len(plan.selected)) as progress:
            outcome = run_plan(plan, store, progress=progress.update, debug=debug)
        from schola.report import metrics_table

        out.print(metrics_table(outcome.run_dir))
        if outcome.exit_code:
            resumable = outcome.status not in ("config_error", "error")
            hint = f" — continue with: schola run resume={outcome.run_dir}" if resumable else ""
            fail(outcome.status, f"{outcome.message}{hint}")
        out.print(f"run directory: {escape(str(outcome.run_dir))}")
        return outcome.exit_code
    except ScholaError as e:
        if debug:
            raise
        fail("error", str(e))
        return e.exit_code


class Progress:
    """A rich progress bar on a terminal (episodes, tokens, cost, cache hits); log lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.tty = err.is_terminal and not os.environ.get("CI")
        self.bar: Any = None
        self.ledger: Any = None
        self.log = logging.getLogger("schola")

    def __enter__(self) -> Progress:
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar
            from rich.text import Text

            progress = self

            class Usage(ProgressColumn):  # read live at every refresh, not only when an episode ends
                def render(self, task: Any) -> Text:
                    return Text(progress.usage())

            self.bar = Bar(
                TextColumn("episodes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), Usage(),
                console=err, transient=True,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("run", total=self.total)
        return self

    def usage(self) -> str:
        if self.ledger is None:
            return ""
        t = self.ledger.total()
        return f"{t.requests} replies · {t.tokens} tokens · ${t.cost_usd:.4f} · {t.cache_hits} cache hits"

    def update(self, done: int, total: int, ledger: Any) -> None:
        self.ledger = ledger
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)
        elif done and (done == total or done % max(1, total // 10) == 0):
            self.log.info("episodes %d/%d · %s", done, total, self.usage())

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


# -- list / show / report ----------------------------------------------------------------------
def cmd_list(ns: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    t = Table(title="registered plugins")
    for col in ("kind", "name", "from", "about"):
        t.add_column(col)
    for kind, reg in plugins.ALL.items():
        for name, obj in reg.load_all().items():
            if isinstance(obj, Exception):
                about = Text(f"failed to load: {obj}", style="red")
            else:
                doc = getattr(obj, "description", None) or obj.__doc__ or ""
                about = Text(doc.strip().split("\n")[0])
            t.add_row(kind[:-1], name, Text(reg.origin(name)), about)
    out.print(t)
    return 0


def cmd_show(ns: argparse.Namespace) -> int:
    from schola.report import metrics_table

    out.print(metrics_table(Path(ns.path)))
    return 0


def cmd_report(ns: argparse.Namespace) -> int:
    from schola.report import report

    table, csv_path, png = report(Path(ns.path))
    out.print(table)
    out.print(f"written: {escape(str(csv_path))}, {escape(str(png))}")
    return 0
if __name__ == "__main__":
    entry()
