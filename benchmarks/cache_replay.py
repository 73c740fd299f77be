"""Cache replay: a 1,000-call run against the stub server (benchmarks/stub_server.py, a separate process answering
after 50 ms) through the real engine and the `openai` backend, then the same run again: every reply now comes
from Schola's response cache (no request reaches the server). Targets: the replay >= 50x faster, and < 2 s.

The first run keeps `--concurrency` calls in flight (default 8, the default run.concurrency), so it takes about
1,000 x 50 ms / 8 = 6.25 s; each episode is one agent step (one call). Both runs are timed around the runner's
execute (preflight, episodes, transcript, results, metrics), each in a run directory of its own, with the replay's
CPU time beside its wall time (on a shared machine the replay's wall is mostly other people's load); the process's
start-up (imports, the stub server) is not timed, and a warm-up run comes first. `--rounds`
pairs (a first run into a fresh cache, then its replay) are run and the median of the per-pair ratios reported,
with the load average before and after.

    python benchmarks/cache_replay.py [--calls 1000] [--concurrency 8] [--delay-ms 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import save
from stub_server import start_stub


def config(base: str, calls: int, concurrency: int, cache_dir: str) -> dict[str, Any]:
    return {
        "seed": 0,
        "run": {"episodes": None, "concurrency": concurrency},
        "cache": {"enabled": True, "dir": cache_dir},
        "backend": {"kind": "openai", "model": "stub", "base_url": base, "max_concurrency": concurrency,
                    "max_tokens": 16},
        "scenario": {
            "name": "replay",
            "data": {"records": [{"id": f"e{i}", "question": f"What is {i} + {i}?"} for i in range(calls)]},
            "roles": {"student": {"role": "student"}},
            "graph": [{"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"}],
        },
    }  # fmt: skip


async def one_run(raw: dict[str, Any], run_dir: str) -> dict[str, Any]:
    from schola.plan import build_plan
    from schola.runtime import RunDriver
    from schola.schema import Files
    from schola.store import RunStore

    runner = RunDriver(build_plan(raw, Files()), RunStore(run_dir))
    start, cpu = time.perf_counter(), time.process_time()
    outcome = await runner.execute()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert outcome.status == "finished", outcome.message
    total = runner.ledger.total()
    assert runner.finished_count == len(raw["scenario"]["data"]["records"]), runner.failed
    return {"seconds": seconds, "cpu_s": cpu, "requests": total.requests, "cache_hits": total.cache_hits}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    proc, base = start_stub(delay_ms=a.delay_ms)
    pairs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(one_run(config(base, 20, a.concurrency, f"{tmp}/warm"), f"{tmp}/warm-run"))  # imports
            load_before = os.getloadavg()
            for i in range(a.rounds):
                raw = config(base, a.calls, a.concurrency, f"{tmp}/cache{i}")
                first = asyncio.run(one_run(raw, f"{tmp}/first{i}"))
                replay = asyncio.run(one_run(raw, f"{tmp}/replay{i}"))
                assert first["requests"] == a.calls and replay["requests"] == 0 and replay["cache_hits"] == a.calls
                pairs.append({"first": first, "replay": replay, "speedup": first["seconds"] / replay["seconds"]})
                print(f"round {i + 1}: first {first['seconds']:.2f} s, replay {replay['seconds']:.3f} s "
                      f"(CPU {replay['cpu_s']:.3f} s): {pairs[-1]['speedup']:.0f}x")  # fmt: skip
            load_after = os.getloadavg()
    finally:
        proc.kill()
    ratio = statistics.median(p["speedup"] for p in pairs)
    replay_s = statistics.median(p["replay"]["seconds"] for p in pairs)
    save("cache_replay", {
        "command": "python benchmarks/cache_replay.py " + " ".join(sys.argv[1:]),
        "calls": a.calls, "concurrency": a.concurrency, "stub_delay_ms": a.delay_ms, "rounds": a.rounds,
        "load_average": {"before": load_before, "after": load_after},
        "replay_speedup_median": ratio, "replay_s_median": replay_s,
        "replay_cpu_s_median": statistics.median(p["replay"]["cpu_s"] for p in pairs),
        "replay_cpu_us_per_call_median": statistics.median(p["replay"]["cpu_s"] for p in pairs) / a.calls * 1e6,
        "first_run_s_median": statistics.median(p["first"]["seconds"] for p in pairs), "pairs": pairs,
        "targets": {"speedup": 50, "replay_s": 2.0},
        "targets_met": ratio >= 50 and replay_s < 2.0,
    })  # fmt: skip


if __name__ == "__main__":
    main()
