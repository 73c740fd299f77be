"""Engine overhead: a teacher -> 32 students -> join graph on a zero-latency scripted backend.

Messages per second (a message = one model reply written to the transcript) through
  1. Schola (cache, ledger and transcript on; the cache starts empty, so every reply is written to it),
  2. the same graph in AutoGen's GraphFlow (ReplayChatCompletionClient, zero latency),
  3. a bare asyncio loop doing the same per-message work (Jinja render, sha256 key, JSON transcript line),
measured side by side in one process: each round runs all three (their order alternating), and the ratios are
taken per round, then their median reported, with the load average before and after and each path's CPU time
(resource.getrusage: every thread of the process, the cache's writer included) beside its wall time. Each path
starts after a full garbage collection, so none pays for a collection the one before it owed.
Schola runs as `schola run` and `schola.run` run it, under runtime.quiet_gc (the start-up heap frozen, young
collections every 20,000 allocations); --plain-gc runs it with Python's default collector, as the other two paths.
Targets: Schola >= 0.5x the bare loop and >= 60x GraphFlow (medians of the per-round ratios).

    python benchmarks/engine_overhead.py [--episodes 200] [--graphflow-episodes 10] [--rounds 5] [--plain-gc] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import hashlib
import io
import json
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import save

STUDENTS = 32


def clock() -> tuple[float, float]:
    """Wall time and the process's CPU time (user + system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime + usage.ru_stime


def since(start: tuple[float, float], messages: int, end: tuple[float, float] | None = None) -> dict[str, Any]:
    """Wall and CPU time from `start` to `end` (default: now), and the rates of `messages` over them."""
    wall, cpu = (now - then for now, then in zip(end or clock(), start))
    return {"messages": messages, "seconds": wall, "cpu_s": cpu, "messages_per_s": messages / wall,
            "cpu_us_per_message": cpu / messages * 1e6}  # fmt: skip


def schola_config(episodes: int, cache_dir: str) -> dict[str, Any]:
    return {
        "seed": 0,
        "run": {"episodes": None, "concurrency": 8},
        "backend": {"kind": "scripted", "default": "An answer."},  # a fixed reply, as GraphFlow's replay client gives
        "cache": {"enabled": True, "dir": cache_dir},
        "scenario": {
            "name": "fanout",
            "data": {"records": [{"question": f"What is {i} + {i}?"} for i in range(episodes)]},
            "roles": {
                "teacher": {"role": "teacher"},
                "students": [{"role": "student", "persona": f"student {i}"} for i in range(STUDENTS)],
            },
            "graph": [
                {"id": "explain", "kind": "agent", "role": "teacher", "prompt": "Explain: {{ question }}", "output": "explanation"},
                {"id": "class", "kind": "map", "over": {"student": "roles.students"}, "collect": {"answers": "answer"},
                 "steps": [{"id": "answer", "kind": "agent", "role": "{{ student.name }}",
                            "prompt": "{{ explanation }}\nNow answer: {{ question }}", "output": "answer"}]},
                {"id": "gather", "kind": "join", "inputs": ["answers"], "reduce": "concat", "output": "all"},
            ],
        },
    }  # fmt: skip


QUIET_GC = True  # --plain-gc: Schola's run with Python's default collector settings, as the bare loop's


async def run_schola(episodes: int) -> dict[str, Any]:
    from schola.plan import build_plan
    from schola.runtime import RunDriver, quiet_gc
    from schola.schema import Files
    from schola.store import RunStore

    with tempfile.TemporaryDirectory() as tmp:
        plan = build_plan(schola_config(episodes, f"{tmp}/cache"), Files())
        runner = RunDriver(plan, RunStore(f"{tmp}/run"))
        with quiet_gc() if QUIET_GC else contextlib.nullcontext():  # as arun_plan runs it (schola run, schola.run)
            start = clock()
            outcome = await runner.execute()
            end = clock()
        assert outcome.status == "finished", outcome.message
        messages = len((Path(tmp) / "run" / "transcript.jsonl").read_text().splitlines())
    return since(start, messages, end)


async def run_graphflow(episodes: int) -> dict[str, Any]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.teams import DiGraphBuilder, GraphFlow
    from autogen_ext.models.replay import ReplayChatCompletionClient

    messages, start = 0, clock()
    for e in range(episodes):

        def client() -> ReplayChatCompletionClient:
            return ReplayChatCompletionClient(["An answer."] * 4)

        teacher = AssistantAgent("teacher", model_client=client())
        students = [AssistantAgent(f"student_{i}", model_client=client()) for i in range(STUDENTS)]
        join = AssistantAgent("join", model_client=client())
        builder = DiGraphBuilder()
        builder.add_node(teacher).add_node(join)
        for s in students:
            builder.add_node(s).add_edge(teacher, s).add_edge(s, join)
        flow = GraphFlow(participants=builder.get_participants(), graph=builder.build())
        result = await flow.run(task=f"Explain: What is {e} + {e}?")
        # count model replies only (the task message is not one), as the Schola transcript does
        messages += sum(1 for m in result.messages if getattr(m, "source", "user") != "user")
    return since(start, messages)


async def run_bare(episodes: int) -> dict[str, Any]:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment()
    explain = env.from_string("Explain: {{ question }}")
    answer = env.from_string("{{ explanation }}\nNow answer: {{ question }}")
    with tempfile.TemporaryDirectory() as tmp, open(f"{tmp}/t.jsonl", "w") as out:  # noqa: ASYNC230 (what Schola does)
        count = 0

        async def reply(prompt: str, episode: int, agent: str) -> str:
            nonlocal count
            key = hashlib.sha256(json.dumps([agent, prompt]).encode()).hexdigest()
            text = "An answer."
            out.write(
                json.dumps({"episode": episode, "agent": agent, "prompt": prompt, "text": text, "key": key}) + "\n"
            )
            count += 1
            return text

        async def episode(i: int) -> None:
            q = f"What is {i} + {i}?"
            e = await reply(explain.render(question=q), i, "teacher")
            await asyncio.gather(
                *(reply(answer.render(explanation=e, question=q), i, f"s{s}") for s in range(STUDENTS))
            )

        start = clock()
        sem = asyncio.Semaphore(8)

        async def bounded(i: int) -> None:
            async with sem:
                await episode(i)

        await asyncio.gather(*(bounded(i) for i in range(episodes)))
        end = clock()
    return since(start, count, end)


PATHS = {"schola": run_schola, "graphflow": run_graphflow, "bare_asyncio": run_bare}


def fresh(path: Any, episodes: int) -> dict[str, Any]:
    """One path's run, after a full collection: a collection of the whole heap (~40 ms with AutoGen loaded, 6 us a
    message at 200 episodes) is then not owed by one path and paid by whichever runs next."""
    gc.collect()
    return asyncio.run(path(episodes))  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--graphflow-episodes", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5, help="rounds of all three; medians of per-round ratios reported")
    p.add_argument("--profile", action="store_true", help="print where Schola spends its time")
    p.add_argument("--plain-gc", action="store_true", help="run Schola without quiet_gc (which schola run applies)")
    a = p.parse_args()
    global QUIET_GC
    QUIET_GC = not a.plain_gc
    episodes = {"schola": a.episodes, "graphflow": a.graphflow_episodes, "bare_asyncio": a.episodes}
    asyncio.run(run_schola(10))  # warm-up for all: imports, template compilation
    asyncio.run(run_graphflow(1))
    asyncio.run(run_bare(10))
    load_before = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    for i in range(a.rounds):  # interleaved, so machine noise hits all three alike; the order alternates
        order = list(PATHS) if i % 2 == 0 else list(reversed(PATHS))
        rounds.append({k: fresh(PATHS[k], episodes[k]) for k in order})
        r = rounds[-1]
        print(f"round {i + 1}: " + ", ".join(
            f"{k} {r[k]['messages_per_s']:,.0f} msg/s ({r[k]['cpu_us_per_message']:,.1f} us CPU)" for k in PATHS
        ), flush=True)  # fmt: skip
    load_after = os.getloadavg()

    def median(path: str, field: str) -> float:
        return statistics.median(r[path][field] for r in rounds)

    def ratio(a: str, b: str, field: str = "messages_per_s") -> list[float]:
        return [r[a][field] / r[b][field] for r in rounds]

    vs_bare, vs_graphflow = ratio("schola", "bare_asyncio"), ratio("schola", "graphflow")
    cpu_vs_bare = ratio("bare_asyncio", "schola", "cpu_us_per_message")  # > 1 would be Schola using less CPU
    result = {
        "command": "python benchmarks/engine_overhead.py " + " ".join(sys.argv[1:]),
        "graph": f"teacher -> {STUDENTS} students -> join",
        "episodes": episodes,
        "rounds": a.rounds,
        "schola_gc": "quiet_gc, as schola run" if QUIET_GC else "Python's defaults (--plain-gc)",
        "load_average": {"before": load_before, "after": load_after},
        "median": {
            k: {f: median(k, f) for f in ("messages_per_s", "seconds", "cpu_s", "cpu_us_per_message")} for k in PATHS
        },
        "schola_vs_bare": statistics.median(vs_bare),
        "schola_vs_graphflow": statistics.median(vs_graphflow),
        "schola_vs_bare_by_cpu": statistics.median(cpu_vs_bare),
        "per_round": {"schola_vs_bare": vs_bare, "schola_vs_graphflow": vs_graphflow, "rounds": rounds},
        "targets": {"vs_bare": 0.5, "vs_graphflow": 60},
    }
    result["targets_met"] = result["schola_vs_bare"] >= 0.5 and result["schola_vs_graphflow"] >= 60
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(run_schola(a.episodes))
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
        result["profile_top"] = buf.getvalue().splitlines()[:60]
    save("engine_overhead", result)


if __name__ == "__main__":
    main()
