"""Engine overhead: a teacher -> 32 students -> join graph on a zero-latency scripted backend.

Messages per second (a message = one model reply written to the transcript) through
  1. Schola (cache, ledger and transcript on; the cache starts empty, so every reply is written to it),
  2. the same graph in AutoGen's GraphFlow (ReplayChatCompletionClient, zero latency),
  3. a bare asyncio loop doing the same per-message work (Jinja render, sha256 key, JSON transcript line),
measured side by side in one run. Targets: Schola >= 5,000 messages/s and >= 30x GraphFlow.

    python benchmarks/engine_overhead.py [--episodes 200] [--graphflow-episodes 5] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import save

STUDENTS = 32


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


async def run_schola(episodes: int) -> dict[str, Any]:
    from schola.plan import build_plan
    from schola.runtime import RunDriver
    from schola.schema import Files
    from schola.store import RunStore

    with tempfile.TemporaryDirectory() as tmp:
        plan = build_plan(schola_config(episodes, f"{tmp}/cache"), Files())
        runner = RunDriver(plan, RunStore(f"{tmp}/run"))
        start = time.perf_counter()
        outcome = await runner.execute()
        wall = time.perf_counter() - start
        messages = len((Path(tmp) / "run" / "transcript.jsonl").read_text().splitlines())
        assert outcome.status == "finished", outcome.message
    return {"messages": messages, "seconds": wall, "messages_per_s": messages / wall}


async def run_graphflow(episodes: int) -> dict[str, Any]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.teams import DiGraphBuilder, GraphFlow
    from autogen_ext.models.replay import ReplayChatCompletionClient

    messages, start = 0, time.perf_counter()
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
    wall = time.perf_counter() - start
    return {"messages": messages, "seconds": wall, "messages_per_s": messages / wall}


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

        start = time.perf_counter()
        sem = asyncio.Semaphore(8)

        async def bounded(i: int) -> None:
            async with sem:
                await episode(i)

        await asyncio.gather(*(bounded(i) for i in range(episodes)))
        wall = time.perf_counter() - start
    return {"messages": count, "seconds": wall, "messages_per_s": count / wall}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["messages_per_s"])[len(runs) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--graphflow-episodes", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3, help="rounds of all three; medians are reported")
    p.add_argument("--profile", action="store_true", help="print where Schola spends its time")
    a = p.parse_args()
    asyncio.run(run_schola(10))  # warm-up for both: imports, template compilation
    asyncio.run(run_graphflow(1))
    rounds: list[dict[str, Any]] = []
    for _ in range(a.repeat):  # interleaved, so machine noise hits all three alike
        rounds.append(
            {
                "schola": asyncio.run(run_schola(a.episodes)),
                "graphflow": asyncio.run(run_graphflow(a.graphflow_episodes)),
                "bare_asyncio": asyncio.run(run_bare(a.episodes)),
            }
        )
    schola, graphflow, bare = (median_run([r[k] for r in rounds]) for k in ("schola", "graphflow", "bare_asyncio"))
    result = {
        "graph": f"teacher -> {STUDENTS} students -> join",
        "episodes": {"schola": a.episodes, "graphflow": a.graphflow_episodes, "bare_asyncio": a.episodes},
        "schola": schola,
        "graphflow": graphflow,
        "bare_asyncio": bare,
        "per_round_messages_per_s": {k: [round(r[k]["messages_per_s"]) for r in rounds] for k in rounds[0]},
        "schola_vs_graphflow": schola["messages_per_s"] / graphflow["messages_per_s"],
        "schola_vs_bare": schola["messages_per_s"] / bare["messages_per_s"],
        "targets": {"messages_per_s": 5000, "vs_graphflow": 30},
    }
    result["targets_met"] = schola["messages_per_s"] >= 5000 and result["schola_vs_graphflow"] >= 30
    if a.profile or not result["targets_met"]:
        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(run_schola(a.episodes))
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
        result["profile_top"] = buf.getvalue().splitlines()[:60]
    save("engine_overhead", result)


if __name__ == "__main__":
    main()
