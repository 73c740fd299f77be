"""Start-up: CPU time of `schola --help`, `list`, `check scenario=lbt` and `show RUN`, each a fresh process.

CPU time (user + system of the child, from resource.getrusage), not wall: on a shared machine the wall time is
mostly other people's load, the CPU time is the command's own. Each command runs `--rounds` times, interleaved
(one of each per round), and the median is reported, with the load average before and after and how many modules
the command imported (`python -X importtime`). Targets: list and check under 0.5 s of CPU, --help and show under
0.15 s. Writes benchmarks/results/startup.json.

    python benchmarks/startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import save

SCHOLA = [sys.executable, "-m", "schola.cli"]
TARGETS = {"help": 0.15, "show": 0.15, "list": 0.5, "check": 0.5}


def cpu_of(args: list[str], cwd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one `schola ARGS` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([*SCHOLA, *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(
            f"schola {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def modules_of(args: list[str], cwd: Path) -> dict[str, Any]:
    """How many modules the command imports, and whether numpy and scipy are among them."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "schola.cli", *args], cwd=cwd,
                          capture_output=True, text=True)  # fmt: skip
    names = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {"modules": len(names) - 1, "numpy": "numpy" in names, "scipy": "scipy" in names}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="schola-startup-") as tmp:
        folder = Path(tmp)
        run = folder / "run"
        subprocess.run([*SCHOLA, "run", "scenario=lbt", "backend=scripted", "run.episodes=2",
                        f"cache.dir={folder / 'cache'}", f"hydra.run.dir={run}"], cwd=folder, check=True,
                       capture_output=True)  # fmt: skip
        commands = {
            "help": ["--help"],
            "show": ["show", str(run)],
            "list": ["list"],
            "check": ["check", "scenario=lbt", "backend=scripted"],
        }
        load_before = os.getloadavg()
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(a.rounds):
            for name, args in commands.items():
                samples[name].append(cpu_of(args, folder))
        load_after = os.getloadavg()
        imports = {name: modules_of(args, folder) for name, args in commands.items()}
    results = {}
    for name, pts in samples.items():
        cpu = statistics.median(c for c, _ in pts)
        wall = statistics.median(w for _, w in pts)
        results[name] = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "target_cpu_s": TARGETS[name],
                         "met": cpu < TARGETS[name], **imports[name],
                         "cpu_samples": [round(c, 3) for c, _ in pts]}  # fmt: skip
        print(f"{name:>6}: CPU {cpu:.3f} s (target < {TARGETS[name]}), wall {wall:.3f} s, "
              f"{imports[name]['modules']} modules, numpy {imports[name]['numpy']}, scipy {imports[name]['scipy']}")  # fmt: skip
    save("startup", {"rounds": a.rounds, "load_average": {"before": load_before, "after": load_after},
                     "commands": results})  # fmt: skip


if __name__ == "__main__":
    main()
