"""Faults between Schola and a model server, injected by a proxy on 127.0.0.1 (tests/reliability/proxy.py):
429 with Retry-After, 500/503, hangs past timeout_s, connection resets and malformed JSON are retried — a bounded
number of times, honouring Retry-After, backing off with jitter — and a run through them ends as a clean run does;
a permanent error (401, 404 model not found) fails at once with a clear message.

The fast tests put the proxy in front of a stub server; the `server` ones in front of the real llama.cpp server."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import UserMessage

from schola import plugins
from schola.errors import BackendError
from schola.types import CallInfo
from tests.reliability.proxy import ERRORS, TRANSIENT, FaultProxy
from tests.reliability.test_kill_resume import RELAY, outcome

HELLO = [UserMessage(content="Say hello.", source="user")]


KINDS = ["litellm", "openai"]  # the two backends that talk to OpenAI-compatible servers
MODEL = {"litellm": "openai/smollm2", "openai": "smollm2"}


async def ask(proxy: FaultProxy, kind: str, **config: Any) -> tuple[str | BackendError, float]:
    """One request through the proxy on a fresh client (preflight first); (reply or error, seconds it took)."""
    client = plugins.backend(kind).client({"base_url": proxy.url, "model": MODEL[kind], "max_concurrency": 1, **config})
    try:
        await client.preflight()
        start = time.monotonic()
        try:
            result = await client.create(HELLO, extra_create_args={"schola": CallInfo(role="r")})
            return str(result.content), time.monotonic() - start
        except BackendError as e:
            return e, time.monotonic() - start
    finally:
        await client.close()


def gaps(proxy: FaultProxy) -> list[float]:
    """Seconds between one completion request's arrival and the next (requests go one at a time)."""
    at = [e.at for e in proxy.completions()]
    return [b - a for a, b in itertools.pairwise(at)]


@pytest.mark.parametrize("kind", KINDS)
async def test_every_transient_fault_is_retried_until_the_reply_comes(kind: str) -> None:
    with FaultProxy() as clean:
        expected, _ = await ask(clean, kind)
    with FaultProxy(script=[None, *TRANSIENT], hang_s=5) as proxy:  # the preflight passes, then every fault once
        reply, _ = await ask(proxy, kind, timeout_s=1.0, max_retries=len(TRANSIENT), retry_base_s=0.05)
    assert reply == expected
    assert [e.fault for e in proxy.completions()] == [*TRANSIENT, None]


@pytest.mark.parametrize("kind", KINDS)
async def test_retry_after_is_honoured(kind: str) -> None:
    with FaultProxy(script=[None, "429"], retry_after=1.5) as proxy:
        reply, _ = await ask(proxy, kind, retry_base_s=0.05)
    assert isinstance(reply, str)
    (gap,) = gaps(proxy)
    assert 1.5 <= gap < 1.5 + 1.0  # the server's wait, not the 0.05 s backoff


@pytest.mark.parametrize("kind", KINDS)
async def test_backoff_doubles_with_jitter_and_retries_are_bounded(kind: str) -> None:
    base = 0.2
    with FaultProxy(script=[None], share=1.0, faults=["503"]) as proxy:
        reply, took = await ask(proxy, kind, max_retries=4, retry_base_s=base)
    assert isinstance(reply, BackendError) and "gave up after 5 attempts" in str(reply)
    assert len(proxy.completions()) == 5  # 1 + max_retries, not one more
    ratios = [gap / (base * 2**attempt) for attempt, gap in enumerate(gaps(proxy))]
    # backoff = base * 2**attempt * uniform(0.5, 1.5); a gap also holds one round trip
    assert all(0.5 <= r <= 1.5 + 0.5 / (base * 2**a) for a, r in enumerate(ratios)), ratios
    assert max(ratios) - min(ratios) > 0.02, ratios  # jittered: not the same fraction every time
    assert took < 2 * sum(base * 2**a * 1.5 for a in range(4)) + 5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["401", "404"])
async def test_a_permanent_error_fails_at_once(kind: str, fault: str) -> None:
    with FaultProxy(script=[None], share=1.0, faults=[fault]) as proxy:
        reply, took = await ask(proxy, kind, max_retries=4, retry_base_s=1.0)
    assert isinstance(reply, BackendError)
    assert len(proxy.completions()) == 1 and took < 5
    assert ERRORS[fault][2] in str(reply) or f"HTTP {fault}" in str(reply), reply  # the server's words, or its status


def run_relay(
    cli: Any, tmp_path: Path, proxy: FaultProxy, name: str, *extra: str, kind: str = "litellm"
) -> tuple[int, str, float]:
    path = tmp_path / "relay.yaml"
    path.write_text(RELAY)
    start = time.monotonic()
    code, out = cli(
        "run", str(path), f"backend={kind}", f"backend.model={MODEL[kind]}", f"backend.base_url={proxy.url}", "backend.max_concurrency=1",
        "run.episodes=2", "cache.enabled=false", f"hydra.run.dir={tmp_path / name}", *extra,
    )  # fmt: skip
    return code, out, time.monotonic() - start


@pytest.mark.parametrize("kind", KINDS)
def test_a_fault_on_the_preflight_request_is_retried_too(cli: Any, tmp_path: Path, kind: str) -> None:
    with FaultProxy() as proxy:
        assert run_relay(cli, tmp_path, proxy, "clean", kind=kind)[0] == 0
    with FaultProxy(script=["reset", "reset"]) as proxy:  # the preflight's GET /models, twice
        code, out, _ = run_relay(cli, tmp_path, proxy, "reset", kind=kind)
    assert code == 0, out
    assert [e.path for e in proxy.events[:3]] == ["/v1/models"] * 3
    assert outcome(tmp_path / "reset")["results"] == outcome(tmp_path / "clean")["results"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "paths", "message"),
    [("401", ("/models",), "refused the API key (HTTP 401)"), ("404", ("/chat/completions",), "does not exist")],
)
def test_a_run_on_a_permanent_error_stops_in_seconds_with_exit_3(
    cli: Any, tmp_path: Path, kind: str, fault: str, paths: tuple[str, ...], message: str
) -> None:
    with FaultProxy(share=1.0, faults=[fault], paths=paths) as proxy:
        code, out, took = run_relay(cli, tmp_path, proxy, "r", "backend.retry_base_s=2", kind=kind)
    assert code == 3 and message in out, out
    assert len(proxy.completions()) <= 1 and took < 20
    assert json.loads((tmp_path / "r" / "status.json").read_text())["status"] == "backend_error"


# -- the real llama.cpp server ---------------------------------------------------------------------------
LBT = [
    "scenario=lbt", "scenario.data.problems=2", "scenario.data.variants=1", "scenario.roles.teacher.samples=2",
    "scenario.roles.teacher.sampling.temperature=0", "scenario.roles.teacher.sampling.max_tokens=16",
    "scenario.roles.students.0.sampling.max_tokens=8", "backend=litellm", "backend.max_concurrency=1",
    "backend.timeout_s=6", "backend.retry_base_s=0.2", "backend.max_retries=6", "cache.enabled=false",
]  # fmt: skip
SEED = 2  # its first faults: 429, malformed, malformed, hang (20% of requests get one, drawn in arrival order)


@pytest.mark.server
def test_a_run_through_a_faulty_proxy_ends_as_a_clean_run(cli: Any, tmp_path: Path, llama_server: str) -> None:
    origin = llama_server.removesuffix("/v1")
    runs = {}
    for name, share in (("clean1", 0.0), ("clean2", 0.0), ("faulty", 0.2)):
        with FaultProxy(origin, share=share, seed=SEED, retry_after=1.0, hang_s=8) as proxy:
            code, out = cli("run", *LBT, f"backend.base_url={proxy.url}", f"hydra.run.dir={tmp_path / name}")
        assert code == 0, out
        runs[name] = (outcome(tmp_path / name), proxy)
    assert runs["clean1"][0] == runs["clean2"][0]  # temperature 0: the server is deterministic
    assert runs["faulty"][0] == runs["clean1"][0]
    proxy = runs["faulty"][1]
    usage = json.loads((tmp_path / "faulty" / "metrics.json").read_text())["usage"]["by_role"]
    replies = sum(role["requests"] for role in usage.values())
    faulted = [e for e in proxy.completions() if e.fault]
    assert len(faulted) >= 2 and {e.fault for e in faulted} >= {"429", "malformed"}
    assert len(proxy.completions()) >= replies + len(faulted)  # each fault was retried (a slow reply may be too)
    # requests go one at a time, so the request after a 429 is its retry: it waited for Retry-After
    events = proxy.completions()
    for before, after in itertools.pairwise(events):
        if before.fault == "429":
            assert after.at - before.at >= 1.0
