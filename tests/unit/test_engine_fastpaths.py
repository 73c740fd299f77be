"""The engine's fast paths (issue 18, "the engine at half a bare loop") do what the slow ones did: a chain of steps
runs without a task per step, a reply that never suspends never arms a timeout, Schola's roles reach Schola's
backends without AutoGen's objects, a message is encoded once, and the cache writes on a thread of its own."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import schola
from schola.aio import Slots
from schola.backends.base import ScholaClient
from schola.backends.cache import Cache
from schola.backends.scripted import ScriptedClient
from schola.errors import BackendError
from schola.graph import AgentNode, Graph
from schola.roles import ActRequest, Reply, Role, RoleConfig
from schola.store import dump_line, dumps
from schola.types import CallInfo


class Recorder:
    """An episode context whose roles answer at once (or when `gate` opens), noting the task each step ran in."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.tasks: dict[str, asyncio.Task[Any] | None] = {}
        self.started: list[str] = []
        self.gate = gate

    async def act(self, role: str, prompt: str, *, node: str, sample: int, sampling: dict[str, Any],
                  options: Sequence[str] | None = None, state: Mapping[str, Any] | None = None) -> Reply:  # fmt: skip
        self.started.append(node)
        self.tasks[node] = asyncio.current_task()
        if self.gate is not None and role == "wait":
            await self.gate.wait()
        return Reply(text=node)

    async def score(self, scorer: str, inputs: dict[str, Any], params: dict[str, Any], *, node: str) -> Any:
        raise AssertionError("no score steps here")

    def record(self, name: str, score: Any, labels: dict[str, str] | None = None) -> None:
        raise AssertionError("no score steps here")


def step(nid: str, role: str = "r", after: list[str] | None = None) -> AgentNode:
    return AgentNode(kind="agent", id=nid, role=role, prompt=nid, output=f"out_{nid}", after=after)


async def test_a_chain_of_steps_runs_in_the_episodes_own_task() -> None:
    """A step with nothing running beside it is awaited where the episode runs: no Task and asyncio.wait each."""
    ctx = Recorder()
    state: dict[str, Any] = {}
    await Graph([step("a"), step("b"), step("c")]).run(state, ctx)
    assert set(ctx.tasks.values()) == {asyncio.current_task()}
    assert [state[f"out_{n}"] for n in "abc"] == ["a", "b", "c"]


async def test_branches_that_can_run_together_still_do() -> None:
    """b waits on a gate that only c's start opens: run one after the other, the episode would never end."""
    gate = asyncio.Event()

    class Opener(Recorder):
        async def act(self, role: str, prompt: str, **kw: Any) -> Reply:
            if role == "open":
                gate.set()
            return await super().act(role, prompt, **kw)

    ctx = Opener(gate)
    graph = Graph([step("a"), step("b", "wait", ["a"]), step("c", "open", ["a"]), step("d", after=["b", "c"])])
    await asyncio.wait_for(graph.run({}, ctx), timeout=10)
    assert ctx.started[0] == "a" and ctx.started[-1] == "d" and ctx.tasks["b"] is not ctx.tasks["c"]


async def test_a_reply_that_never_suspends_arms_no_timeout() -> None:
    client = ScriptedClient({"default": "An answer."})
    out = await client.create([], extra_create_args={"schola": CallInfo("r", 0, 0)})
    assert out.content == "An answer."
    assert client._watchdog._task is None and not client._watchdog.deadlines  # no timer task was ever started


async def test_a_reply_that_suspends_past_timeout_s_still_times_out() -> None:
    client = ScriptedClient({"default": "late", "latency_s": 5, "timeout_s": 0.1, "max_retries": 0})
    with pytest.raises(BackendError, match="no reply within timeout_s=0.1"):
        await asyncio.wait_for(client.create([], extra_create_args={"schola": CallInfo("r", 0, 0)}), timeout=10)
    assert not client._watchdog.deadlines


async def test_schola_roles_ask_schola_backends_without_autogen_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reply is what create would have given, built without a UserMessage or a CreateResult."""
    config = RoleConfig(role="student", persona="a student", sampling={"temperature": 0.5})
    expected = await Role("s", config, ScriptedClient({"default": "{{ prompt }}!"}), seed=3).act(
        ActRequest(prompt="hi")
    )

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("create was called")

    monkeypatch.setattr(ScholaClient, "create", refuse)
    client = ScriptedClient({"default": "{{ prompt }}!"})
    reply = await Role("s", config, client, seed=3).act(ActRequest(prompt="hi"))
    assert (reply.text, reply.prompt_tokens, reply.completion_tokens, reply.cached, reply.cost_usd) == (
        expected.text, expected.prompt_tokens, expected.completion_tokens, expected.cached, expected.cost_usd,
    )  # fmt: skip
    assert client.ledger.total().requests == 1 and client.total_usage().prompt_tokens == reply.prompt_tokens


def qa(tmp_path: Path, n: int) -> Path:
    spec = tmp_path / "qa.yaml"
    spec.write_text(json.dumps({
        "name": "qa",
        "data": {"records": [{"id": f"q{i}", "question": f"What is {i} + {i}?"} for i in range(n)]},
        "roles": {"teacher": {"role": "teacher"}, "students": [{"role": "student"} for _ in range(4)]},
        "graph": [
            {"id": "explain", "kind": "agent", "role": "teacher", "prompt": "Explain {{ question }}", "output": "e"},
            {"id": "class", "kind": "map", "over": {"s": "roles.students"}, "collect": {"answers": "a"},
             "steps": [{"id": "answer", "kind": "agent", "role": "{{ s.name }}", "prompt": "{{ e }}!", "output": "a"}]},
        ],
    }))  # fmt: skip
    return spec


def test_a_message_is_encoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """json.dumps ran twice per reply (the cache's value and the transcript line, each building its encoder
    again); what is left is per episode (its results line) and per run."""
    calls = 0
    real = json.dumps

    def counting(*args: Any, **kwargs: Any) -> str:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(json, "dumps", counting)
    overrides = ["backend=scripted", f"cache.dir={tmp_path / 'cache'}", "run.concurrency=2"]
    result = schola.run(qa(tmp_path, 10), overrides, run_dir=tmp_path / "r")
    messages = len((tmp_path / "r" / "transcript.jsonl").read_text().splitlines())
    assert result.ok and messages == 10 * 5
    assert calls < messages, calls


def test_identical_runs_write_identical_transcripts_but_for_timings(tmp_path: Path) -> None:
    def lines(name: str) -> list[dict[str, Any]]:
        overrides = ["backend=scripted", f"cache.dir={tmp_path / name / 'cache'}", "run.concurrency=3"]
        assert schola.run(qa(tmp_path, 6), overrides, run_dir=tmp_path / name / "r").ok
        out = [json.loads(x) for x in (tmp_path / name / "r" / "transcript.jsonl").read_text().splitlines()]
        return [{k: v for k, v in line.items() if k not in ("latency_s", "queue_s")} for line in out]

    assert lines("a") == lines("b")


def test_a_transcript_line_is_the_bytes_dumps_gives() -> None:
    for record in [
        {"text": "é ✓ \ud800", "b": 1, "a": [1.5, float("nan"), None, True], "c": {"z": 1, "y": 2}},
        {"x": Path("p")},  # written as str(), as dumps does
    ]:
        assert dump_line(record) == dumps(record)


def test_a_full_batch_is_written_without_the_caller_waiting_on_sqlite(tmp_path: Path) -> None:
    """Another process holding the write lock (or a checkpoint waiting on the disk) held up the event loop."""
    Cache(tmp_path).close()
    other = sqlite3.connect(tmp_path / "cache.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    cache = Cache(tmp_path, batch=2)
    putting = threading.Thread(target=lambda: [cache.put(f"k{i}", {"text": str(i)}) for i in range(4)])
    putting.start()
    putting.join(10)
    try:
        assert not putting.is_alive(), "put waited on SQLite's lock"
        assert cache.get("k1") == {"text": "1"}  # answered while it waits to be written
    finally:
        other.execute("COMMIT")
        putting.join()
    cache.close()
    with Cache.open_existing(tmp_path) as again:
        assert again.info()["replies"] == 4 and again.get("k3") == {"text": "3"}


def test_a_write_that_failed_on_the_writer_thread_is_raised_to_the_caller(tmp_path: Path) -> None:
    cache = Cache(tmp_path, batch=2)
    sqlite3.connect(tmp_path / "cache.sqlite", isolation_level=None).execute("DROP TABLE replies")
    cache.put("a", {"text": "a"})
    cache.put("b", {"text": "b"})  # a full batch, handed to the writer, which finds no table
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        cache.flush()
    cache.close()


async def test_slots_serve_waiters_in_order_and_pass_on_a_cancelled_waiters_turn() -> None:
    slots, order = Slots(1), []

    async def hold(name: str, release: asyncio.Event) -> None:
        async with slots:
            order.append(name)
            await release.wait()

    gates = {n: asyncio.Event() for n in "abcd"}
    tasks = {n: asyncio.ensure_future(hold(n, gates[n])) for n in "abc"}
    await asyncio.sleep(0)
    assert order == ["a"] and slots.locked()
    tasks["b"].cancel()  # gives up while waiting
    gates["a"].set()
    await asyncio.sleep(0)
    tasks["d"] = asyncio.ensure_future(hold("d", gates["d"]))  # a newcomer waits behind c
    for n in "cd":
        await asyncio.sleep(0)
        gates[n].set()
    await asyncio.gather(tasks["a"], tasks["c"], tasks["d"])
    assert order == ["a", "c", "d"] and not slots.locked()
    assert tasks["b"].cancelled()


def test_lookups_in_one_read_transaction_still_find_what_this_cache_wrote(tmp_path: Path) -> None:
    with Cache(tmp_path) as first:
        first.put("before", {"text": "x"})
    cache = Cache(tmp_path, batch=2, preload_keys=0)  # too large to read its keys at open: lookups ask SQLite
    assert cache.get("a") is None and cache._reading  # the lookups' snapshot is taken
    cache.put("a", {"text": "a"})
    cache.put("b", {"text": "b"})  # a full batch: the writer commits it and drops it from memory
    with cache._written:
        cache._written.wait_for(lambda: cache._queued == 0)
    assert not cache._writing and cache.get("a") == {"text": "a"}
    cache.close()


def test_lookups_see_another_writers_replies_once_their_snapshot_is_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schola.backends import cache as module

    with Cache(tmp_path) as first:
        first.put("before", {"text": "x"})
    reader, writer = Cache(tmp_path, preload_keys=0), Cache(tmp_path)  # too large to read its keys at open
    assert reader.get("k") is None and reader.get("before") == {"text": "x"}
    writer.put("k", {"text": "from the other writer"})
    writer.close()
    monkeypatch.setattr(module, "READ_SNAPSHOT_S", 0.0)  # (a second, in a run)
    assert reader.get("k") == {"text": "from the other writer"}
    reader.close()
