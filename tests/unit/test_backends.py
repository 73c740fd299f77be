from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import UserMessage

from schola.backends.base import Completion, ScholaClient
from schola.backends.cache import Cache, cache_key
from schola.backends.scripted import ScriptedClient
from schola.errors import BackendError, BudgetExceeded, TransientBackendError
from schola.types import Budget, CallInfo, Ledger

MSG = [UserMessage(content="What is 2+2?", source="user")]


class Flaky(ScholaClient):
    """Fails with the given errors first, then answers; counts calls and the peak of concurrent calls."""

    def __init__(self, errors: list[Exception] = [], delay: float = 0.0, **kw: Any) -> None:
        super().__init__({"kind": "flaky", "retry_base_s": 0.001, **kw.pop("config", {})}, **kw)
        self.errors, self.delay, self.calls, self.inflight, self.peak = list(errors), delay, 0, 0, 0

    @property
    def identity(self) -> str:
        return "flaky"

    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        self.calls += 1
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            await asyncio.sleep(self.delay)
            if self.errors:
                raise self.errors.pop(0)
            return Completion(text=f"ok {info.sample}", prompt_tokens=5, completion_tokens=2, cost_usd=0.01)
        finally:
            self.inflight -= 1


def args(role: str = "teacher", sample: int = 0, seed: int = 0, **sampling: Any) -> dict[str, Any]:
    return {"schola": CallInfo(role=role, sample=sample, seed=seed), **sampling}


def test_cache_key_separates_models_samples_seeds_and_sampling() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    base = cache_key("m1", msgs, {"temperature": 0.7}, 0, 0)
    assert base == cache_key("m1", msgs, {"temperature": 0.7}, 0, 0)
    others = [
        cache_key("m2", msgs, {"temperature": 0.7}, 0, 0),
        cache_key("m1", msgs, {"temperature": 0.7}, 0, 1),
        cache_key("m1", msgs, {"temperature": 0.7}, 1, 0),
        cache_key("m1", msgs, {"temperature": 0.2}, 0, 0),
        cache_key("m1", [{"role": "user", "content": "hi!"}], {"temperature": 0.7}, 0, 0),
    ]
    assert base not in others and len(set(others)) == len(others)


async def test_cached_reply_is_reused_and_marked_without_a_new_request(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    client = Flaky(cache=cache)
    first = await client.create(MSG, extra_create_args=args(sample=0))
    again = await client.create(MSG, extra_create_args=args(sample=0))
    other = await client.create(MSG, extra_create_args=args(sample=1))
    assert (first.cached, again.cached, other.cached) == (False, True, False)
    assert again.content == first.content and other.content == "ok 1"
    assert client.calls == 2
    assert client.ledger.by_role["teacher"].cache_hits == 1


def test_cache_is_shared_between_processes_through_sqlite(tmp_path: Path) -> None:
    a = Cache(tmp_path)
    a.put("k", {"text": "x"})
    assert Cache(tmp_path).get("k") is None  # batched: not yet written
    a.flush()
    assert Cache(tmp_path).get("k") == {"text": "x"}
    assert Cache(tmp_path, preload_keys=0).get("k") == {"text": "x"}  # a large cache is queried per key


async def test_transient_errors_are_retried_then_succeed() -> None:
    client = Flaky([TransientBackendError("429"), TransientBackendError("503")])
    out = await client.create(MSG, extra_create_args=args())
    assert out.content == "ok 0" and client.calls == 3


async def test_retry_after_is_honoured() -> None:
    client = Flaky([TransientBackendError("429", retry_after=0.2)])
    start = asyncio.get_running_loop().time()
    await client.create(MSG, extra_create_args=args())
    assert asyncio.get_running_loop().time() - start >= 0.2


async def test_permanent_errors_fail_at_once() -> None:
    client = Flaky([BackendError("401 unauthorized")])
    with pytest.raises(BackendError, match="401"):
        await client.create(MSG, extra_create_args=args())
    assert client.calls == 1


async def test_retries_give_up_with_a_backend_error() -> None:
    client = Flaky([TransientBackendError("503")] * 10, config={"max_retries": 2})
    with pytest.raises(BackendError, match="gave up after 3 attempts"):
        await client.create(MSG, extra_create_args=args())
    assert client.calls == 3


async def test_timeout_counts_as_transient() -> None:
    client = Flaky(delay=0.5, config={"timeout_s": 0.05, "max_retries": 1})
    with pytest.raises(BackendError, match="timeout_s=0.05"):
        await client.create(MSG, extra_create_args=args())
    assert client.calls == 2


async def test_max_concurrency_limits_requests_in_flight() -> None:
    client = Flaky(delay=0.02, config={"max_concurrency": 3})
    await asyncio.gather(*(client.create(MSG, extra_create_args=args(sample=i)) for i in range(10)))
    assert client.peak == 3


async def test_ledger_books_per_role_and_budget_stops_new_requests() -> None:
    ledger = Ledger(budget=Budget(max_requests=3))
    client = Flaky(ledger=ledger)
    for i in range(3):
        await client.create(MSG, extra_create_args=args(role="teacher" if i < 2 else "student", sample=i))
    assert ledger.by_role["teacher"].requests == 2 and ledger.by_role["student"].requests == 1
    assert ledger.total().tokens == 21 and ledger.total().cost_usd == pytest.approx(0.03)
    with pytest.raises(BudgetExceeded, match="max_requests=3"):
        await client.create(MSG, extra_create_args=args(sample=9))
    assert client.calls == 3


async def test_a_stopped_ledger_refuses_new_requests_but_serves_the_cache(tmp_path: Path) -> None:
    client = Flaky(cache=Cache(tmp_path))
    await client.create(MSG, extra_create_args=args(sample=0))
    client.ledger.stop("the run has stopped")
    assert (await client.create(MSG, extra_create_args=args(sample=0))).cached
    with pytest.raises(BudgetExceeded, match="the run has stopped"):
        await client.create(MSG, extra_create_args=args(sample=1))
    assert client.calls == 1


def test_backend_yamls_declare_every_schema_key_with_the_schemas_default() -> None:
    """conf/backend/*.yaml declare every key (Hydra needs '+key' otherwise) and no unknown one, each with the
    schema's default: a default lives in one place and the YAML only shows it."""
    import yaml

    from schola import plugins

    for path in (Path(__file__).parents[2] / "conf" / "backend").glob("*.yaml"):
        declared = yaml.safe_load(path.read_text())
        schema = plugins.backend(declared["kind"]).config
        assert set(declared) == set(schema.model_fields), path.name
        defaults = schema.model_validate({"kind": declared["kind"]}).model_dump()
        assert schema.model_validate(declared).model_dump() == defaults, path.name


async def test_secrets_never_reach_error_messages() -> None:
    class Leaky(Flaky):
        secrets = ["sk-SENTINEL-123456"]

    client = Leaky([BackendError("bad key sk-SENTINEL-123456")])
    with pytest.raises(BackendError) as e:
        await client.create(MSG, extra_create_args=args())
    assert "SENTINEL" not in str(e.value)


async def test_scripted_rules_pick_by_sample_and_are_deterministic() -> None:
    client = ScriptedClient({"rules": [{"match": r"\d\+\d", "reply": "{{ pick(['a', 'b', 'c', 'd']) }}"}]})
    replies = [(await client.create(MSG, extra_create_args=args(sample=i))).content for i in range(8)]
    again = [(await client.create(MSG, extra_create_args=args(sample=i))).content for i in range(8)]
    assert replies == again and len(set(replies)) > 1
    other = await client.create([UserMessage(content="hello", source="u")], extra_create_args=args())
    assert other.content == "hello"  # the default echoes the prompt


async def test_autogen_assistant_agent_runs_on_a_schola_backend() -> None:
    from autogen_agentchat.agents import AssistantAgent

    client = ScriptedClient({"rules": [{"match": "capital", "reply": "Paris is the capital."}]})
    agent = AssistantAgent("tutor", model_client=client)
    result = await agent.run(task="What is the capital of France?")
    assert result.messages[-1].content == "Paris is the capital."
    assert client.ledger.total().requests == 1


class Waiting(ScholaClient):
    """A backend whose request waits on its reply until cancelled."""

    identity = "waiting"

    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        await asyncio.sleep(10)
        raise AssertionError("a request past its timeout is cancelled")


@pytest.mark.parametrize("always_suspends", [False, True])
async def test_an_outside_cancel_in_the_same_tick_as_a_timeout_stays_a_cancel(always_suspends: bool) -> None:
    """Through a request's own path (_call, _with_retries and its watchdog), stepped first or awaited as it is."""
    client = Waiting({"kind": "waiting", "max_retries": 0, "timeout_s": 10.0})
    client.always_suspends = always_suspends  # type: ignore[misc]

    async def request() -> asyncio.Task[Any]:
        task = asyncio.ensure_future(client.reply([{"role": "user", "content": "2+2?"}], {}))
        await asyncio.sleep(0)  # the request is waiting on its reply, on the watchdog's clock
        assert task in client._watchdog.deadlines
        return task

    task = await request()
    client._watchdog.expired.add(task)  # what the watchdog does at the deadline ...
    task.cancel()
    task.cancel()  # ... and Ctrl-C (or a failing sibling) in the same tick
    with pytest.raises(asyncio.CancelledError):
        await task
    alone = await request()
    client._watchdog.expired.add(alone)
    alone.cancel()  # the deadline alone is a timeout, retried as a transient error (here: no retries left)
    with pytest.raises(BackendError, match="no reply within timeout_s=10"):
        await alone
    assert not client._watchdog.deadlines and not client._watchdog.expired


async def test_two_autogen_clients_that_differ_anywhere_never_share_a_cached_reply(tmp_path: Path) -> None:
    from schola.backends.autogen import AutoGenClient

    cache = Cache(tmp_path)
    replay = "autogen_ext.models.replay.ReplayChatCompletionClient"
    a = AutoGenClient({"provider": replay, "config": {"chat_completions": ["from A"]}}, cache=cache)
    b = AutoGenClient({"provider": replay, "config": {"chat_completions": ["from B"]}}, cache=cache)
    assert a.identity != b.identity
    first = await a.create(MSG, extra_create_args=args())
    second = await b.create(MSG, extra_create_args=args())
    assert (first.content, second.content, second.cached) == ("from A", "from B", False)


def test_an_autogen_provider_outside_autogen_is_refused_by_the_schema() -> None:
    from pydantic import ValidationError

    from schola.backends.autogen import AutoGenConfig

    with pytest.raises(ValidationError, match="expected an AutoGen client class"):
        AutoGenConfig.model_validate({"provider": "os.system"})


@pytest.mark.parametrize(("header", "expected"), [("3", 3.0), ("0.5", 0.5), ("soon", None), (None, None)])
def test_retry_after_is_read_in_seconds_or_as_a_date(header: str | None, expected: float | None) -> None:
    from email.utils import formatdate

    from schola.backends.base import retry_after_seconds

    assert retry_after_seconds({"retry-after": header} if header else {}) == expected
    in_two_minutes = retry_after_seconds({"Retry-After": formatdate(time.time() + 120, usegmt=True)})
    assert in_two_minutes is not None and 100 < in_two_minutes <= 120


async def test_every_request_gets_the_backends_max_tokens_unless_the_role_sets_one() -> None:
    seen: list[dict[str, Any]] = []

    class Recording(Flaky):
        async def _complete(
            self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo
        ) -> Completion:
            seen.append(sampling)
            return await super()._complete(messages, sampling, info)

    client = Recording(config={"max_tokens": 64})
    await client.create(MSG, extra_create_args=args())
    await client.create(MSG, extra_create_args=args(max_tokens=8))
    assert [s["max_tokens"] for s in seen] == [64, 8]


def test_the_vllm_backend_attaches_when_given_a_base_url_and_manages_a_server_otherwise() -> None:
    from schola.backends.vllm import VLLMClient

    assert not VLLMClient({"base_url": "http://127.0.0.1:8000/v1"}).managed
    assert VLLMClient({}).managed


async def test_option_probabilities_come_from_the_first_tokens_top_logprobs() -> None:
    import math

    from schola.backends.base import distribute

    top = [(" Yes", math.log(0.6)), ("yes", math.log(0.1)), (" No", math.log(0.2)), ("Maybe", math.log(0.1))]
    assert distribute(top, ["yes", "no"]) == pytest.approx({"yes": 0.7 / 0.9, "no": 0.2 / 0.9})
    assert distribute([("(B", 0.0)], ["A", "B"]) == {"A": 0.0, "B": 1.0}
    assert distribute([("Perhaps", 0.0)], ["A", "B"]) is None


def test_cache_info_and_prune_by_age_and_size(tmp_path: Path, cli: Any) -> None:
    cache = Cache(tmp_path)
    for i in range(50):
        cache.put(f"k{i}", {"text": "x" * 1000})
    cache.close()
    code, out = cli("cache", "info", "--dir", str(tmp_path))
    assert code == 0 and "50 replies" in out
    code, out = cli("cache", "prune", "--dir", str(tmp_path), "--max-mb", "0.02")
    assert code == 0 and "removed" in out
    with Cache.open_existing(tmp_path) as c:
        kept = c.info()["replies"]
    assert 10 <= kept < 50
    code, out = cli("cache", "prune", "--dir", str(tmp_path), "--older-than-days", "0")
    with Cache.open_existing(tmp_path) as c:
        assert c.info()["replies"] == 0


def test_an_unusable_cache_dir_is_a_config_error(tmp_path: Path) -> None:
    from schola.errors import ConfigError

    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot use the response cache"):
        Cache(tmp_path / "file" / "sub")


def test_two_processes_share_one_cache_without_corrupting_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys\nfrom schola.backends.cache import Cache\n"
        "c = Cache(sys.argv[1], batch=7)\n"
        "[c.put(f'{sys.argv[2]}-{i}', {'text': str(i)}) for i in range(500)]\nc.close()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), name]) for name in ("a", "b")]
    assert [p.wait(60) for p in procs] == [0, 0]
    with Cache.open_existing(tmp_path) as c:
        assert c.info()["replies"] == 1000
        assert c.get("a-499") == {"text": "499"} and c.get("b-0") == {"text": "0"}
