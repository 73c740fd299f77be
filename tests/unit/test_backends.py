from __future__ import annotations

import asyncio
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
        schema = plugins.backends.get(declared["kind"]).Config
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
