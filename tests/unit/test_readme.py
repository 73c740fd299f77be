"""The README's examples are code that runs."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import shlex
import time
from pathlib import Path
from typing import Any

README = (Path(__file__).parents[2] / "README.md").read_text()


def block(marker: str, language: str) -> str:
    return README.split(f"<!-- {marker}", 1)[1].split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_python_api_example_runs_inside_a_running_event_loop(tmp_path: Path) -> None:
    code = compile(block("python-api", "python"), "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    scope: dict[str, Any] = {}

    async def notebook() -> None:  # a notebook cell: top-level await, and schola.run inside a running loop
        result = eval(code, scope)
        if asyncio.iscoroutine(result):
            await result

    asyncio.run(notebook())
    assert scope["result"].status == "finished" and len(scope["result"].episodes) == 2
    assert scope["again"].ok and set(scope["frame"]["name"]) >= {"accuracy", "exam_accuracy"}
    assert len(scope["episodes"]) == 2
    assert (tmp_path / "runs" / "api-demo" / "metrics.json").is_file()


# -- what the README says is true ---------------------------------------------------------------------------------


def test_metrics_json_holds_the_keys_the_readme_lists(tmp_path: Path) -> None:
    """metrics.json is the same bytes for the same run: its timings live in ledger.json, and the README says so."""
    import schola

    result = schola.run("lbt", ["backend=scripted", "run.episodes=2"], run_dir=tmp_path / "r")
    item = README.split("\n- `metrics.json` — ", 1)[1].split("\n- ", 1)[0]
    listed = set(re.findall(r'"(\w+)"', re.sub(r"\[\{.*?\}\]", "", item)))  # the top level, not a row's fields
    assert listed == set(json.loads((result.run_dir / "metrics.json").read_text()))
    ledger = README.split("\n- `ledger.json` — ", 1)[1].split("\n- ", 1)[0]
    assert "wall_s" in json.loads((result.run_dir / "ledger.json").read_text()) and "`wall_s`" in ledger


def test_the_command_synopsis_marks_optional_options_as_optional() -> None:
    """`schola train`'s synopsis: an option outside [...] is one argparse requires, one inside exists."""
    from schola.train import parser

    synopsis = next(x for x in README.splitlines() if x.startswith("schola train "))
    optional = re.findall(r"\[(--[\w-]+)", synopsis)
    required = re.findall(r"(?<!\[)(--[\w-]+)", synopsis)
    actions = {s: a for a in parser()._actions for s in a.option_strings}
    assert optional and all(o in actions and not actions[o].required for o in optional)
    assert all(actions[o].required for o in required), required


def test_every_relative_link_and_image_in_the_docs_exists() -> None:
    root = Path(__file__).parents[2]
    broken = [
        f"{page.relative_to(root)}: {target}"
        for page in [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text())
        if "://" not in target and not target.startswith("mailto:") and not (page.parent / target).exists()
    ]
    assert not broken


def test_the_plugin_example_is_a_package_that_runs(tmp_path: Path, monkeypatch: Any, cli: Any) -> None:
    """The README's toml, module and counting.yaml as one package: every entry point names something the module
    defines, `schola run scenario=counting` works, and its stage adds rows the automatic ones do not already give."""
    import importlib
    import tomllib

    from schola import plugins

    package = tmp_path / "src" / "my_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(block("plugin: my_pkg/__init__.py", "python"))
    (package / "counting.yaml").write_text(block("plugin: my_pkg/counting.yaml", "yaml"))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    kinds = {group: kind for kind, group in plugins.GROUPS.items()}
    entry_points = tomllib.loads(block("plugin: pyproject.toml", "toml"))["project"]["entry-points"]
    for group, names in entry_points.items():
        for name, ref in names.items():
            module, attr = ref.split(":")
            plugins.ALL[kinds[group]].register(name, getattr(importlib.import_module(module), attr))
    code, out = cli("run", "scenario=counting", "hydra.run.dir=runs/counting")
    assert code == 0, out
    rows = json.loads((tmp_path / "runs" / "counting" / "metrics.json").read_text())["metrics"]
    keys = [(r["name"], json.dumps(r["labels"], sort_keys=True)) for r in rows]
    assert len(keys) == len(set(keys)) and len(keys) > 1, keys


# -- every shell block that needs no external host, on the scripted backend ---------------------------------------

HOSTS = ("http://", "backend=openai", "backend=litellm", "backend=vllm", "hydra/launcher=slurm", "run.ray.address")


def why_skipped(words: list[str]) -> str | None:
    """Why a README command does not run here; None when it runs (on the scripted backend)."""
    text = " ".join(words)
    if words[0] == "make":
        return "make run builds llama-cpp-python and runs the demo on the embedded model; make test is the suite"
    if words[0] == "export" or any(h in text for h in HOSTS):
        return "needs a server, a cluster or a hosted model's key"
    if words[1] == "train" or "backend=embedded" in text or "backend=transformers" in text:
        return "needs the embedded model's weights (train, the embedded and transformers backends)"
    if "scenario=curriculum" in text:
        return "trains torch learners, 30 s to minutes (tests/unit/scenarios runs it small)"
    if "scenario=mooc_grading" in text:
        return "three courses per arm: 7 s on the scripted backend even at 2 episodes (tests/unit/scenarios runs it)"
    if "runs/t2t" in text:
        return "reports the transformers runs above"
    return None


def shell_commands() -> list[tuple[list[str], str]]:
    """Every command of every ```bash block: (words, the comment on its line); continuations joined, `&&` split."""
    commands = []
    for body in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in body.replace("\\\n", " ").splitlines():
            comment = m.group(1) if (m := re.search(r"\s#\s(.*)$", line)) else ""
            words = shlex.split(line, comments=True)
            while words:
                n = words.index("&&") if "&&" in words else len(words)
                commands.append((words[:n], comment))
                words = words[n + 1 :]
    return commands


def test_every_shell_block_without_an_external_host_runs_as_its_comments_say(cli: Any, tmp_path: Path) -> None:
    """Each `schola` command of the README in order, in one folder, with `backend=scripted` standing in for the
    embedded model and `run.episodes=2` (kept fast) where the command sets neither; a placeholder run directory is
    the last run (or sweep) made. A comment saying `exit 4` is the exit code expected; else 0."""
    (tmp_path / "peer_review.yaml").write_text(block("peer_review.yaml", "yaml"))
    last = {"run": "", "multirun": ""}
    ran, skipped = [], []
    for words, comment in shell_commands():
        if reason := why_skipped(words):
            skipped.append((" ".join(words), reason))
            continue
        args = [re.sub(r"runs/(multirun/)?(\d{4}-\d\d-\d\d/[\d-]+|<date>/<time>)-\w+",
                       lambda m: last["multirun" if m.group(1) else "run"], w) for w in words[1:]]  # fmt: skip
        if args[0] == "run" and not any(a.startswith("resume=") for a in args):
            args += [f"{k}={v}" for k, v in (("backend", "scripted"), ("run.episodes", 2)) if not any(
                a.startswith(f"{k}=") for a in args)]  # fmt: skip
            while list(Path().glob(f"runs/**/{time.strftime('%H-%M-%S')}-*")):  # Hydra names a run by its second
                time.sleep(0.05)
        before = set(Path("runs").glob("**/metrics.json"))
        code, out = cli(*args)
        assert code == (4 if "exit 4" in comment else 0), f"schola {' '.join(args)}  # {comment}\n{out[-2000:]}"
        for new in set(Path("runs").glob("**/metrics.json")) - before:
            sweep = new.parent.parent if "multirun" in new.parts else None
            last["multirun" if sweep else "run"] = str(sweep or new.parent)
        ran.append(args)
    assert len(ran) >= 15, (ran, skipped)


def test_the_demos_time_is_the_one_measured() -> None:
    """The demo's minutes in the README are docs/measure.py's measurement of lbt on the embedded model."""
    measured = (Path(__file__).parents[2] / "docs" / "scenarios" / "lbt.md").read_text().split("<!-- measured -->")[1]
    minutes = re.search(r"([\d.]+) minutes", measured)
    demo = README.split("The demo is `scenario=lbt backend=embedded`", 1)[1].split("\n\n", 1)[0]
    assert minutes and f"{minutes.group(1)} minutes measured on 2 shared CPU cores" in demo.replace("\n", " ")
