"""Client saturation: how many requests a second each client path gets from one OpenAI-compatible server, and
the client CPU each request costs, side by side in one run against the stub (benchmarks/stub_server.py) in a
separate process answering every request after 50 ms. The paths the target compares run --repeat interleaved
rounds (medians reported); the others once.

Paths, each doing the same requests (the same JSON body, the reply's text read back):
  schola_run            a real `schola run` in a subprocess: a one-step scenario (SCENARIO.yaml and a data file of
                        questions), backend=openai pointing at the stub, max_concurrency = the concurrency, every
                        other key its default (cache, transcript, results, report on). The child is the CLI's own
                        entry point with RunDriver.execute timed (CHILD): requests/s and CPU per request are taken
                        over that one window (preflight, the episodes, the stages, closing the backends and the
                        cache: what the bare loop's timing covers, and more), the CPU less the same window's in a
                        one-episode run of the same command (what no request costs), times n / (n - 1). The whole
                        process (getrusage of the child, start-up and report.html included) less the one-episode
                        run's is reported beside it (`cpu_whole`): start-up is ~0.9 s of CPU and varies by +-0.1 s
                        from run to run, so over 2,000 requests that difference moves +-0.05 ms a request (a third
                        of the bare loop's CPU) and over 200 (concurrency 1) it went negative
  schola_openai         Schola's `openai` backend (aiohttp), called directly: cache, retries, ledger all on
  schola_openai_engine  the same backend through the real engine: a scenario run, one agent step an episode,
                        run.concurrency = the concurrency (transcript, results, cache on)
  bare_aiohttp          a bare asyncio loop over aiohttp: what schola_openai is held against
  bare_openai_sdk       a bare loop over the openai SDK's AsyncOpenAI, httpx pool sized to the concurrency
  bare_httpx            a bare loop over httpx, pool sized to the concurrency
  schola_litellm        Schola's `litellm` backend, called directly (LiteLLM imported before the clock)
  bare_litellm          a bare loop over litellm.acompletion
For every path and concurrency: requests/s, client CPU ms per request (process time), and the mean number of
requests in flight (time in flight over wall time: exact, and no sampler's CPU) over the configured concurrency.
Targets (issue 18): schola_run and schola_openai >= 0.9x bare_aiohttp's requests/s and <= 1.2x its CPU per request
at every concurrency, as the median of per-round ratios; >= 176 requests/s (2x the 88 of Schola + LiteLLM before)
at 64. Also: LiteLLM log lines per request before and after Schola quiets them, and the engine at
run.concurrency=8 with 64 requests allowed in flight.

--pin (the default where taskset exists and two CPUs are allowed): the stub runs alone on the second CPU (taskset)
and this process, with every client path and the `schola run` child, on the first, so a client short of CPU is
reproducible: with the client on one core, requests/s = 1 / (CPU per request) once the server is not the limit.

    python benchmarks/client_saturation.py [--concurrency 1 8 64 256] [--requests 2000] [--paths ...] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, child_cpu, installed, save
from stub_server import start_stub

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
Measure = Callable[[str, int, int], Awaitable[dict[str, Any]]]
PATH_TIMEOUT_S = 300.0


def body(i: int) -> dict[str, Any]:
    return {"model": "stub", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}], "max_tokens": 16}


async def timed(
    n: int, conc: int, call: Callable[[int], Awaitable[str]], busy: Callable[[], float] | None = None
) -> dict[str, Any]:
    """`n` calls, `conc` at a time (a semaphore), timed. The mean number in flight is exact, by Little's law: the
    seconds requests spent in flight (`busy()`, the backend's ledger, or timed here) over the wall time."""
    sem, spent = asyncio.Semaphore(conc), [0.0]

    async def one(i: int) -> str:
        async with sem:
            start = time.perf_counter()
            try:
                return await call(i)
            finally:
                spent[0] += time.perf_counter() - start

    wall, cpu = time.perf_counter(), time.process_time()
    texts = await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert all(t == "An answer." for t in texts), texts[:3]
    return {"requests": n, "seconds": wall, "inflight_mean": (busy() if busy else spent[0]) / wall, "cpu_s": cpu}


async def bare_aiohttp(base: str, conc: int, n: int) -> dict[str, Any]:
    import aiohttp

    url, headers = base + "/chat/completions", {"Content-Type": "application/json", "Authorization": "Bearer x"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:

        async def call(i: int) -> str:
            async with session.post(url, data=json.dumps(body(i)).encode(), headers=headers) as r:
                return str(json.loads(await r.read())["choices"][0]["message"]["content"])

        return await timed(n, conc, call)


async def bare_httpx(base: str, conc: int, n: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def call(i: int) -> str:
            r = await http.post(base + "/chat/completions", json=body(i), headers={"Authorization": "Bearer x"})
            return str(r.json()["choices"][0]["message"]["content"])

        return await timed(n, conc, call)


async def bare_openai_sdk(base: str, conc: int, n: int) -> dict[str, Any]:
    import httpx
    import openai

    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    http = httpx.AsyncClient(limits=limits, timeout=60)
    async with openai.AsyncOpenAI(base_url=base, api_key="x", http_client=http, max_retries=0) as client:

        async def call(i: int) -> str:
            r = await client.chat.completions.create(**body(i))
            return str(r.choices[0].message.content)

        return await timed(n, conc, call)


async def bare_litellm(base: str, conc: int, n: int) -> dict[str, Any]:
    from schola.backends.litellm import import_litellm

    litellm = import_litellm()

    async def call(i: int) -> str:
        b = body(i)
        r = await litellm.acompletion(model="openai/stub", messages=b["messages"], max_tokens=16, api_base=base,
                                      api_key="x", num_retries=0)  # fmt: skip
        return str(r.choices[0].message.content)

    return await timed(n, conc, call)


async def schola_backend(kind: str, base: str, conc: int, n: int) -> dict[str, Any]:
    from autogen_core.models import UserMessage

    from schola import plugins
    from schola.backends.cache import Cache
    from schola.types import CallInfo

    model = "openai/stub" if kind == "litellm" else "stub"
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(tmp)
        client = plugins.backend(kind).client({"kind": kind, "model": model, "base_url": base, "max_concurrency": conc,
                                            "max_tokens": 16}, cache=cache)  # fmt: skip
        await client.preflight()

        async def call(i: int) -> str:
            out = await client.create([UserMessage(content=f"What is {i} + {i}?", source="user")],
                                      extra_create_args={"schola": CallInfo(role="student")})  # fmt: skip
            return str(out.content)

        try:
            return await timed(n, conc, call, lambda: client.ledger.total().latency_s)
        finally:
            await client.close()
            cache.close()


SCENARIO = """name: saturation
data: {path: questions.jsonl}
roles: {student: {role: student}}
graph:
  - {id: ask, kind: agent, role: student, prompt: "{{ question }}", output: reply}
"""


# The `schola` console script's body (schola.cli.entry) with the run's own window timed: RunDriver.execute's CPU (every
# thread: the cache's writer too) and wall, written to $SATURATION_WINDOW as JSON. Start-up before it and report.html
# after it are outside the window.
CHILD = """
import json, os, sys, time
import schola.runtime
from schola.cli import entry

execute = schola.runtime.RunDriver.execute


async def timed(self):
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        return await execute(self)
    finally:
        window = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                  "schola": os.path.realpath(schola.runtime.__file__)}
        with open(os.environ["SATURATION_WINDOW"], "w") as f:
            json.dump(window, f)


schola.runtime.RunDriver.execute = timed
sys.argv[0] = "schola"
sys.exit(entry())
"""


# --before DIR: `schola_run_before` runs the code there, as installed from its own pyproject.toml (an overlay first on
# PYTHONPATH: its package and its entry points)
BEFORE_ENV: dict[str, str] | None = None


def schola_run_once(
    folder: Path, base: str, conc: int, episodes: int, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """One `schola run` of the saturation scenario in a subprocess (in `env` where given): (ledger.json, the run
    window's CPU and wall seconds and the schola it ran, the whole child's CPU seconds)."""
    run_dir = folder / f"run-{episodes}"
    argv = [sys.executable, "-c", CHILD, "run", str(folder / "saturation.yaml"), "backend=openai", "backend.model=stub",
            f"backend.base_url={base}", f"backend.max_concurrency={conc}", "backend.max_tokens=16",
            f"run.episodes={episodes}", f"cache.dir={folder / f'cache-{episodes}'}", f"hydra.run.dir={run_dir}"]  # fmt: skip
    env = {**(env or os.environ), "SATURATION_WINDOW": str(folder / f"window-{episodes}.json")}
    done, cpu = child_cpu(lambda: subprocess.run(argv, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.PIPE, timeout=PATH_TIMEOUT_S))  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"schola run exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")
    ledger = json.loads((run_dir / "ledger.json").read_text())
    replies = [json.loads(line)["outputs"]["reply"] for line in (run_dir / "results.jsonl").open()]
    assert len(replies) == episodes and set(replies) == {"An answer."}, replies[:3]
    window = json.loads((folder / f"window-{episodes}.json").read_text())
    return ledger, window, cpu


async def schola_run(base: str, conc: int, n: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`n` requests through a real `schola run`, and a one-episode run of the same command: what the run costs
    whatever its size. `cpu_s` (the run window's) and `cpu_whole_s` are set in `main` from the rounds' fixed costs."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "saturation.yaml").write_text(SCENARIO)
        rows = (json.dumps({"id": f"e{i}", "question": f"What is {i} + {i}?"}) for i in range(n))
        (folder / "questions.jsonl").write_text("\n".join(rows) + "\n")
        _, one, fixed = schola_run_once(folder, base, conc, 1, env)
        ledger, window, cpu = schola_run_once(folder, base, conc, n, env)
    assert ledger["total"]["requests"] == n, ledger["total"]
    wall = window["wall_s"]
    return {"requests": n, "seconds": wall, "inflight_mean": ledger["total"]["latency_s"] / wall,
            "cpu_window_s": window["cpu_s"], "cpu_window_fixed_s": one["cpu_s"],
            "cpu_total_s": cpu, "cpu_fixed_s": fixed, "schola": window["schola"]}  # fmt: skip


def per_request_cpu(rounds: list[dict[str, Any]], n: int) -> None:
    """A `schola run`'s CPU for its n requests, less the median one-episode run's (which made 1 request): over the
    run window (`cpu_s`) and over the whole process (`cpu_whole_s`)."""
    for key, total, fixed in (
        ("cpu_s", "cpu_window_s", "cpu_window_fixed_s"),
        ("cpu_whole_s", "cpu_total_s", "cpu_fixed_s"),
    ):
        one = statistics.median(r[fixed] for r in rounds)
        for r in rounds:
            r[key] = (r[total] - one) * n / (n - 1)


async def schola_engine(base: str, conc: int, n: int, *, episodes_at_once: int | None = None) -> dict[str, Any]:
    from schola.plan import build_plan
    from schola.runtime import RunDriver, quiet_gc
    from schola.schema import Files
    from schola.store import RunStore, read_jsonl

    config = {
        "seed": 0,
        "run": {"episodes": None, "concurrency": episodes_at_once or conc},
        "cache": {"enabled": True},
        "backend": {"kind": "openai", "model": "stub", "base_url": base, "max_concurrency": conc, "max_tokens": 16},
        "scenario": {
            "name": "saturation",
            "data": {"records": [{"id": f"e{i}", "question": f"What is {i} + {i}?"} for i in range(n)]},
            "roles": {"student": {"role": "student"}},
            "graph": [{"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"}],
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        config["cache"]["dir"] = f"{tmp}/cache"  # type: ignore[index]
        runner = RunDriver(build_plan(config, Files()), RunStore(f"{tmp}/run"))
        wall, cpu = time.perf_counter(), time.process_time()
        with quiet_gc():  # as arun_plan runs it
            outcome = await runner.execute()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert outcome.status == "finished", outcome.message
        replies = [r["outputs"]["reply"] for r in read_jsonl(Path(tmp) / "run" / "results.jsonl")]
        assert len(replies) == n and set(replies) == {"An answer."}
    return {"requests": n, "seconds": wall, "inflight_mean": runner.ledger.total().latency_s / wall, "cpu_s": cpu}


PATHS: dict[str, Measure] = {
    "schola_run": schola_run,
    "schola_run_before": lambda b, c, n: schola_run(b, c, n, BEFORE_ENV),
    "schola_openai": lambda b, c, n: schola_backend("openai", b, c, n),
    "schola_openai_engine": schola_engine,
    "bare_aiohttp": bare_aiohttp,
    "bare_openai_sdk": bare_openai_sdk,
    "bare_httpx": bare_httpx,
    "schola_litellm": lambda b, c, n: schola_backend("litellm", b, c, n),
    "bare_litellm": bare_litellm,
}


def measure(name: str, base: str, conc: int, n: int) -> dict[str, Any]:
    """One path, timed. The heap is collected and frozen first: the benchmark itself imports LiteLLM, the openai
    SDK and matplotlib (about 400,000 objects), and a full collection over them, landing in whichever path
    happened to cross the threshold, cost that path 0.1 ms a request (measured); no path pays for another's."""
    gc.collect()
    gc.freeze()
    try:
        return asyncio.run(asyncio.wait_for(PATHS[name](base, conc, n), timeout=PATH_TIMEOUT_S))
    except TimeoutError:
        raise SystemExit(f"{name} at concurrency {conc} did not finish {n} requests in {PATH_TIMEOUT_S} s") from None


HELD = ("schola_run", "schola_run_before", "schola_openai", "schola_openai_engine", "bare_aiohttp")  # repeated
HELD_TO_BARE = ("schola_run", "schola_run_before", "schola_openai", "schola_openai_engine")  # paired per round
TARGETS = {"rps_ratio": 0.9, "cpu_ratio": 1.2, "rps_at_64": 176}


def pin_cpus() -> tuple[int, int] | None:
    """(the client's CPU, the stub's CPU) where the two can be pinned apart: taskset exists and two CPUs are allowed."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (cpus[0], cpus[1]) if shutil.which("taskset") and len(cpus) >= 2 else None


def litellm_log_lines(base: str, n: int = 50) -> dict[str, float]:
    """LiteLLM log lines per request with the CLI's root logger at INFO: as LiteLLM leaves them, then quieted."""
    from schola.backends.litellm import import_litellm

    litellm = import_litellm()
    counted = [0]

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            counted[0] += record.name.startswith("LiteLLM")

    root = logging.getLogger()
    handler, level = Count(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    own = {name: logging.getLogger(name).handlers[:] for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")}
    for name in own:  # LiteLLM's own stderr handlers: counted through the root, not printed here
        logging.getLogger(name).handlers = []
    out = {}
    try:
        for name, quiet in (("before", False), ("after", True)):
            for logger in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
                logging.getLogger(logger).setLevel(logging.WARNING if quiet else logging.NOTSET)
            counted[0] = 0

            async def many() -> None:
                for i in range(n):
                    await litellm.acompletion(model="openai/stub", messages=body(i)["messages"], api_base=base,
                                              api_key="x", num_retries=0)  # fmt: skip

            asyncio.run(asyncio.wait_for(many(), timeout=PATH_TIMEOUT_S))
            out[f"{name}_per_request"] = counted[0] / n
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, handlers in own.items():
            logging.getLogger(name).handlers = handlers
        import_litellm()  # quiet again
    return out


def plot(rows: dict[str, dict[int, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, by_conc in rows.items():
        xs = sorted(by_conc)
        ax.plot(xs, [by_conc[x]["rps"] for x in xs], marker="o", label=name, linestyle="--" if "bare" in name else "-")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    xs = sorted({x for by_conc in rows.values() for x in by_conc})
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrency (requests in flight allowed)")
    ax.set_ylabel("requests / s")
    ax.set_title("Client saturation against a 50 ms stub server")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64, 256])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--requests-at-1", type=int, default=200, help="at concurrency 1 (50 ms each: 2,000 take 100 s)")
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--paths", nargs="+", default=[k for k in PATHS if k != "schola_run_before"], choices=list(PATHS))
    p.add_argument("--repeat", type=int, default=5, help=f"rounds of {', '.join(HELD)} (medians); others run once")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction, default=None,
                   help="the client on one CPU, the stub on another (default: on where taskset and 2 CPUs exist)")  # fmt: skip
    p.add_argument("--before", metavar="DIR", help="also run `schola run` from the code in DIR (a git worktree of the "
                   "commit before), interleaved: path schola_run_before")  # fmt: skip
    a = p.parse_args()
    if a.before:
        global BEFORE_ENV
        BEFORE_ENV = installed(Path(a.before))
        a.paths = list(dict.fromkeys([*a.paths, "schola_run_before"]))
    elif "schola_run_before" in a.paths:
        raise SystemExit("schola_run_before needs --before DIR")
    cpus = pin_cpus()
    if a.pin and cpus is None:
        raise SystemExit("--pin needs taskset and two CPUs this process may use")
    pinned = cpus if a.pin is not False else None
    proc, base = start_stub(delay_ms=a.delay_ms, cpu=pinned[1] if pinned else None)
    if pinned:  # every client path runs here or in a child, which inherits the one CPU
        os.sched_setaffinity(0, {pinned[0]})
    rows: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in a.paths}
    round_ratios: dict[str, dict[int, dict[str, list[float]]]] = {}
    loads: dict[int, list[float]] = {}
    extra: dict[str, Any] = {"load_average": {"before": os.getloadavg()}}
    try:
        asyncio.run(schola_backend("openai", base, 8, 50))  # warm-up: imports, first connections
        if any("litellm" in name for name in a.paths):
            extra["litellm_log_lines"] = litellm_log_lines(base)
        for conc in a.concurrency:
            n = a.requests_at_1 if conc == 1 else a.requests
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in a.paths}
            for round_ in range(a.repeat):  # side by side and interleaved: machine noise hits every path alike
                order = a.paths[round_ % len(a.paths) :] + a.paths[: round_ % len(a.paths)]  # no path always first
                for name in order:
                    if round_ and name not in HELD:
                        continue
                    runs[name].append(measure(name, base, conc, n))
                loads.setdefault(conc, []).append(os.getloadavg()[0])
            for name in ("schola_run", "schola_run_before"):
                if runs.get(name):
                    per_request_cpu(runs[name], n)
            compared = [(name, "bare_aiohttp") for name in HELD_TO_BARE] + [("schola_run", "schola_run_before")]
            for name, other in compared:  # per round: the pair ran side by side
                if name in runs and other in runs:
                    pairs = list(zip(runs[name], runs[other], strict=True))
                    ratio = {"rps": [b["seconds"] / s["seconds"] for s, b in pairs],
                             "cpu": [s["cpu_s"] / b["cpu_s"] for s, b in pairs]}  # fmt: skip
                    if "cpu_whole_s" in runs[name][0]:  # a `schola run`: the whole process's too, against the same
                        ratio["cpu_whole"] = [s["cpu_whole_s"] / b.get("cpu_whole_s", b["cpu_s"]) for s, b in pairs]
                    round_ratios.setdefault(f"{name}/{other}", {})[conc] = ratio
            for name, rs in runs.items():
                row = {"requests": n, "rounds": len(rs),
                       "rps": statistics.median(n / r["seconds"] for r in rs),
                       "cpu_ms_per_request": statistics.median(1000 * r["cpu_s"] / n for r in rs),
                       "inflight_mean": statistics.median(r["inflight_mean"] for r in rs)}  # fmt: skip
                if "cpu_fixed_s" in rs[0]:  # a `schola run`: the whole process's CPU, with and without start-up
                    row["schola"] = sorted({r["schola"] for r in rs})  # the code the child ran (schola.runtime's file)
                    row["cpu_fixed_s"] = statistics.median(r["cpu_fixed_s"] for r in rs)
                    row["cpu_window_fixed_s"] = statistics.median(r["cpu_window_fixed_s"] for r in rs)
                    row["cpu_whole_ms_per_request"] = statistics.median(1000 * r["cpu_whole_s"] / n for r in rs)
                    row["cpu_total_ms_per_request"] = statistics.median(1000 * r["cpu_total_s"] / n for r in rs)
                row["inflight_ratio"] = row["inflight_mean"] / conc
                rows[name][conc] = row
                whole = f" ({row['cpu_whole_ms_per_request']:.3f} whole)" if "cpu_whole_ms_per_request" in row else ""
                print(
                    f"c={conc:<4} {name:22s} {row['rps']:8.1f} rps {row['cpu_ms_per_request']:6.3f} ms CPU/req{whole}  "
                    f"in flight {row['inflight_mean']:.1f}/{conc}  load {loads[conc][-1]:.1f}",
                    flush=True,
                )
        if "schola_openai_engine" in a.paths:
            capped = {}
            for conc in [c for c in a.concurrency if c > 8]:
                gc.collect()
                gc.freeze()
                r = asyncio.run(schola_engine(base, conc, a.requests, episodes_at_once=8))
                capped[conc] = {"rps": a.requests / r["seconds"], "inflight_mean": r["inflight_mean"],
                                "inflight_ratio": r["inflight_mean"] / conc}  # fmt: skip
            extra["engine_at_run_concurrency_8"] = capped
    finally:
        proc.kill()
    extra["load_average"]["after"] = os.getloadavg()
    extra["load_average"]["per_concurrency_median"] = {c: statistics.median(v) for c, v in loads.items()}
    # the median of the per-round ratios (each round's pair ran back to back), not a median divided by a median
    ratios = {name: {conc: {**{k: statistics.median(v) for k, v in r.items()}, "rounds": len(r["rps"]),
                            **{f"{k}_per_round": [round(x, 3) for x in v] for k, v in r.items()}}
                     for conc, r in by_conc.items()}
              for name, by_conc in round_ratios.items()}  # fmt: skip
    for name, by_conc in ratios.items():
        for conc, r in by_conc.items():
            ratio = f"rps {r['rps']:.2f}x, CPU/request {r['cpu']:.2f}x ({r['rounds']} rounds)"
            if "cpu_whole" in r:
                ratio += f"; whole process {r['cpu_whole']:.2f}x"
            print(f"{name} at {conc}: {ratio}")
    result = {
        "command": "python benchmarks/client_saturation.py " + " ".join(sys.argv[1:]),
        "stub_delay_ms": a.delay_ms,
        "pinned": {"client_cpu": pinned[0], "stub_cpu": pinned[1]} if pinned else None,
        "paths": rows,
        "ratios": ratios,  # "A/B": A's requests/s and CPU per request over B's, per round and their median
        "targets": TARGETS,
        **extra,
    }
    held = [
        r for name in ("schola_run/bare_aiohttp", "schola_openai/bare_aiohttp") for r in ratios.get(name, {}).values()
    ]
    if held:
        at_64 = rows.get("schola_openai", {}).get(64)
        result["targets_met"] = all(
            r["rps"] >= TARGETS["rps_ratio"] and r["cpu"] <= TARGETS["cpu_ratio"] for r in held
        ) and (at_64 is None or at_64["rps"] >= TARGETS["rps_at_64"])
        result["targets_met_whole_process"] = result["targets_met"] and all(
            r.get("cpu_whole", r["cpu"]) <= TARGETS["cpu_ratio"] for r in held
        )  # schola_run's CPU with report.html and everything else its process did past start-up
    save("client_saturation", result)
    RESULTS.mkdir(exist_ok=True)
    plot(rows, RESULTS / "client_saturation.png")


if __name__ == "__main__":
    main()
