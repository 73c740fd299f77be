"""schola run / check / list / show / report / view / train / cache.

Exit codes: 0 ok, 1 a bug (in Schola or a plugin), 2 configuration, 3 backend, 4 budget reached, 130 interrupted.
No traceback unless --debug. Heavy imports happen inside the command that needs them, so `show`, `report` and
`--help` start fast.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schola.errors import ConfigError, ScholaError
from schola.secrets import override_secrets, redact

if TYPE_CHECKING:
    from rich.console import Console

    from schola.runtime import RunResult
    from schola.spec import RunSpec
    from schola.types import Ledger

USAGE = """\
schola run [SCENARIO.yaml] [-m] [--config-dir DIR] [KEY=VALUE ...]   run a scenario (or a Hydra sweep with -m)
schola check [SCENARIO.yaml] [--config-dir DIR] [--cfg] [KEY=VALUE ...]  validate config, graph, plugins, data (--cfg: print it)
schola list                                                          registered roles, scenarios, scorers, stages, backends
schola show RUN_DIR [--episode ID]                                   metrics of a finished or stopped run; one episode's transcript
schola report DIR                                                    one table (+ CSV, PNG) over every run under DIR
schola view RUN_OR_SWEEP_DIR [--out FILE.html] [--open]              a self-contained HTML report and transcript viewer
schola view RUN_OR_SWEEP_DIR --serve [--port N]                      the viewer live on 127.0.0.1 while the run goes
schola train sft|dpo EXPORT.jsonl [--model MODEL] [--out DIR] [...]  fine-tune a model on a run's export (schola[train])
schola cache info|prune [--older-than-days N] [--max-mb N]           the response cache
schola completion bash|zsh                                           shell completion: eval "$(schola completion bash)"

examples:
  schola run                                         # lbt on the embedded model
  schola run scenario=lbt backend=scripted run.episodes=3 seed=1
  schola run my_scenario.yaml backend=litellm backend.model=openai/smollm2 backend.base_url=http://127.0.0.1:8000/v1
  schola run my_scenario.yaml -m seed=0,1,2 && schola report runs/multirun
  schola run resume=runs/2026-11-25/10-00-00-lbt     # continue a stopped run

the config groups and keys, with their defaults: schola run --help
global flags: --debug (show tracebacks)
exit codes: 0 ok, 1 bug (please report), 2 configuration, 3 backend, 4 budget reached, 130 interrupted
"""


class _Console:
    """rich's Console, made on first use: `--help` and `check` print plain text and never import rich (a tenth of
    their CPU)."""

    def __init__(self, stderr: bool = False) -> None:
        self.stderr = stderr
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            c = Console(stderr=self.stderr, soft_wrap=True)
            width = None if c.is_terminal else int(os.environ.get("COLUMNS", 160))
            self._console = c if width is None else Console(stderr=self.stderr, soft_wrap=True, width=width)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def escape(text: str) -> str:
    """`text` with rich's markup escaped (rich loads with the first rich print)."""
    from rich.markup import escape

    return escape(text)


out = _Console()
err = _Console(stderr=True)
_SECRETS: list[str] = []  # values typed on the command line that must not be echoed back


COMMANDS = ("run", "check", "list", "show", "report", "view", "train", "cache")


def parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of one command (options may come anywhere among its arguments)."""
    s = argparse.ArgumentParser(prog=f"schola {command}", usage=USAGE, add_help=command not in ("run", "check"))
    s.add_argument("--debug", action="store_true", help="show tracebacks")
    if command in ("run", "check"):
        s.add_argument("-h", "--help", action=ConfigHelp, help="this help, the config groups and keys")
        s.add_argument("args", nargs="*", help="[SCENARIO.yaml] KEY=VALUE overrides")
        s.add_argument("-m", "--multirun", action="store_true", help="a Hydra sweep (seed=0,1,2)")
        s.add_argument("--config-dir", "-cd", action="append", default=[], help="another folder of configs")
    if command == "check":
        s.add_argument("--cfg", action="store_true", help="print the composed config (YAML, secrets redacted)")
    elif command in ("show", "report"):
        s.add_argument("path")
    if command == "show":
        s.add_argument("--episode", metavar="ID", help="print this episode's transcript (report.html#episode=ID)")
    elif command == "cache":
        s.add_argument("action", choices=["info", "prune"])
        s.add_argument("--older-than-days", type=non_negative, default=None, help="prune replies older than this")
        s.add_argument("--max-mb", type=non_negative, default=None, help="prune the oldest replies down to this size")
        s.add_argument("--dir", default=None, help="the cache folder (default: $SCHOLA_CACHE_DIR or ~/.cache/schola)")
    return s


class ConfigHelp(argparse.Action):
    """`schola run --help`: the command's options, then the config groups and keys with their defaults."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        out.print(parser.format_help() + "\n" + config_help(), markup=False, highlight=False)
        parser.exit()


def config_help() -> str:
    """The config groups (their options and the default) and every top-level key with its default and one line,
    read from conf/config.yaml and the schema (`schola.schema.Config`): what the help says is what is checked."""
    from importlib.resources import files

    import yaml

    from schola.schema import Config, config_keys

    conf = files("schola.conf")
    chosen = {k: v for d in yaml.safe_load(conf.joinpath("config.yaml").read_text())["defaults"] if isinstance(d, dict)
              for k, v in d.items()}  # fmt: skip
    groups = {
        "scenario": "the scenario (a SCENARIO.yaml given first replaces it); its keys: scenario.*",
        "backend": "the default model client; its keys: backend.* (conf/backend/NAME.yaml lists them)",
    }
    lines = ["config groups (GROUP=NAME, or DIR/GROUP/NAME.yaml with --config-dir DIR):"]
    for group, line in groups.items():
        names = sorted(p.name.removesuffix(".yaml") for p in conf.joinpath(group).iterdir() if p.name.endswith(".yaml"))
        lines += [f"  {group}={chosen.get(group, '?')}  {line}", f"      one of: {', '.join(names)}"]
    keys = [(f"{k}={v}", about) for k, v, about in config_keys(Config) if k.split(".")[0] not in groups]
    width = max(len(k) for k, _ in keys)
    lines.append("keys (KEY=VALUE, shown with the default; schola check --cfg prints the composed config):")
    lines += [f"  {k.ljust(width)}  {about}" for k, about in keys]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI in-process; returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    _SECRETS[:] = override_secrets(args)
    debug = "--debug" in args
    words = [a for a in args if a != "--debug"]
    if not words or words[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = words[0], words[1:]
    if command in ("completion", "complete"):  # the shell's: plain text, no rich, nothing else imported
        return cmd_completion(command, rest)
    if command not in COMMANDS:
        fail("error", f"unknown command '{command}'; expected one of {', '.join(COMMANDS)} (schola --help)")
        return 2
    if command in ("train", "view"):  # their options are their own
        ns = argparse.Namespace(command=command, rest=rest, debug=debug)
    else:
        try:
            ns = parser(command).parse_intermixed_args(rest)
        except SystemExit as e:  # argparse's own usage errors (it printed them)
            return 0 if e.code in (0, None) else 2
        ns.command, ns.debug = command, debug or ns.debug
    commands = {"run": cmd_run, "check": cmd_check, "list": cmd_list, "show": cmd_show, "report": cmd_report,
                "view": cmd_view, "train": cmd_train, "cache": cmd_cache}  # fmt: skip
    try:
        return commands[command](ns)
    except ScholaError as e:
        if debug:  # the traceback, with every secret typed on the command line masked
            import traceback

            err.print(redact(traceback.format_exc(), _SECRETS), markup=False, highlight=False)
        fail("error", str(e))
        return e.exit_code
    except OSError as e:  # a path the user gave that the system refuses (too long, a loop of links, no access)
        if e.filename is None:
            raise
        if debug:
            import traceback

            err.print(redact(traceback.format_exc(), _SECRETS), markup=False, highlight=False)
        fail("error", f"{e.filename}: {e.strerror}")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def cmd_completion(command: str, rest: list[str]) -> int:
    """`schola completion bash|zsh` prints the completion script; `schola complete WORDS...` (what the script
    runs) prints what may follow, one candidate a line."""
    from schola import completion

    if command == "complete":
        print("\n".join(completion.candidates(rest)))
        return 0
    if len(rest) != 1 or rest[0] not in completion.SCRIPT:
        fail("error", f"schola completion SHELL: expected one of {', '.join(completion.SCRIPT)}")
        return 2
    print(completion.script(rest[0]), end="")
    return 0


def fail(status: str, message: str) -> None:
    """One line on stderr; the message is user data (paths, keys like graph[0]), never markup, never a secret."""
    err.print(f"[bold red]schola: {status}:[/] {escape(redact(message, _SECRETS))}", highlight=False)


# Commands that only read, whose start-up is all they do: it allocates ~60,000 objects that live until exit (modules,
# schemas, the plan) and little garbage (~6,000 objects checking spp), yet the collector's default pace (a pass per
# 700 new objects) scanned them ~130 times, 40 ms of CPU at each `check`, and once more at exit, 60 ms.
READ_ONLY = frozenset({"check", "list", "show", "complete"})


def entry() -> None:
    """The `schola` executable: `main`, then exit with its code."""
    for stream in (sys.stdout, sys.stderr):  # a path or a stored string may hold what UTF-8 cannot (a lone surrogate)
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    words = [a for a in sys.argv[1:] if a != "--debug"]
    quick = bool(words) and words[0] in READ_ONLY
    if quick:
        import gc

        gc.set_threshold(50_000, 10, 10)  # a young-generation pass per 50,000 new objects: memory stays bounded
    code = main()
    if quick:
        gc.freeze()  # the process ends here: the collection at exit skips what start-up built
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command has ended and said how: a late Ctrl-C keeps its code
    sys.exit(code)


# -- run / check -------------------------------------------------------------------------------
def cmd_check(ns: argparse.Namespace) -> int:
    from schola.spec import RunSpec, plan_of

    plan, _ = plan_of(RunSpec.from_args(ns.args, ns.config_dir))
    if ns.cfg:  # what Hydra's `--cfg job` prints, once checked: the config a run would save, secrets redacted
        import yaml

        from schola.secrets import known_secrets, redact_config

        safe = redact_config(plan.raw, [*known_secrets(plan.raw), *_SECRETS])
        # printed as it is: rich would read `:x:` in a prompt as an emoji code
        print(yaml.safe_dump(safe, sort_keys=False, allow_unicode=True), end="")
        return 0
    sc = plan.config.scenario
    roles = list(plan.roles)
    shown = ", ".join(roles[:8]) + (f", ... ({len(roles)} in all)" if len(roles) > 8 else "")
    print(
        f"ok: scenario '{sc.name}' ({sc.kind or 'yaml'}{', variant ' + sc.variant if sc.variant else ''}), "
        f"{len(plan.episodes)} episodes, {len(sc.graph)} steps, {len(plan.graphs)} more graphs, "
        f"{len(sc.stages)} stages, roles {shown}, backends "
        + ", ".join(f"{n}={c.kind}" for n, (_, c) in plan.backends.items())
    )
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    """`schola run [SCENARIO.yaml] [KEY=VALUE ...]`, `schola run resume=DIR [changes]`, or a sweep with -m: a
    RunSpec each, run by the one path (`schola.spec.open_run`)."""
    from schola.runtime import run_plan
    from schola.spec import RunSpec, open_run

    spec = RunSpec.from_args(ns.args, ns.config_dir)
    if ns.multirun:
        if spec.resume is not None:
            raise ConfigError("resume= continues one run; it cannot be swept", key="resume")
        return launch_sweep(spec, debug=ns.debug)
    plan, store = open_run(spec)
    setup_logging()
    with Progress(len(plan.selected)) as progress:
        outcome = run_plan(plan, store, progress=progress.update, debug=ns.debug, report=True)
    return finish(outcome)


def launch_sweep(spec: RunSpec, *, debug: bool) -> int:
    """Hand a sweep (-m) over to Hydra's app, so its sweepers and launchers work; each job runs `run_job`."""
    import hydra

    from schola.compose import hydra_errors, name_override, parse_overrides, quote

    composition = spec.composition()
    argv_overrides = [*composition.hydra_overrides(sweep=True), name_override(composition.body.get("name"))]
    with hydra_errors():  # the sweep's syntax is checked here; each job validates its own config
        parse_overrides(argv_overrides)
    pinned = sweep_dir(argv_overrides)
    argv_overrides.append(f"hydra.sweep.dir={quote(pinned)}")
    codes: list[int] = []

    @hydra.main(config_path="pkg://schola.conf", config_name="config", version_base=None)
    def app(cfg: Any) -> int:
        code = run_job(cfg, spec, debug=debug)
        codes.append(code)
        return code

    setup_logging()
    argv = sys.argv
    sys.argv = ["schola", "-m", *argv_overrides]
    try:
        app()
    except SystemExit as e:  # Hydra exits on its own errors
        if not codes:
            codes.append(2 if e.code not in (0, None) else 0)
    finally:
        sys.argv = argv
    if not codes:  # the jobs ran in other processes (submitit, a Ray launcher): their run directories say
        codes = job_codes(Path(pinned))
    return max(codes, key=lambda c: (c != 0, c)) if codes else 1


def sweep_dir(overrides: list[str]) -> str:
    """The sweep directory Hydra's pattern gives, composed once here and pinned for every job: a launcher that
    runs jobs in other processes would otherwise compose it again per job, and its `${now:...}` could differ."""
    from hydra import compose, initialize_config_module

    from schola.compose import hydra_errors, parse_overrides

    plain = [o for o, p in zip(overrides, parse_overrides(overrides), strict=True) if not p.is_sweep_override()]
    with hydra_errors(), initialize_config_module("schola.conf", version_base=None):
        return str(compose("config", overrides=plain, return_hydra_config=True).hydra.sweep.dir)


def job_codes(sweep: Path) -> list[int]:
    """Each job's exit code from its run directory's status.json (`read_json_file`: a regular file of its own, no
    link or FIFO); a job folder without one, or with one that is damaged, failed (1)."""
    from schola.store import read_json_file

    codes = []
    for job in (
        sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) if sweep.is_dir() else []
    ):
        try:
            code = (read_json_file(job / "status.json") or {}).get("exit_code", 1)
        except ConfigError:
            code = 1
        codes.append(code if isinstance(code, int) and not isinstance(code, bool) else 1)
    return codes


def run_job(cfg: Any, sweep: RunSpec, *, debug: bool) -> int:
    """One Hydra job of a sweep: the sweep's spec with the job's own overrides, run by the one path. Never
    raises (Hydra would print a traceback)."""
    import dataclasses

    from hydra.core.hydra_config import HydraConfig

    from schola.runtime import run_plan
    from schola.spec import open_run

    try:
        spec = dataclasses.replace(sweep, overrides=tuple(HydraConfig.get().overrides.task), job=cfg)
        plan, store = open_run(spec)
        return finish(run_plan(plan, store, debug=debug, report=True))
    except ScholaError as e:
        if debug:
            raise
        fail("error", str(e))
        return e.exit_code


def finish(result: RunResult) -> int:
    """Write report.html; print the results table, why a run stopped and how to continue it, and the run
    directory. The run has ended and status.json says how: a Ctrl-C now would only cut the summary short and
    contradict that exit code, so it waits until the summary is out."""
    with late_signals_ignored():
        return _finish(result)


class late_signals_ignored:
    """SIGINT ignored for the block, then restored (only the main thread can set handlers)."""

    def __enter__(self) -> None:
        import signal
        import threading

        main = threading.current_thread() is threading.main_thread()
        self.before = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None

    def __exit__(self, *exc: object) -> None:
        import signal

        if self.before is not None:
            signal.signal(signal.SIGINT, self.before)


def _finish(result: RunResult) -> int:
    from schola.report import metrics_table
    from schola.view import write_report

    try:
        write_report(result.run_dir, result.blocks)
    except Exception as e:  # the viewer never changes how a run ended
        logging.getLogger("schola").warning("report.html not written: %s", e)
    out.print(metrics_table(result.run_dir))
    print_findings(result.run_dir)
    if result.exit_code:
        fail(result.status, f"{result.message}" + (f" — {result.hint}" if result.hint else ""))
    out.print(f"run directory: {escape(str(result.run_dir))}")
    return result.exit_code


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (a notebook or a test may swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging() -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    for noisy in ("LiteLLM", "litellm", "httpx", "openai", "autogen_core", "autogen_core.events"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Progress:
    """A rich progress bar on a terminal (episodes, tokens, cost, cache hits); log lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.tty = err.is_terminal and not os.environ.get("CI")
        self.bar: Any = None
        self.ledger: Ledger | None = None
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

            columns = (TextColumn("episodes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), Usage())
            self.bar = Bar(*columns, console=err.get(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("run", total=self.total)
        return self

    def usage(self) -> str:
        if self.ledger is None:
            return ""
        t = self.ledger.total()
        return f"{t.requests} requests · {t.tokens} tokens · ${t.cost_usd:.4f} · {t.cache_hits} cache hits"

    def update(self, done: int, total: int, ledger: Ledger) -> None:
        self.ledger = ledger
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)
        elif done and (done == total or done % max(1, total // 10) == 0):
            self.log.info("episodes %d/%d · %s", done, total, self.usage())

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


# -- list / show / report / train / cache --------------------------------------------------------
def describe(kind: str, obj: Any) -> str:
    """One line about a loaded plugin; a scenario also lists its scorers, stages and data keys."""
    from schola.plugins import summary

    line = summary(getattr(obj, "description", None) or obj.__doc__)
    if kind == "scenarios":
        data = getattr(getattr(obj, "data", None), "model_fields", {})
        line += scenario_parts(list(obj.scorers), list(obj.stages), list(data))
    return line


def scenario_parts(scorers: list[str], stages: list[str], data: list[str]) -> str:
    return (
        f" [scorers: {', '.join(scorers) or '-'}; stages: {', '.join(stages) or '-'}; data: {', '.join(data) or '-'}]"
    )


def cmd_list(ns: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from schola import plugins

    t = Table(title="registered plugins")
    for col in ("kind", "name", "from", "about"):
        t.add_column(col)
    for kind, reg in plugins.ALL.items():
        for name in reg.names():  # described from each plugin's source: listing imports no plugin that says it plainly
            said = reg.about(name)
            if said is not None:
                about = Text(said)
            else:
                try:
                    about = Text(describe(kind, reg.get(name)))
                except ConfigError as e:
                    about = Text(f"failed to load: {e}", style="red")
            t.add_row(kind[:-1], name, Text(reg.origin(name)), about)
    out.print(t)
    return 0


def cmd_show(ns: argparse.Namespace) -> int:
    from schola.report import metrics_table

    if ns.episode is not None:
        print_episode(Path(ns.path), ns.episode)
        return 0
    out.print(metrics_table(Path(ns.path)))
    print_findings(Path(ns.path))
    return 0


def print_episode(run_dir: Path, episode: str) -> None:
    """One episode as the viewer's page shows it (report.html#episode=ID): its scores and inputs, every reply in
    order with its node path, role, prompt and text, then its outputs. Read from results.jsonl and transcript.jsonl
    only (a running run's finished episodes too); stored text is printed as text, never as markup."""
    import json

    from schola.store import episode_record, iter_jsonl

    if not (run_dir / "transcript.jsonl").is_file() and not (run_dir / "results.jsonl").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no transcript.jsonl, no results.jsonl)")
    result, ids = None, []
    for r in iter_jsonl(run_dir / "results.jsonl"):
        if episode_record(r):
            if str(r.get("episode")) == episode:
                result = r
                break
            ids.append(str(r.get("episode")))
    steps = [t for t in iter_jsonl(run_dir / "transcript.jsonl") if str(t.get("episode")) == episode]
    if result is None and not steps:
        known = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "") if ids else "none finished"
        raise ConfigError(f"no episode {episode!r} in {run_dir}; episodes: {known}", key="--episode")

    def show(text: str, style: str = "") -> None:
        out.print(text, markup=False, highlight=False, style=style or None)

    def indented(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
        return "\n".join("    " + line for line in text.splitlines()) or "    (empty)"

    status = "unfinished" if result is None else "failed" if "error" in result else "finished"
    tokens = sum(int(t.get("prompt_tokens") or 0) + int(t.get("completion_tokens") or 0) for t in steps)
    show(f"episode {episode} · round {(result or steps[0]).get('round', 0)} · {status} · {len(steps)} replies · "
         f"{tokens} tokens", "bold")  # fmt: skip
    if result is not None and isinstance(result.get("error"), dict):
        show(f"failed at step {result['error'].get('step')}: {result['error'].get('message')}", "red")
    for key, value in ((result or {}).get("scores") or {}).items():
        show(f"  {key} = {value}")
    if result is not None:
        show("inputs")
        show(indented(result.get("inputs")))
    for t in steps:
        timing = f"service {float(t.get('latency_s') or 0) * 1000:.1f} ms"
        if t.get("queue_s"):
            timing += f" · queued {float(t['queue_s']) * 1000:.1f} ms"
        show(f"── {t.get('node')} · {t.get('agent')} · iteration {t.get('iteration', 0)} · sample {t.get('sample', 0)} · "
             f"{t.get('prompt_tokens')} + {t.get('completion_tokens')} tokens · {timing}"
             + (" · cache hit" if t.get("cached") else ""), "bold")  # fmt: skip
        show("  prompt")
        show(indented(t.get("prompt")))
        show("  reply")
        show(indented(t.get("text")))
    if result is not None:
        show("outputs")
        show(indented(result.get("outputs")))


def print_findings(run_dir: Path) -> None:
    """The findings table, then one line per finding: what the run says of each claim (README "Findings")."""
    from schola.report import findings_of, findings_table

    table = findings_table(run_dir)
    if table is not None:
        out.print(table)
        for f in findings_of(run_dir):
            out.print(escape(f["line"]), highlight=False)


def cmd_report(ns: argparse.Namespace) -> int:
    from schola.report import Sweep, findings_report, report

    sweep = Sweep.read(Path(ns.path))  # each run's files read once, for both tables
    table, csv_path, png = report(sweep)
    out.print(table)
    written = [csv_path, png]
    found = findings_report(sweep)  # README "Findings": which arms support which finding
    if found is not None:
        out.print(found[0])
        for line in found[1]:
            out.print(escape(line), highlight=False)
        written.append(found[2])
    out.print("written: " + ", ".join(escape(str(p)) for p in written))
    return 0


def cmd_view(ns: argparse.Namespace) -> int:
    from schola.view import main as view_main

    return int(view_main(list(ns.rest)))


def cmd_train(ns: argparse.Namespace) -> int:
    try:
        from schola.train import main as train_main
    except ImportError as e:
        raise ConfigError(f"schola train needs its extras: pip install 'schola[train]' ({e})") from None
    return int(train_main(list(ns.rest)))


def non_negative(text: str) -> float:
    """A `schola cache prune` bound: a negative age or size would remove every reply."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {text!r}")
    return value


def cmd_cache(ns: argparse.Namespace) -> int:
    from schola.backends.cache import Cache, default_cache_dir

    directory = Path(ns.dir) if ns.dir else default_cache_dir()
    with Cache.open_existing(directory, readonly=ns.action == "info") as cache:
        if ns.action == "prune":
            removed = cache.prune(older_than_days=ns.older_than_days, max_mb=ns.max_mb)
            out.print(f"removed {removed} replies", markup=False)
        info = cache.info()
    out.print(f"cache {escape(str(directory))}: {info['replies']} replies, {info['bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    entry()
