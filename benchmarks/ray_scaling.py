"""Ray scaling: one scenario run of N one-reply episodes against the stub (benchmarks/stub_server.py, a separate
process answering every request after --delay-ms), three ways side by side: the local executor, `run.executor=ray`
with 1 worker, and with 2 workers (a local Ray that the run starts itself: run.ray.address unset).

Each measurement is a fresh Python process (so Ray starts and stops as it does for `schola run`, and its CPU is
its own) running the run through RunDriver, the CLI's path, with transcript, results and ledger on (the cache
off: each round must ask the stub again). Paths run in interleaved rounds, their order rotated each round; the
ratios are medians of per-round ratios. For every run:
  end_to_end_s   RunDriver.execute(): start-up, episodes, stages and report.html
  ray_start_s    Ray's own start-up (ray.init), then workers_ready_s: until every worker built its plan
                 (RayExecutor.startup; absent from code before it); after_ray_start_s: end_to_end_s without ray.init
  first_s        until the first episode's result was written (the first reply)
  steady_eps     episodes per second between the first and the last result
  cpu_s          CPU of the run's process tree as it is reaped (RUSAGE_CHILDREN of this script around it): the
                 driver and Ray's daemons; a Ray worker killed with its raylet may be reaped by init instead, so
                 read it as a lower bound for Ray paths. driver_cpu_s: the run's own process; stub_cpu_s: the stub's
Targets (issue 18): ray with 2 workers >= 1.6x ray with 1 worker end to end, Ray's start-up reported apart.

    python benchmarks/ray_scaling.py [--episodes 10000] [--rounds 3] [--delay-ms 50] [--concurrency 256]
    python benchmarks/ray_scaling.py --trees before=/tmp/old after=/tmp/new   # two checkouts, side by side

With --trees, every path runs on each checkout in the same rounds, as installed from the checkout's own
pyproject.toml (`_common.overlay` first on PYTHONPATH, which Ray's workers inherit: its package and entry points),
and each path's after/before ratio is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from stub_server import start_stub

PATHS = {"local": None, "ray1": 1, "ray2": 2}  # name: Ray workers (None: the local executor)
Tree = tuple[dict[str, str], Path]  # a checkout's environment (`env_of` its overlay) and its folder


def config(base: str, n: int, conc: int, workers: int | None, tmp: str) -> dict[str, Any]:
    run: dict[str, Any] = {"episodes": None, "concurrency": conc}
    if workers is not None:
        run |= {"executor": "ray", "ray": {"workers": workers}}
    return {
        "seed": 0,
        "run": run,
        "cache": {"enabled": False, "dir": f"{tmp}/cache"},
        "backend": {"kind": "openai", "model": "stub", "base_url": base, "max_concurrency": conc, "max_tokens": 16},
        "scenario": {
            "name": "ray_scaling",
            "data": {"records": [{"id": f"e{i}", "question": f"What is {i} + {i}?"} for i in range(n)]},
            "roles": {"student": {"role": "student"}},
            "graph": [{"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"}],
        },
    }


def child(path: str, base: str, n: int, conc: int) -> dict[str, Any]:
    """One run, in this (fresh) process; what it measured, as a dict."""
    import schola
    from schola.plan import build_plan
    from schola.runtime import RunDriver
    from schola.schema import Files
    from schola.store import RunStore, read_jsonl

    marks: list[float] = []

    def progress(done: int, total: int, ledger: Any) -> None:
        if done and (not marks or done == total):
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        plan = build_plan(config(base, n, conc, PATHS[path], tmp), Files())
        runner = RunDriver(plan, RunStore(f"{tmp}/run"), progress=progress)
        start, cpu = time.perf_counter(), time.process_time()
        outcome = asyncio.run(runner.execute())
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert outcome.status == "finished", outcome.message
        replies = [r["outputs"]["reply"] for r in read_jsonl(Path(tmp) / "run" / "results.jsonl")]
        assert len(replies) == n and set(replies) == {"An answer."}, (len(replies), set(replies))
    startup = dict(getattr(runner._executor, "startup", None) or {})
    if startup or PATHS[path] is None:  # the run once Ray was up (the local executor has no Ray to start)
        startup["after_ray_start_s"] = wall - startup.get("ray_start_s", 0.0)
    first, last = marks[0] - start, marks[-1] - start
    return {"path": path, "schola": str(Path(schola.__file__).resolve()), "end_to_end_s": wall, "driver_cpu_s": cpu, "first_s": first,
            "steady_eps": (n - 1) / (last - first) if last > first else None, **startup}  # fmt: skip


def proc_cpu(pid: int) -> float:
    """A process's CPU seconds so far (utime + stime, /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(path: str, tree: Tree | None, base: str, n: int, conc: int, stub: int, timeout: float) -> dict[str, Any]:
    stub_before, load = proc_cpu(stub), os.getloadavg()
    argv = [sys.executable, __file__, "--child", path, "--base", base, "--episodes", str(n), "--concurrency", str(conc)]
    # run in the checkout: Ray puts the driver's folder first on its workers' sys.path
    env, cwd = tree if tree else (None, None)
    done, cpu = child_cpu(
        lambda: subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    )
    if done.returncode:
        raise SystemExit(f"{path} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    out["cpu_s"] = cpu
    out["stub_cpu_s"] = proc_cpu(stub) - stub_before
    out["load_average"] = load
    print(f"{path:12s} end to end {out['end_to_end_s']:6.1f} s  first reply {out['first_s']:5.1f} s  "
          f"steady {out['steady_eps'] or 0:7.1f} ep/s  ray start {out.get('ray_start_s', float('nan')):4.1f} s  "
          f"workers ready {out.get('workers_ready_s', float('nan')):4.1f} s  CPU {out['cpu_s']:5.1f} s "
          f"(driver {out['driver_cpu_s']:5.1f}, stub {out['stub_cpu_s']:4.1f})  load {load[0]:.1f}", flush=True)  # fmt: skip
    return out


def ratios(runs: dict[str, list[dict[str, Any]]], a: str, b: str) -> dict[str, Any]:
    """Per round: how much faster `a` was than `b` (end to end, and steady state); medians over the rounds."""
    pairs = list(zip(runs[a], runs[b], strict=True))
    e2e = [y["end_to_end_s"] / x["end_to_end_s"] for x, y in pairs]
    steady = [x["steady_eps"] / y["steady_eps"] for x, y in pairs]
    out = {"end_to_end": statistics.median(e2e), "steady": statistics.median(steady),
           "end_to_end_per_round": [round(r, 3) for r in e2e], "steady_per_round": [round(r, 3) for r in steady]}  # fmt: skip
    if all("after_ray_start_s" in r for pair in pairs for r in pair):  # Ray's own start-up left out
        up = [y["after_ray_start_s"] / x["after_ray_start_s"] for x, y in pairs]
        out |= {"after_ray_start": statistics.median(up), "after_ray_start_per_round": [round(r, 3) for r in up]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--concurrency", type=int, default=256, help="run.concurrency and the backend's max_concurrency")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    p.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    p.add_argument("--name", default="ray_scaling", help="the results file's name")
    p.add_argument("--trees", nargs="+", default=[], metavar="NAME=DIR", help="checkouts to run each path on")
    p.add_argument("--child", choices=list(PATHS), help=argparse.SUPPRESS)
    p.add_argument("--base", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.base, a.episodes, a.concurrency)))
        return
    trees = dict(t.split("=", 1) for t in a.trees) or {"": ""}
    names = [f"{path}@{tree}" if tree else path for tree in trees for path in a.paths]
    overlays = tempfile.TemporaryDirectory(prefix="schola-ray-trees-")
    installed = {name: (env_of(overlay(Path(d).resolve(), Path(overlays.name) / name / "path"), None), Path(d).resolve())
                 for name, d in trees.items() if d}  # fmt: skip
    proc, base = start_stub(delay_ms=a.delay_ms)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    load_before = os.getloadavg()
    try:
        for r in range(a.rounds):  # interleaved, the order rotated: machine noise falls on every path alike
            for name in names[r % len(names) :] + names[: r % len(names)]:
                path, _, tree = name.partition("@")
                runs[name].append(measure(path, installed.get(tree), base, a.episodes, a.concurrency, proc.pid,
                                          a.timeout))  # fmt: skip
    finally:
        proc.kill()
        overlays.cleanup()
    keys = ("end_to_end_s", "after_ray_start_s", "first_s", "steady_eps", "cpu_s", "driver_cpu_s", "stub_cpu_s",
            "ray_start_s", "workers_ready_s")  # fmt: skip
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in keys if all(r.get(k) is not None for r in rs)}
               for name, rs in runs.items()}  # fmt: skip
    result: dict[str, Any] = {
        "command": "python benchmarks/ray_scaling.py " + " ".join(sys.argv[1:]),
        "episodes": a.episodes, "rounds": a.rounds, "stub_delay_ms": a.delay_ms, "concurrency": a.concurrency,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "medians": medians, "runs": runs,
    }  # fmt: skip
    for tree in trees:
        at = f"@{tree}" if tree else ""
        for x, y in (("ray2", "ray1"), ("ray2", "local"), ("ray1", "local")):
            if x + at in runs and y + at in runs:
                result[f"{x}_vs_{y}{at}"] = ratios(runs, x + at, y + at)
    if len(trees) == 2:  # each path on the second checkout against the first
        first, second = trees
        for path in a.paths:
            result[f"{path}@{second}_vs_{first}"] = ratios(runs, f"{path}@{second}", f"{path}@{first}")
    result["target_met"] = {k: v["end_to_end"] >= 1.6 for k, v in result.items() if k.startswith("ray2_vs_ray1")}
    result["trees"] = trees
    save(a.name, result)


if __name__ == "__main__":
    main()
