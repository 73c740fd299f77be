"""The engine's fast paths (issue 18, "the engine at half a bare loop") do what the slow ones did: a chain of steps
runs without a task per step, a reply that never suspends never arms a timeout, Schola's roles reach Schola's
backends without AutoGen's objects, a message is encoded once, and the cache writes on a thread of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import schola
from schola.aio import Slots
from schola.backends.base import Completion, ScholaClient
from schola.backends.cache import Cache
from schola.backends.scripted import ScriptedClient
from schola.errors import BackendError, TransientBackendError
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
    assert client._watchdog._timer is None and not client._watchdog.deadlines  # no timer was ever armed


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


def test_lookups_hold_no_snapshot_for_a_while_after_another_writer_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot held while another process writes keeps that process's write-ahead log from starting over: once
    a lookup sees another connection's commit (`data_version`), lookups read in transactions of their own for
    READ_SNAPSHOT_S, then hold one again."""
    import time

    from schola.backends import cache as module

    monkeypatch.setattr(module, "READ_SNAPSHOT_S", 0.05)  # (a second, in a run)
    with Cache(tmp_path) as first:
        first.put("before", {"text": "x"})
    reader = Cache(tmp_path, preload_keys=0)  # too large to read its keys at open: lookups ask SQLite
    assert reader.get("before") == {"text": "x"} and reader._reading
    time.sleep(0.06)
    assert reader.get("before") == {"text": "x"} and reader._reading  # nobody wrote: one snapshot again
    with Cache(tmp_path) as writer:
        writer.put("k", {"text": "from the other writer"})
    time.sleep(0.06)
    assert reader.get("k") == {"text": "from the other writer"} and not reader._reading
    time.sleep(0.06)
    assert reader.get("k") == {"text": "from the other writer"} and reader._reading  # quiet again: held
    reader.close()


# -- the second pass: fewer layers and less work per reply ----------------------------------------------------------
def test_a_reply_goes_through_no_coroutine_layer_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a graph step to the backend's _complete, each layer is a coroutine per reply: plugins.call around the
    role, ScholaClient.reply around _call, _with_retries around a request that answers at once and _apply under
    _step were layers that only passed the call on."""
    stacks: list[list[str]] = []
    real = ScriptedClient._complete

    async def spying(self: ScriptedClient, *args: Any) -> Any:
        frame, names = sys._getframe(1), []
        while frame is not None and frame.f_code.co_name != "_step":
            names.append(frame.f_code.co_name)
            frame = frame.f_back  # type: ignore[assignment]
        stacks.append(names)
        return await real(self, *args)

    monkeypatch.setattr(ScriptedClient, "_complete", spying)
    overrides = ["backend=scripted", f"cache.dir={tmp_path / 'cache'}"]
    assert schola.run(qa(tmp_path, 2), overrides, run_dir=tmp_path / "r").ok
    assert len(stacks) >= 2  # (the students' identical prompts are answered from the cache after the first)
    for names in stacks:
        assert not {"call", "reply", "_with_retries", "_apply"} & set(names), names
        assert names == ["_start", "_call", "act", "act"], names  # the request, the client, the role, the episode


async def test_a_request_that_fails_at_once_is_retried_or_reported_as_before() -> None:
    """The first attempt is stepped where the request is made: an error it raises before suspending is retried
    (transient) or reported naming the backend (permanent), as when every attempt ran under _with_retries."""

    class Flaky(ScriptedClient):
        failures = 2

        async def _complete(self, *args: Any) -> Any:
            if self.failures:
                self.failures -= 1
                raise TransientBackendError("busy")
            return await super()._complete(*args)

    flaky = Flaky({"default": "ok", "max_retries": 2, "retry_base_s": 0.001})
    done, cached = await flaky.reply([{"role": "user", "content": "q"}], {"schola": CallInfo("r", 0, 0)})
    assert (done.text, cached, flaky.failures) == ("ok", False, 0)
    assert await flaky.reply([{"role": "user", "content": "q"}], {}) is not None  # (no CallInfo: the default one)

    class Refusing(ScriptedClient):
        async def _complete(self, *args: Any) -> Any:
            raise BackendError("HTTP 401")

    with pytest.raises(BackendError, match="^backend 'default': HTTP 401$"):
        await Refusing({"default": "ok"}).reply([{"role": "user", "content": "q"}], {})
    gave_up = Flaky({"default": "ok", "max_retries": 1, "retry_base_s": 0.001})
    with pytest.raises(BackendError, match=r"busy \(gave up after 2 attempts\)"):
        await gave_up.reply([{"role": "user", "content": "q"}], {})


def test_an_engine_request_is_the_dataclass_its_constructor_builds() -> None:
    """ActRequest.of (the engine's, per reply) builds what the frozen dataclass's __init__ builds, in half its time."""
    fields: dict[str, Any] = {
        "prompt": "p",
        "sample": 3,
        "sampling": {"t": 1},
        "options": ("a",),
        "generate": False,
        "state": None,
    }
    made = ActRequest.of(*fields.values())
    assert made == ActRequest(**fields) and type(made) is ActRequest
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.prompt = "changed"  # type: ignore[misc]


def test_the_engines_transcript_line_is_formatted_without_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's own line (13 fields, cost_usd where priced) is formatted directly, the bytes dumps gives; any
    other record (other fields, other types) still goes through the encoder."""
    from schola import store

    rng = random.Random(7)
    chars = ["a", "é", "\n", '"', "\\", "\x00", "\x1f", "\u2028", "\ud800", "😀", "\x7f"]

    def text() -> str:
        return "".join(rng.choice(chars) for _ in range(rng.randint(0, 10)))

    lines = []
    for i in range(300):
        line = {
            "episode": text(), "round": rng.choice([0, 7, 10**20]), "node": text(), "agent": text(), "sample": i,
            "prompt": text(), "text": text(), "prompt_tokens": rng.randint(0, 10**6), "completion_tokens": 3,
            "latency_s": rng.choice([0.0, 1.2e-05, 0.123456, 1e16, -0.0]), "queue_s": round(rng.random(), 6),
            "cached": i % 2 == 0, "iteration": i % 3,
        }  # fmt: skip
        if i % 4 == 0:
            line["cost_usd"] = rng.choice([None, 0.0, 2.5e-07, 3])
        lines.append(line)
    expected = [dumps(line) for line in lines]
    others = [{**lines[0], "latency_s": float("nan")}, {**lines[0], "cached": 1}, {**lines[0], "option_probs": {}}]
    others += [{**lines[0], "text": None}, {**lines[0], "agent": 5}, {**lines[1], "cost_usd": True}]
    others += [{**{k: v for k, v in lines[0].items() if k != "node"}, "other": "x"}]  # 13 fields, not the engine's
    expected_others = [dumps(r) for r in others]

    def refuse(record: Any) -> str:
        raise AssertionError("the encoder was used")

    monkeypatch.setattr(store, "_dump_acyclic", refuse)
    assert [dump_line(line) for line in lines] == expected
    monkeypatch.undo()
    assert [dump_line(r) for r in others] == expected_others


def test_a_cached_replys_json_is_formatted_without_the_encoder() -> None:
    from schola.backends.cache import reply_json
    from schola.encoding import acyclic_encoder

    encode = acyclic_encoder()

    def refuse(value: Any) -> str:
        raise AssertionError("the encoder was used")

    for text, cost in [("An answer.", None), ('é \ud800 "q" \\ \x00 😀', 0.25), ("", 3)]:
        done = Completion(text=text, prompt_tokens=5, completion_tokens=2, finish_reason="stop", cost_usd=cost)
        assert reply_json(done.__dict__, refuse) == encode(done.__dict__)
        assert json.loads(reply_json(done.__dict__, refuse)) == done.__dict__
    logprobs = Completion(text="a", prompt_tokens=1, completion_tokens=1, top_logprobs=[("a", -0.5)]).__dict__
    assert reply_json(logprobs, encode) == encode(logprobs)  # (the encoder's)


async def test_a_backends_own_sampling_options_are_formatted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that asks for no sampling option gets the backend's (scripted: max_tokens): their text in the cache
    key was sorted and formatted again per call; the keys are those cache_key gives from the options themselves."""
    from schola.backends import cache as module

    with Cache(Path(tempfile.mkdtemp())) as cache:
        client = ScriptedClient({"default": "ok"}, cache=cache)
        calls = 0
        real = module.sampling_text

        def counting(sampling: dict[str, Any]) -> str:
            nonlocal calls
            calls += 1
            return real(sampling)

        monkeypatch.setattr(module, "sampling_text", counting)
        messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
        for sample in range(20):
            await client.reply(messages, {}, CallInfo("r", sample, 0))
        assert calls == 0
        key = module.cache_key(client.identity, messages, {"max_tokens": 512}, 0, 19)
        assert cache.get(key) == {"text": "ok", "prompt_tokens": 2, "completion_tokens": 1, "finish_reason": "stop",
                                  "cost_usd": None, "top_logprobs": None}  # fmt: skip


def test_the_transcript_written_as_bytes_keeps_what_the_text_file_wrote(tmp_path: Path) -> None:
    """Lines go to a binary file, encoded as the text file did: UTF-8, a lone surrogate as its escape (so the line
    reads back as it was), each episode's lines on disk when its results line is."""
    from schola.store import RunStore

    store = RunStore(tmp_path)
    store.open()
    line = {"episode": "e", "text": "é \ud800 ✓", "prompt": "p"}
    store.transcript(line)
    store.result({"episode": "e"})
    raw = (tmp_path / "transcript.jsonl").read_bytes()  # (before close: flushed with the results line)
    store.close()
    assert raw == dumps(line).encode("utf-8", "backslashreplace") + b"\n"
    assert json.loads(raw) == line


def test_the_cache_writer_commits_as_the_cache_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`synchronous` is a connection's own setting: the writer thread's connection committed with FULL (an fsync
    of the WAL per batch, ~3 us a message of the engine's wall time) where the cache's own was set to NORMAL."""
    from schola.backends import cache as module

    opened: list[sqlite3.Connection] = []
    real = sqlite3.connect

    def recording(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(module.sqlite3, "connect", recording)
    cache = Cache(tmp_path, batch=2)
    cache.put("a", {"text": "a"})
    cache.put("b", {"text": "b"})  # a full batch: the writer thread opens its connection and commits it
    with cache._written:
        cache._written.wait_for(lambda: cache._queued == 0)
    try:
        assert len(opened) == 2  # the cache's and its writer's
        assert [db.execute("PRAGMA synchronous").fetchone()[0] for db in opened] == [1, 1]  # NORMAL
    finally:
        cache.close()


def test_the_ledger_is_written_without_deep_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """ledger.json took a dataclasses.asdict (a deepcopy of every number) per role, twice a run and more: ~4 ms of a
    run's fixed cost at 34 roles. The dict is the one asdict gave."""
    from schola.types import Ledger, Usage

    ledger = Ledger()
    for i in range(3):
        ledger.book(f"r{i}", prompt_tokens=i, completion_tokens=2, latency_s=0.5, cost_usd=0.25, cached=i == 1)
    expected = {
        "total": {**dataclasses.asdict(ledger.total()), "tokens": ledger.total().tokens},
        "by_role": {r: dataclasses.asdict(u) for r, u in sorted(ledger.by_role.items())},
        "spent": dataclasses.asdict(ledger._spent),
    }

    def refuse(value: Any, memo: Any = None) -> Any:
        raise AssertionError("deepcopy")

    monkeypatch.setattr(dataclasses.copy, "deepcopy", refuse)  # (what asdict copies each field's value with)
    assert ledger.to_dict() == expected
    assert list(ledger.to_dict()["by_role"]["r0"]) == list(Usage.__dataclass_fields__)


def test_a_prompts_dotted_names_are_checked_against_dicts_methods_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`{{ student.name }}` (a map's role) looked up hasattr(dict, 'name') at every render: an AttributeError raised
    and caught inside, 0.4 of its 1.0 us. Whether a name is a dict's attribute is known when the template is read;
    `{{ s.items }}` is still Jinja's (the method, as before)."""
    from schola import templates

    calls = 0

    def counting(obj: Any, name: str) -> bool:
        nonlocal calls
        calls += 1
        return hasattr(obj, name)

    monkeypatch.setattr(templates, "hasattr", counting, raising=False)
    source = "{{ s.name }} -- a source no other test renders, {{ s.role }}"
    context = {"s": {"name": "students.3", "role": "student", "items": "x"}}
    assert [templates.render(source, context) for _ in range(50)] == ["students.3 -- a source no other test "
                                                                       "renders, student"] * 50  # fmt: skip
    assert calls <= 2  # (when the source is first read)
    monkeypatch.undo()
    assert templates.render("{{ s.items }}", context).startswith("<built-in method items")


def test_a_cache_miss_takes_no_lock(tmp_path: Path) -> None:
    """Every key the cache holds is in its set of keys (read at open, added by put): a key not there is a miss
    without the lock the writer thread shares; a hit is answered as before."""

    class Refusing:
        def __enter__(self) -> None:
            raise AssertionError("the lock was taken")

        def __exit__(self, *exc: object) -> None:
            pass

    cache = Cache(tmp_path)
    cache.put("k", {"text": "a"})
    lock, cache._lock = cache._lock, Refusing()  # type: ignore[assignment]
    assert cache.get("other") is None
    cache._lock = lock
    assert cache.get("k") == {"text": "a"}
    cache.close()


def test_replies_waiting_for_a_slow_disk_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer thread's queue had no bound: while a disk (or a loaded machine) kept the writer behind, every reply
    of a long run waited in memory. put() now waits for the writer once MAX_QUEUED batches are on their way, so what
    is held is bounded whatever the disk does."""
    import threading

    from schola.backends import cache as module

    release = threading.Event()
    real = module._insert

    def slow(db: sqlite3.Connection, rows: dict[str, str]) -> None:
        release.wait(10)  # the disk is stuck until the test lets it go
        real(db, rows)

    monkeypatch.setattr(module, "_insert", slow)
    cache = Cache(tmp_path, batch=2)
    putting = threading.Thread(target=lambda: [cache.put(f"k{i}", {"text": str(i)}) for i in range(200)])
    putting.start()
    putting.join(1.0)
    try:
        assert putting.is_alive(), "every batch was queued with the writer stuck: nothing bounds the replies held"
        assert cache._queued <= module.MAX_QUEUED and len(cache._writing) <= 2 * module.MAX_QUEUED
    finally:
        release.set()
        putting.join(10)
    assert not putting.is_alive()
    cache.close()
    with Cache(tmp_path) as again:
        assert all(again.get(f"k{i}") == {"text": str(i)} for i in range(200))  # every reply written, none lost


async def test_requests_in_flight_wake_the_loop_only_at_their_first_deadline() -> None:
    """Before: a watchdog task woke every min(0.5 s, timeout_s / 4) while any request was in flight (a timer before
    every deadline: the loop of a client waiting on a slow server never slept longer than that, and a timeout fired
    up to a tick late). Now one timer is armed at the earliest deadline, whatever the number of requests."""
    client = ScriptedClient({"default": "late", "latency_s": 60, "timeout_s": 30, "max_retries": 0})
    loop = asyncio.get_running_loop()
    tasks = [
        asyncio.ensure_future(client.create([], extra_create_args={"schola": CallInfo("r", i, 0)})) for i in range(50)
    ]
    try:
        for _ in range(3):  # every request on the wire, and whatever they started has run
            await asyncio.sleep(0)
        deadlines = client._watchdog.deadlines
        assert len(deadlines) == 50
        first = min(deadlines.values())
        # every timer the loop holds, but the requests' own 60 s waits (the scripted server's latency)
        timers = [h.when() for h in loop._scheduled if not h.cancelled() and h.when() < first + 1]  # type: ignore[attr-defined]
        assert timers == [first], [round(t - loop.time(), 3) for t in timers]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_timeout_fires_after_the_requests_before_it_ended_and_in_a_new_loop() -> None:
    """The one timer is armed again for the next deadline once the first request ended before its own, and a client
    used again in another event loop (its timer was the first loop's) still times out."""
    client = ScriptedClient({"default": "late", "latency_s": 0.05, "timeout_s": 0.3, "max_retries": 0})
    out = await client.create([], extra_create_args={"schola": CallInfo("r", 0, 0)})  # ends before its deadline
    assert out.content == "late"
    client.config.latency_s = 5  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="no reply within timeout_s=0.3"):
        await asyncio.wait_for(client.create([], extra_create_args={"schola": CallInfo("r", 1, 0)}), timeout=10)

    def in_new_loop() -> None:
        with pytest.raises(BackendError, match="no reply within timeout_s=0.3"):
            asyncio.run(asyncio.wait_for(client.create([], extra_create_args={"schola": CallInfo("r", 2, 0)}), 10))

    await asyncio.to_thread(in_new_loop)
    assert not client._watchdog.deadlines
