"""Shared by the benchmark scripts: where results go, and the machine they ran on; a checkout run as the installed
schola (`overlay`, `env_of`); the CPU of the child processes a call waited for (`child_cpu`)."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")  # a test points it elsewhere


def save(name: str, payload: dict[str, Any]) -> Path:
    """Print `payload` and write it to benchmarks/results/<name>.json with the machine's description."""
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(), "platform": platform.platform()},
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))
    return path


MAPPED = {"agents": "agents", "scenarios": "scenarios", "conf": "conf"}  # schola.X -> the tree's folder


def overlay(tree: Path, into: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes `tree` the installed schola: its package (schola.agents,
    .scenarios, .conf mapped as the editable install maps them) and a dist-info with its entry points, so the code
    of a checkout reads its own entry points even after the environment's install changed."""
    pkg = into / "schola"
    pkg.mkdir(parents=True)
    for p in (tree / "schola").iterdir():
        if p.name not in MAPPED:
            (pkg / p.name).symlink_to(p)
    for name, folder in MAPPED.items():
        (pkg / name).symlink_to(tree / folder)
    project = tomllib.loads((tree / "pyproject.toml").read_text())["project"]
    info = into / f"schola-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: schola\nVersion: {project['version']}\n")
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
             for group, eps in project.get("entry-points", {}).items()]  # fmt: skip
    (info / "entry_points.txt").write_text("\n".join(lines))
    return into


def env_of(path: Path, cache: Path | None) -> dict[str, str]:
    """The environment of a child that runs the schola of `path` (an `overlay`), with its own reply cache beside
    it; `cache`: a private PYTHONPYCACHEPREFIX, so children read compiled bytecode as an installed package does."""
    env = {**os.environ, "PYTHONPATH": str(path), "SCHOLA_CACHE_DIR": str(path.parent / "cache")}
    if cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


_TREES: list[tempfile.TemporaryDirectory[str]] = []  # the overlays of `installed`, removed when the script exits


def installed(tree: Path) -> dict[str, str]:
    """The environment of a child that runs the checkout `tree` as installed (`env_of` an `overlay` of it, in a
    temporary folder removed when the script exits)."""
    folder = tempfile.TemporaryDirectory(prefix="schola-tree-")
    _TREES.append(folder)
    return env_of(overlay(tree.resolve(), Path(folder.name) / "path"), None)


def child_cpu(call: Callable[[], T]) -> tuple[T, float]:
    """What `call` returns, and the CPU seconds (user + system) of the child processes it waited for: this
    process's RUSAGE_CHILDREN before and after (a grandchild counts once its parent has waited for it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = call()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
