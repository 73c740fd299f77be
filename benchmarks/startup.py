"""Start-up: CPU time of `schola --help`, `list`, `check scenario=lbt` and `show RUN`, each a fresh process.

CPU time (user + system of the child, from resource.getrusage), not wall: on a shared machine the wall time is
mostly other people's load, the CPU time is the command's own. Each command runs `--rounds` times, interleaved
(one of each per round, and with `--before DIR` the code there right beside it), and the median is reported, with
the load average before and after and how many modules the command imported (`python -X importtime`). Targets:
list and check under 0.5 s of CPU, --help and show under 0.15 s. Writes benchmarks/results/startup.json.

Each tree runs as installed from its own pyproject.toml: an overlay folder on PYTHONPATH holds `schola` (the tree's
package with its agents/, scenarios/ and conf/ where the editable install maps them) and a dist-info with the tree's
entry points, so the code before reads its own entry points even after the environment's install changed. Children
read compiled bytecode as an installed package does (a private PYTHONPYCACHEPREFIX, written by an uncounted first
round): PYTHONDONTWRITEBYTECODE in this environment otherwise recompiles every edited module at every start.

    python benchmarks/startup.py [--rounds 5] [--before DIR] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import child_cpu, env_of, overlay, save

ROOT = Path(__file__).resolve().parents[1]
SCHOLA = [sys.executable, "-m", "schola.cli"]
TARGETS = {"help": 0.15, "show": 0.15, "list": 0.5, "check": 0.5}


def cpu_of(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one `schola ARGS` in a fresh process."""
    start = time.perf_counter()
    proc, cpu = child_cpu(lambda: subprocess.run([*SCHOLA, *args], cwd=cwd, capture_output=True, text=True, env=env))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"schola {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return cpu, wall


def modules_of(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """How many modules the command imports, and whether numpy, scipy, autogen_core and rich are among them."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "schola.cli", *args], cwd=cwd,
                          capture_output=True, text=True, env=env)  # fmt: skip
    names = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {"modules": len(names) - 1, **{m: m in names for m in ("numpy", "scipy", "autogen_core", "rich")}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--before", type=Path, help="a checkout of the code before (git worktree add), run beside")
    p.add_argument("--no-bytecode", action="store_true", help="leave PYTHONDONTWRITEBYTECODE as the caller has it")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="schola-startup-") as tmp:
        folder = Path(tmp)
        trees = {"after": ROOT, **({"before": a.before.resolve()} if a.before else {})}
        envs = {name: env_of(overlay(tree, folder / name / "path"), None if a.no_bytecode else folder / name / "pyc")
                for name, tree in trees.items()}  # fmt: skip
        run = folder / "run"
        subprocess.run([*SCHOLA, "run", "scenario=lbt", "backend=scripted", "run.episodes=2",
                        f"hydra.run.dir={run}"], cwd=folder, check=True, capture_output=True, env=envs["after"])  # fmt: skip
        commands = {
            "help": ["--help"],
            "show": ["show", str(run)],
            "list": ["list"],
            "check": ["check", "scenario=lbt", "backend=scripted"],
        }
        for env in envs.values():  # the uncounted round: writes each tree's bytecode
            for args in commands.values():
                cpu_of(args, folder, env)
        load_before = os.getloadavg()
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {(t, c): [] for t in envs for c in commands}
        loads = []
        for _ in range(a.rounds):
            loads.append(os.getloadavg()[0])
            for name, args in commands.items():
                for tree, env in envs.items():
                    samples[tree, name].append(cpu_of(args, folder, env))
        load_after = os.getloadavg()
        imports = {(t, c): modules_of(args, folder, envs[t]) for t in envs for c, args in commands.items()}
    results: dict[str, Any] = {}
    for (tree, name), pts in samples.items():
        cpu = statistics.median(c for c, _ in pts)
        wall = statistics.median(w for _, w in pts)
        row = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "target_cpu_s": TARGETS[name],
               "met": cpu < TARGETS[name], **imports[tree, name], "cpu_samples": [round(c, 3) for c, _ in pts]}  # fmt: skip
        if tree == "after" and "before" in envs:
            ratios = [n[0] / b[0] for n, b in zip(pts, samples["before", name])]
            row["cpu_ratio_to_before"] = round(statistics.median(ratios), 3)  # median of the per-round ratios
        results.setdefault(tree, {})[name] = row
        print(f"{tree:>6} {name:>6}: CPU {cpu:.3f} s (target < {TARGETS[name]}), wall {wall:.3f} s, "
              f"{imports[tree, name]['modules']} modules"
              + (f", {row['cpu_ratio_to_before']}x the code before" if "cpu_ratio_to_before" in row else ""))  # fmt: skip
    save("startup", {"rounds": a.rounds, "bytecode": "cached" if not a.no_bytecode else "as the environment has it",
                     "before": str(a.before) if a.before else None,
                     "load_average": {"before": load_before, "after": load_after, "per_round": loads},
                     "commands": results})  # fmt: skip


if __name__ == "__main__":
    main()
