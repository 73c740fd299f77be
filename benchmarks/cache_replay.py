"""Cache replay: a 1,000-call run against the stub server (benchmarks/stub_server.py, a separate process answering
after 50 ms) through the real engine and the `openai` backend, then the same run again: every reply now comes
from Schola's response cache (no request reaches the server). Targets: the replay >= 50x faster, and < 2 s.

The first run keeps `--concurrency` calls in flight (default 8, the default run.concurrency), so it takes about
1,000 x 50 ms / 8 = 6.25 s; each episode is one agent step (one call). Both runs are timed around the runner's
execute (preflight, episodes, transcript, results, metrics), each in a run directory of its own.

    python benchmarks/cache_replay.py [--calls 1000] [--concurrency 8] [--delay-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
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
    start = time.perf_counter()
    outcome = await runner.execute()
    seconds = time.perf_counter() - start
    assert outcome.status == "finished", outcome.message
    total = runner.ledger.total()
    assert len(runner.results) == len(raw["scenario"]["data"]["records"])
    return {"seconds": seconds, "requests": total.requests, "cache_hits": total.cache_hits}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--delay-ms", type=float, default=50.0)
    a = p.parse_args()
    proc, base = start_stub(delay_ms=a.delay_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(one_run(config(base, 20, a.concurrency, f"{tmp}/warm"), f"{tmp}/warm-run"))  # imports
            raw = config(base, a.calls, a.concurrency, f"{tmp}/cache")
            first = asyncio.run(one_run(raw, f"{tmp}/first"))
            replay = asyncio.run(one_run(raw, f"{tmp}/replay"))
    finally:
        proc.kill()
    assert first["requests"] == a.calls and replay["requests"] == 0 and replay["cache_hits"] == a.calls
    ratio = first["seconds"] / replay["seconds"]
    save("cache_replay", {
        "command": "python benchmarks/cache_replay.py " + " ".join(sys.argv[1:]),
        "calls": a.calls, "concurrency": a.concurrency, "stub_delay_ms": a.delay_ms,
        "first_run": first, "replay": replay, "replay_speedup": ratio,
        "targets": {"speedup": 50, "replay_s": 2.0},
        "targets_met": ratio >= 50 and replay["seconds"] < 2.0,
    })  # fmt: skip


if __name__ == "__main__":
    main()
