"""Scale: time and peak RSS per episode and per agent, from 10 to 10,000, on the scripted backend.

Two axes, each point a fresh `schola` process (so its peak RSS is its own, read with os.wait4):
  episodes  a question-answer scenario (one agent step, one score step) over N records read from a JSONL file;
  agents    one episode in which a teacher explains and a group of M students (roles in the scenario YAML) each
            answer, mapped over the group, then a join.
For each point: `schola check` (start-up and configuration only) and `schola run` (everything: configuration,
the episodes, the stages, the run directory), its wall and CPU time (CPU time is what to compare on a busy
machine); `engine_s` is the run's own clock (ledger.json wall_s).
Targets: time and memory linear in N and M (episodes: peak RSS flat in N, a run being a stream) (the log-log slope between the two largest sizes near 1), and a
10,000-agent run under 1 GiB. Writes benchmarks/results/scale.json and scale.png.

    python benchmarks/scale.py [--sizes 10 100 1000 10000] [--axis episodes agents] [--repeat 1] [--profile]
    python benchmarks/scale.py --axis episodes --sizes 1000 10000 --million   # + 100,000 and 1,000,000
    python benchmarks/scale.py --axis episodes --sizes 100000 --repeat 3 --before /tmp/old   # side by side

`--before TREE` measures the code in TREE (a `git worktree` of an earlier commit, run as installed from its own
pyproject.toml: `_common.overlay`) beside this code, in interleaved rounds (which goes first alternates), and gives
the median of the per-round ratios (after / before) of wall, CPU, peak RSS and the end of the run.

`--profile` also profiles the configuration of the largest agent group in-process (cProfile, top entries).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import math
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, installed, save

SCHOLA = [sys.executable, "-m", "schola.cli"]
RULES = [{"match": "What is (\\d+)", "reply": "{{ numbers(prompt)[0] + 1 }}"}]
GIB = 2**30


def episodes_scenario(n: int, folder: Path) -> Path:
    data = folder / "records.jsonl"
    with data.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n")
    return write(folder, {
        "name": "scale_episodes",
        "data": {"path": str(data)},
        "roles": {"student": {"role": "student"}},
        "graph": [
            {"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"},
            {"id": "ok", "kind": "score", "scorer": "numeric_match",
             "inputs": {"prediction": "reply", "target": "answer"}, "output": "correct"},
        ],
        "scripted": RULES,
    })  # fmt: skip


def agents_scenario(m: int, folder: Path) -> Path:
    return write(folder, {
        "name": "scale_agents",
        "data": {"records": [{"id": "e0", "question": "What is 6 + 1?", "answer": "7"}]},
        "roles": {"teacher": {"role": "teacher"},
                  "students": [{"role": "student", "persona": f"student {i}"} for i in range(m)]},
        "graph": [
            {"id": "explain", "kind": "agent", "role": "teacher", "prompt": "Explain: {{ question }}",
             "output": "explanation"},
            {"id": "class", "kind": "map", "over": {"student": "roles.students"}, "collect": {"right": "correct"},
             "steps": [
                 {"id": "answer", "kind": "agent", "role": "{{ student.name }}",
                  "prompt": "What is 6 + 1? (the teacher says: {{ explanation }})", "output": "reply"},
                 {"id": "ok", "kind": "score", "scorer": "numeric_match",
                  "inputs": {"prediction": "reply", "target": "answer"}, "output": "correct"},
             ]},
            {"id": "all", "kind": "join", "inputs": ["right"], "reduce": "sum", "output": "right_total"},
        ],
        "scripted": RULES,
    })  # fmt: skip


def write(folder: Path, scenario: dict[str, Any]) -> Path:
    path = folder / f"{scenario['name']}.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


@functools.cache
def tree_env(tree: str | None) -> dict[str, str] | None:
    """The environment that runs the code in `tree` as installed from its own pyproject.toml (`_common.overlay`: its
    package and entry points; None: this checkout's, as installed)."""
    if tree is None:
        return None
    return installed(Path(tree))


def schola_file(tree: str | None) -> str:
    """Where `import schola` finds it in a process run as `measure` runs one (checks that `--before` took)."""
    out = subprocess.run([sys.executable, "-c", "import schola; print(schola.__file__)"], env=tree_env(tree),
                         cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip()


def measure(args: list[str], cwd: Path, tree: str | None = None) -> dict[str, Any]:
    """Run `schola ARGS` in a fresh process; its wall time and its own peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen([*SCHOLA, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=tree_env(tree))  # fmt: skip
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    ended = time.time()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"schola {' '.join(args)} failed ({code}):\n{out[-3000:]}")
    return {"wall_s": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "ended": ended}  # fmt: skip


def point(axis: str, size: int, repeat: int = 1) -> dict[str, Any]:
    """The median of `repeat` measurements (by run wall time; the fastest would report the luckiest round), with
    every round's run wall, CPU and peak RSS kept beside it and the load average while it ran."""
    load = os.getloadavg()
    rounds = sorted((measure_point(axis, size) for _ in range(repeat)), key=lambda p: p["run"]["wall_s"])
    pt = rounds[(len(rounds) - 1) // 2]
    pt["rounds"] = [r["run"] for r in rounds]
    pt["load_average"] = {"before": load, "after": os.getloadavg()}
    return pt


def measure_point(axis: str, size: int, tree: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="schola-scale-") as tmp:
        folder = Path(tmp)
        path = (episodes_scenario if axis == "episodes" else agents_scenario)(size, folder)
        common = [str(path), "backend=scripted", f"cache.dir={folder / 'cache'}"]
        check = measure(["check", *common], folder, tree)
        run_dir = folder / "run"
        load = os.getloadavg()[0]
        run = measure(["run", *common, f"hydra.run.dir={run_dir}"], folder, tree)
        run["load_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        engine = json.loads((run_dir / "ledger.json").read_text())["wall_s"]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["status"] == "finished", metrics
        transcript = run_dir / "transcript.jsonl"
        replies = sum(1 for _ in transcript.open())
        # the end of the run: from the last reply (the transcript's last write; this scenario has no stage that
        # asks a role) to the process's exit: episode rows, the sort, metrics.json, status.json and report.html
        end_s = run.pop("ended") - transcript.stat().st_mtime
        run["end_phase_s"] = round(end_s, 3)
        run["end_phase_share"] = round(end_s / run["wall_s"], 4)
        run["transcript_mb"] = round(transcript.stat().st_size / 1e6, 1)
        run["results_mb"] = round((run_dir / "results.jsonl").stat().st_size / 1e6, 1)
        run["report_mb"] = round((run_dir / "report.html").stat().st_size / 1e6, 1)
        check.pop("ended")
    expected = size if axis == "episodes" else size + 1
    assert replies == expected, (axis, size, replies)
    return {"axis": axis, "size": size, "replies": replies, "check": check, "run": run, "engine_s": engine,
            "run_per_unit_ms": round(1000 * run["wall_s"] / size, 3),
            "engine_per_unit_ms": round(1000 * engine / size, 3),
            "check_per_unit_ms": round(1000 * check["wall_s"] / size, 3)}  # fmt: skip


def side_by_side(axis: str, size: int, rounds: int, before: str) -> dict[str, Any]:
    """This code and the code in `before`, `rounds` times each, interleaved (which goes first alternates): every
    round's figures and the median of the per-round ratios (after / before)."""
    keys = ("wall_s", "cpu_s", "peak_rss_mb", "end_phase_s", "end_phase_share")
    pairs = []
    for i in range(rounds):
        order = ("before", "after") if i % 2 == 0 else ("after", "before")
        got = {name: measure_point(axis, size, before if name == "before" else None)["run"] for name in order}
        pairs.append(got)
        print(f"round {i + 1}: " + "; ".join(
            f"{name} wall {r['wall_s']:.2f} s cpu {r['cpu_s']:.2f} s rss {r['peak_rss_mb']:.1f} MB "
            f"end {r['end_phase_s']:.2f} s ({100 * r['end_phase_share']:.1f}%) load {r['load_1min']}"
            for name, r in got.items()), flush=True)  # fmt: skip
    ratios = {k: statistics.median(p["after"][k] / p["before"][k] for p in pairs if p["before"][k]) for k in keys}
    return {"axis": axis, "size": size, "rounds": pairs, "median_ratio_after_over_before": ratios,
            "median": {name: {k: statistics.median(p[name][k] for p in pairs) for k in keys}
                       for name in ("before", "after")},
            "schola_file": {"before": schola_file(before), "after": schola_file(None)}}  # fmt: skip


def slope(points: list[dict[str, Any]], value: Any) -> float | None:
    """The log-log slope of `value` between the two largest sizes (1: linear; 2: quadratic)."""
    if len(points) < 2:
        return None
    a, b = points[-2], points[-1]
    va, vb = value(a), value(b)
    if va <= 0 or vb <= 0:
        return None
    return round(math.log(vb / va) / math.log(b["size"] / a["size"]), 2)


def profile_config(m: int) -> list[str]:
    """cProfile of `schola check` on an m-role group, in this process: the top entries by cumulative time."""
    from schola.cli import main

    with tempfile.TemporaryDirectory(prefix="schola-scale-") as tmp:
        path = agents_scenario(m, Path(tmp))
        prof = cProfile.Profile()
        prof.enable()
        code = main(["check", str(path), "backend=scripted"])
        prof.disable()
        assert code == 0
    lines = []
    for order, top in (("cumulative", 25), ("tottime", 12)):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(order).print_stats(top)
        lines += [f"-- by {order}"] + [line for line in buf.getvalue().splitlines() if line.strip()][3 : 5 + top]
    return lines


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (t_ax, m_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, pts in results.items():
        sizes = [p["size"] for p in pts]
        t_ax.plot(sizes, [p["run"]["cpu_s"] for p in pts], "o-", label=f"{axis}: schola run, CPU")
        t_ax.plot(sizes, [p["engine_s"] for p in pts], "s--", label=f"{axis}: the run's own clock")
        t_ax.plot(sizes, [p["check"]["cpu_s"] for p in pts], "^:", label=f"{axis}: schola check, CPU")
        m_ax.plot(sizes, [p["run"]["peak_rss_mb"] for p in pts], "o-", label=f"{axis}: schola run")
    lo, hi = (
        min(p["size"] for pts in results.values() for p in pts),
        max(p["size"] for pts in results.values() for p in pts),
    )
    t_ax.plot([lo, hi], [0.01, 0.01 * hi / lo], color="grey", lw=0.8, label="linear (slope 1)")
    m_ax.axhline(1024, color="red", lw=0.8, label="1 GiB (target for 10,000 agents)")
    t_ax.set_yscale("log")
    m_ax.set_ylim(0, 1100)
    for ax, title, unit in ((t_ax, "time", "seconds"), (m_ax, "peak RSS", "MB")):
        ax.set_xscale("log")
        ax.set_xlabel("episodes, or agents in one episode")
        ax.set_ylabel(unit)
        ax.set_title(f"Schola scale: {title} (scripted backend)")
        ax.grid(True, which="both", lw=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    p.add_argument("--axis", nargs="+", choices=["episodes", "agents"], default=["episodes", "agents"])
    p.add_argument("--repeat", type=int, default=1, help="measure each point this often; keep the median")
    p.add_argument("--million", action="store_true", help="add 100,000 and 1,000,000 episodes (hours on 2 cores)")
    p.add_argument("--profile", action="store_true", help="profile the configuration of the largest agent group")
    p.add_argument("--name", default="scale", help="results/<name>.json and .png (a smoke run: --name scale_smoke)")
    p.add_argument("--before", metavar="TREE", help="measure the code in TREE beside this code (--repeat rounds)")
    a = p.parse_args()
    if a.before:
        compared = [side_by_side(axis, size, a.repeat, a.before) for axis in a.axis for size in a.sizes]
        for c in compared:
            print(f"{c['axis']} {c['size']}: after/before (median of {a.repeat} rounds): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in c["median_ratio_after_over_before"].items()))  # fmt: skip
        save(a.name, {"command": " ".join(["python", *sys.argv]), "side_by_side": compared})
        return
    results: dict[str, list[dict[str, Any]]] = {}
    for axis in a.axis:
        results[axis] = []
        sizes = sorted({*a.sizes, *((100_000, 1_000_000) if a.million and axis == "episodes" else ())})
        for size in sizes:
            pt = point(axis, size, a.repeat)
            print(f"{axis:>8} {size:>6}: run {pt['run']['wall_s']:8.2f} s ({pt['run_per_unit_ms']:.2f} ms each), "
                  f"cpu {pt['run']['cpu_s']:7.2f} s, engine {pt['engine_s']:7.2f} s, check {pt['check']['wall_s']:7.2f} s, "
                  f"peak RSS {pt['run']['peak_rss_mb']:7.1f} MB, end of run {pt['run']['end_phase_s']:.2f} s "
                  f"({100 * pt['run']['end_phase_share']:.1f}%), transcript {pt['run']['transcript_mb']} MB, "
                  f"load {pt['load_average']['after'][0]:.1f}", flush=True)  # fmt: skip
            results[axis].append(pt)
    payload: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "points": results, "slopes": {}}
    for axis, pts in results.items():
        first = pts[0]
        payload["slopes"][axis] = {  # of the cost above the smallest run's (start-up, imports), which is fixed
            "run_s": slope(pts, lambda q, f=first: q["run"]["wall_s"] - f["run"]["wall_s"]),
            "run_cpu_s": slope(pts, lambda q, f=first: q["run"]["cpu_s"] - f["run"]["cpu_s"]),
            "engine_s": slope(pts, lambda q: q["engine_s"]),
            "check_s": slope(pts, lambda q, f=first: q["check"]["wall_s"] - f["check"]["wall_s"]),
            "peak_rss_mb": slope(pts, lambda q, f=first: q["run"]["peak_rss_mb"] - f["run"]["peak_rss_mb"]),
        }
        for q in pts[1:]:  # the marginal cost of one more episode or agent
            q["marginal"] = {
                "run_ms": round(1000 * (q["run"]["wall_s"] - first["run"]["wall_s"]) / (q["size"] - first["size"]), 3),
                "cpu_ms": round(1000 * (q["run"]["cpu_s"] - first["run"]["cpu_s"]) / (q["size"] - first["size"]), 3),
                "rss_kb": round(
                    1024 * (q["run"]["peak_rss_mb"] - first["run"]["peak_rss_mb"]) / (q["size"] - first["size"]), 2
                ),
            }
    if "agents" in results and results["agents"][-1]["size"] >= 10_000:
        payload["agents_10000_peak_rss_mb"] = results["agents"][-1]["run"]["peak_rss_mb"]
        payload["agents_10000_under_1_gib"] = results["agents"][-1]["run"]["peak_rss_mb"] * 2**20 < GIB
    if a.profile:
        payload["profile_config"] = profile_config(max(a.sizes))
    png = RESULTS / f"{a.name}.png"
    RESULTS.mkdir(exist_ok=True)
    plot(results, png)
    payload["plot"] = str(png.relative_to(Path(__file__).parent) if png.is_relative_to(Path(__file__).parent) else png)
    save(a.name, payload)


if __name__ == "__main__":
    main()
