"""The `openai` backend's connections: one aiohttp session per client and event loop, its connections kept alive
and reused, so a request costs no TCP handshake and no new pool (issue 18: CPU per request against a bare aiohttp
loop). A guard: the stub (benchmarks/stub_server.py, in process) counts the connections it accepts."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

from autogen_core.models import UserMessage

from schola.backends.openai import OpenAIClient
from schola.types import CallInfo

_spec = importlib.util.spec_from_file_location(
    "stub_server", Path(__file__).parents[2] / "benchmarks" / "stub_server.py"
)
assert _spec and _spec.loader
stub_server = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("stub_server", stub_server)
_spec.loader.exec_module(stub_server)


async def test_requests_reuse_one_session_and_its_kept_alive_connections() -> None:
    server = stub_server.StubServer(delay_ms=5.0)
    url = await server.start()
    client = OpenAIClient({"model": "stub", "base_url": url, "max_concurrency": 4})
    try:
        await client.preflight()
        session = client.session()

        async def ask(i: int) -> str:
            msg = [UserMessage(content=f"What is {i} + {i}?", source="user")]
            out = await client.create(msg, extra_create_args={"schola": CallInfo(role="student", sample=i)})
            assert client.session() is session
            return str(out.content)

        replies = await asyncio.gather(*(ask(i) for i in range(40)))
    finally:
        await client.close()
        await server.stop()
    assert set(replies) == {"An answer."} and server.requests == 40
    assert server.opened <= 4 + 1  # a connection per slot (and the preflight's, if it was not reused)
