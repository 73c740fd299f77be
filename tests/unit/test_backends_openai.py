"""OpenAI-compatible endpoints: the lean `openai` backend (pool, endpoints, fallback, retries, logprobs), the
`vllm` launcher's commands, and LiteLLM (repeated runs, quiet logging, its Router). Servers here are the
in-process stub of benchmarks/stub_server.py (bare asyncio, answers after a delay): no network, no model."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from autogen_core.models import UserMessage

import schola
from schola.backends.cache import Cache
from schola.backends.openai import Endpoints, OpenAIClient
from schola.errors import BackendError, TransientBackendError
from schola.types import CallInfo

ROOT = Path(__file__).parents[2]
MSG = [UserMessage(content="What is 2 + 2?", source="user")]
_spec = importlib.util.spec_from_file_location("stub_server", ROOT / "benchmarks" / "stub_server.py")
assert _spec and _spec.loader
stub_server = importlib.util.module_from_spec(_spec)
sys.modules["stub_server"] = stub_server
_spec.loader.exec_module(stub_server)
StubServer = stub_server.StubServer


@pytest.fixture
async def stubs() -> AsyncIterator[Callable[..., Any]]:
    """Start in-process stub servers: `url, server = await stubs(delay_ms=..., ...)`; all stopped at the end."""
    started: list[Any] = []

    async def start(port: int = 0, **options: Any) -> tuple[str, Any]:
        server = StubServer(**{"delay_ms": 1.0, **options})
        started.append(server)
        return await server.start(port), server

    yield start
    for server in started:
        await server.stop()


def ask(client: Any, sample: int = 0, **sampling: Any) -> Any:
    return client.create(MSG, extra_create_args={"schola": CallInfo(role="student", sample=sample), **sampling})


def qa_scenario(tmp_path: Path, n: int = 3) -> Path:
    spec = {
        "name": "qa",
        "data": {"records": [{"id": f"q{i}", "question": f"What is {i} + 1?"} for i in range(n)]},
        "roles": {"student": {"role": "student"}},
        "graph": [{"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"}],
    }
    path = tmp_path / "qa.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# -- repeated runs in one process ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["litellm", "openai"])
async def test_two_runs_in_one_event_loop_both_reach_the_server(kind: str, stubs: Any, tmp_path: Path) -> None:
    """A notebook awaits one run after another in the same loop: the first run's close must not close a client
    the second one uses (LiteLLM's were global)."""
    url, server = await stubs()
    overrides = [f"backend={kind}", f"backend.base_url={url}", "backend.max_retries=0", "cache.enabled=false"]
    if kind == "litellm":
        overrides.append("backend.model=openai/stub")
    for name in ("first", "second"):
        result = await schola.arun(qa_scenario(tmp_path), overrides, run_dir=tmp_path / name)
        assert result.ok, result.message
        assert [e["outputs"]["reply"] for e in result.episodes] == ["An answer."] * 3
    assert server.requests == 6


def test_one_client_serves_runs_in_two_event_loops() -> None:
    async def start() -> tuple[str, Any]:
        server = StubServer(delay_ms=1.0)
        return await server.start(), server

    client: Any = None

    async def run() -> str:
        nonlocal client
        url, server = await start()
        client = client or OpenAIClient({"model": "stub", "base_url": url})
        client.endpoints.all[0].url = url  # the stub's port differs per loop
        try:
            return str((await ask(client)).content)
        finally:
            await server.stop()

    assert asyncio.run(run()) == "An answer."
    assert asyncio.run(run()) == "An answer."


# -- the openai backend ----------------------------------------------------------------------------
async def test_replies_usage_and_the_seed_come_from_the_server(stubs: Any) -> None:
    url, server = await stubs()
    client = OpenAIClient({"model": "stub", "base_url": url, "cost_per_1k_tokens": [1.0, 2.0]})
    out = await client.create(
        MSG, extra_create_args={"schola": CallInfo(role="student", sample=2, seed=5), "max_tokens": 7}
    )
    await client.close()
    assert out.content == "An answer." and (out.usage.prompt_tokens, out.usage.completion_tokens) == (12, 3)
    sent = json.loads(server.last_body)
    assert sent == {"model": "stub", "messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 7,
                    "seed": 5 * 1_000_003 + 2}  # fmt: skip
    assert client.ledger.by_role["student"].cost_usd == pytest.approx((12 * 1.0 + 3 * 2.0) / 1000)
    assert server.requests == 1


async def test_a_cached_reply_makes_no_request(stubs: Any, tmp_path: Path) -> None:
    url, server = await stubs()
    client = OpenAIClient({"model": "stub", "base_url": url}, cache=Cache(tmp_path / "c"))
    first, second = await ask(client), await ask(client)
    await client.close()
    assert (first.cached, second.cached) == (False, True) and second.content == "An answer."
    assert server.requests == 1 and client.ledger.by_role["student"].cache_hits == 1


async def test_max_concurrency_requests_are_kept_in_flight(stubs: Any) -> None:
    url, _ = await stubs(delay_ms=60)
    client = OpenAIClient({"model": "stub", "base_url": url, "max_concurrency": 8})
    peak = 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, client.inflight)
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(ask(client, sample=i) for i in range(24)))
    sampler.cancel()
    await client.close()
    assert peak == 8 and client.inflight == 0


# -- a server that answers fewer requests at a time than are sent (llama.cpp's) --------------------------
SERIAL = {"model": "stub", "max_concurrency": 64, "timeout_s": 0.6, "max_retries": 0}


@pytest.mark.parametrize(
    "says", [{"props": True}, {"title": "\U0001f999 llama.cpp Python API"}], ids=["llama-server", "llama_cpp.server"]
)
async def test_a_serial_server_gets_one_request_at_a_time_and_no_request_times_out_in_its_queue(
    says: dict[str, Any], stubs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Eight requests to a server that answers one at a time in 0.2 s each: sent all at once, the last ones wait
    1.4 s in the server's queue, past timeout_s=0.6 (it was exit 3). The server says so (llama-server's /props
    total_slots; llama-cpp-python's server serves one by design), so one is sent at a time and each is timed
    from when it is sent."""
    url, server = await stubs(delay_ms=200, slots=1, **says)
    client = OpenAIClient({**SERIAL, "base_url": url})
    with caplog.at_level(logging.WARNING, logger="schola.backends"):
        await client.preflight()
    replies = await asyncio.gather(*(ask(client, sample=i) for i in range(8)))
    await client.close()
    assert [r.content for r in replies] == ["An answer."] * 8
    assert server.most_in == 1 and server.requests == 8
    assert "answers 1 request(s) at a time: backend.max_concurrency=64 lowered to 1" in caplog.text


async def test_slots_bound_the_requests_in_flight_over_every_endpoint(stubs: Any) -> None:
    (url_a, a), (url_b, b) = (
        await stubs(delay_ms=50, slots=2, props=True),
        await stubs(delay_ms=50, slots=3, props=True),
    )
    client = OpenAIClient({**SERIAL, "base_url": url_a, "base_urls": [url_b]})
    await client.preflight()
    await asyncio.gather(*(ask(client, sample=i) for i in range(30)))
    await client.close()
    assert a.requests + b.requests == 30 and a.most_in <= 2 and b.most_in <= 3


async def test_a_server_that_says_nothing_of_slots_keeps_max_concurrency(stubs: Any) -> None:
    url, _ = await stubs(delay_ms=50)
    client = OpenAIClient({**SERIAL, "base_url": url, "max_concurrency": 8})
    await client.preflight()
    assert client._sem._value == 8 and client.endpoints.all[0].slots is None
    await client.close()


async def test_a_timeout_names_timeout_s_and_max_concurrency(stubs: Any) -> None:
    """A serial server that does not say so: the error says which two settings to change, not only resume."""
    url, _ = await stubs(delay_ms=400, slots=1)
    client = OpenAIClient({**SERIAL, "base_url": url})
    await client.preflight()
    with pytest.raises(BackendError) as e:
        await asyncio.gather(*(ask(client, sample=i) for i in range(4)))
    await client.close()
    assert "timeout_s=0.6" in str(e.value) and "backend.timeout_s" in str(e.value)
    assert "lower backend.max_concurrency" in str(e.value)


async def test_a_request_names_schola_as_its_user_agent(stubs: Any) -> None:
    """Servers' logs see `schola/<version>`, not aiohttp's own User-Agent (before: none at all, by skipping aiohttp's
    with `skip_auto_headers`, which rebuilt a header dict on every request)."""
    url, server = await stubs()
    client = OpenAIClient({"model": "stub", "base_url": url, "api_key_env": None})
    try:
        await ask(client)
    finally:
        await client.close()
    head = dict(line.split(": ", 1) for line in server.last_head.split("\r\n")[1:])
    assert head["User-Agent"] == f"schola/{schola.__version__}"
    assert head["Content-Type"] == "application/json" and head["Authorization"] == "Bearer no-key"


async def test_retry_after_comes_from_the_response_headers(stubs: Any) -> None:
    url, server = await stubs(status=429, fail_first=1, retry_after=0.2)
    client = OpenAIClient({"model": "stub", "base_url": url, "max_retries": 0})
    with pytest.raises(TransientBackendError) as e:
        await client._complete([{"role": "user", "content": "hi"}], {}, CallInfo())
    assert e.value.retry_after == pytest.approx(0.2)
    retrying = OpenAIClient({"model": "stub", "base_url": url})
    assert (await ask(retrying)).content == "An answer." and server.requests == 2
    await client.close()
    await retrying.close()


@pytest.mark.parametrize("status", [401, 404, 400])
async def test_permanent_refusals_fail_at_once(status: int, stubs: Any) -> None:
    url, server = await stubs(status=status, fail_first=10)
    client = OpenAIClient({"model": "stub", "base_url": url, "retry_base_s": 0.001})
    with pytest.raises(BackendError) as e:
        await ask(client)
    await client.close()
    assert server.requests == 1 and not isinstance(e.value, TransientBackendError)


async def test_option_probabilities_come_from_the_servers_top_logprobs(stubs: Any) -> None:
    url, _ = await stubs()
    client = OpenAIClient({"model": "stub", "base_url": url})
    probs, source = await client.option_probs(MSG, ["yes", "no"], info=CallInfo()) or ({}, "")
    await client.close()
    assert source == "logprobs" and probs == pytest.approx({"yes": 0.7, "no": 0.3})


async def test_a_server_without_logprobs_leaves_the_role_to_sample(stubs: Any) -> None:
    url, _ = await stubs(status=400, fail_first=1)  # refuses the logprobs request, answers the rest
    client = OpenAIClient({"model": "stub", "base_url": url})
    assert await client.option_probs(MSG, ["yes", "no"], info=CallInfo()) is None
    assert not client.has_logprobs and (await ask(client)).content == "An answer."
    await client.close()


async def test_requests_are_spread_over_endpoints_and_a_dead_one_is_left_out(stubs: Any) -> None:
    (url_a, a), (url_b, b) = await stubs(delay_ms=20), await stubs(delay_ms=20)
    client = OpenAIClient({"model": "stub", "base_url": url_a, "base_urls": [url_b], "revive_s": 1.0})
    await asyncio.gather(*(ask(client, sample=i) for i in range(20)))
    assert (a.requests, b.requests) == (10, 10)  # least busy, ties in turn
    await b.stop()
    outs = await asyncio.gather(*(ask(client, sample=i) for i in range(20, 40)))
    assert all(o.content == "An answer." for o in outs) and a.requests == 30
    dead = client.endpoints.all[1]
    assert dead.failures == 1 and dead.dead_until > 0
    port = int(url_b.rsplit(":", 1)[1].split("/")[0])
    revived = StubServer(delay_ms=1.0)
    await revived.start(port)  # back on the same port
    await asyncio.sleep(1.05)  # past revive_s
    await asyncio.gather(*(ask(client, sample=i) for i in range(40, 50)))
    await client.close()
    await revived.stop()
    assert revived.requests > 0 and dead.failures == 0


async def test_preflight_takes_out_an_unreachable_endpoint_while_another_answers(stubs: Any) -> None:
    from tests.conftest import free_port

    url, _ = await stubs()
    down = f"http://127.0.0.1:{free_port()}/v1"
    client = OpenAIClient({"model": "stub", "base_urls": [down, url]})
    await client.preflight()
    assert [e.dead_until > 0 for e in client.endpoints.all] == [True, False]
    assert (await ask(client)).content == "An answer."
    await client.close()
    alone = OpenAIClient({"model": "stub", "base_url": down})
    with pytest.raises(BackendError, match="cannot reach"):
        await alone.preflight()


def test_round_robin_takes_endpoints_in_turn_and_least_busy_avoids_a_loaded_one() -> None:
    urls = ["http://a/v1", "http://b/v1", "http://c/v1"]
    turns = Endpoints(urls, balance="round_robin")
    turns.all[0].inflight = 50
    assert [turns.pick().url for _ in range(6)] == ["http://b/v1", "http://c/v1", "http://a/v1"] * 2
    busy = Endpoints(urls)
    busy.all[0].inflight, busy.all[1].inflight = 5, 2
    assert {busy.pick().url for _ in range(6)} == {"http://c/v1"}


def test_an_endpoint_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="expected an http"):
        OpenAIClient({"base_urls": ["127.0.0.1:8000"]})


# -- vllm: the launcher's commands ----------------------------------------------------------------
def test_serve_keys_become_vllm_flags_and_each_gpu_gets_its_own_server() -> None:
    from schola.backends.vllm import VLLMConfig, server_commands

    config = VLLMConfig.model_validate({"model": "m", "serve": {"gpus": [0, "1,2"], "tensor_parallel_size": 2,
                                        "max_num_seqs": 128, "gpu_memory_utilization": 0.85, "args": ["--dtype", "bfloat16"]}})  # fmt: skip
    (argv0, env0), (argv1, env1) = server_commands(config, [9000, 9001])
    assert argv0 == ["vllm", "serve", "m", "--tensor-parallel-size", "2", "--max-num-seqs", "128",
                     "--gpu-memory-utilization", "0.85", "--dtype", "bfloat16", "--host", "127.0.0.1", "--port", "9000"]  # fmt: skip
    assert argv1[-1] == "9001" and (env0, env1) == ({"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1,2"})
    plain = server_commands(VLLMConfig(), [8000])
    assert plain == [(["vllm", "serve", "Qwen/Qwen2.5-7B-Instruct", "--host", "127.0.0.1", "--port", "8000"], {})]


async def test_a_managed_backend_sends_nothing_before_its_servers_answer() -> None:
    from schola.backends.vllm import VLLMClient

    client = VLLMClient({"max_retries": 0})
    with pytest.raises(BackendError, match="no endpoint"):
        await ask(client)


# -- LiteLLM ---------------------------------------------------------------------------------------
async def test_litellm_logs_no_line_per_request(stubs: Any, caplog: pytest.LogCaptureFixture) -> None:
    from schola.backends.litellm import LiteLLMClient

    url, _ = await stubs()
    client = LiteLLMClient({"model": "openai/stub", "base_url": url})
    await client.preflight()
    with caplog.at_level(logging.INFO):
        await asyncio.gather(*(ask(client, sample=i) for i in range(5)))
    await client.close()
    assert client.ledger.by_role["student"].requests == 5
    assert [r.getMessage() for r in caplog.records if r.name.startswith("LiteLLM")] == []


async def test_litellm_router_spreads_over_two_servers_and_survives_one_dying(stubs: Any) -> None:
    from schola.backends.litellm import LiteLLMClient

    (url_a, a), (url_b, b) = await stubs(delay_ms=10), await stubs(delay_ms=10)
    client = LiteLLMClient({"model": "openai/stub", "base_url": url_a, "base_urls": [url_b], "retry_base_s": 0.01})
    await client.preflight()
    await asyncio.gather(*(ask(client, sample=i) for i in range(20)))
    assert a.requests > 0 and b.requests > 0 and a.requests + b.requests == 20
    await b.stop()
    outs = await asyncio.gather(*(ask(client, sample=i) for i in range(20, 40)))
    await client.close()
    assert all(o.content == "An answer." for o in outs) and client.ledger.by_role["student"].requests == 40


def test_a_key_in_an_endpoint_url_never_reaches_the_output(cli: Any, tmp_path: Path) -> None:
    from tests.conftest import free_port

    sentinel = "sk-SENTINEL-openai-0123456789abcdef"
    proc, url = stub_server.start_stub(delay_ms=1)
    try:
        dead = f"http://127.0.0.1:{free_port()}/v1"
        code, out = cli("run", str(qa_scenario(tmp_path)), "backend=openai", "backend.model=stub",
                        f"backend.base_urls=['{dead}','{url}']", f"hydra.run.dir={tmp_path / 'r'}")  # fmt: skip
        assert code == 0 and "taken out" in out, out
        # credentials in an endpoint are refused before anything runs (a resume would send config.yaml's mask)
        keyed = f"http://user:{sentinel}@127.0.0.1:{free_port()}/v1"
        code, out = cli("run", str(qa_scenario(tmp_path)), "backend=openai", "backend.model=stub",
                        f"backend.base_urls=['{keyed}','{url}']", f"hydra.run.dir={tmp_path / 'k'}")  # fmt: skip
    finally:
        proc.kill()
    assert code == 2 and "holds credentials" in out and sentinel not in out, out
    assert not (tmp_path / "k").exists()


async def test_every_transient_fault_between_client_and_server_is_retried() -> None:
    """429, 500, 503, a hang past timeout_s, a reset, malformed JSON: each retried until the reply comes."""
    from tests.reliability.proxy import TRANSIENT, FaultProxy

    with FaultProxy(script=[None, *TRANSIENT], hang_s=5) as proxy:  # the preflight passes, then every fault once
        client = OpenAIClient({"model": "stub", "base_url": proxy.url, "max_concurrency": 1, "timeout_s": 1.0,
                               "max_retries": len(TRANSIENT), "retry_base_s": 0.05})  # fmt: skip
        await client.preflight()
        reply = await ask(client)
        await client.close()
    assert reply.content and [e.fault for e in proxy.completions()] == [*TRANSIENT, None]
