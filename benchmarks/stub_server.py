"""A stub OpenAI-compatible server that answers every chat completion after a fixed delay, for the client
benchmarks and the routing tests. Written on bare asyncio (a minimal HTTP/1.1 keep-alive parser, no framework)
so the stub costs the shared CPUs as little as possible and the client is what gets measured.

    python benchmarks/stub_server.py --port 8123 --delay-ms 50        # serves until killed

Endpoints: POST /v1/chat/completions (a fixed reply; `logprobs: true` adds the first token's top_logprobs),
GET /v1/models, GET /health. `--status 429 --fail-first 2 --retry-after 1` answers the first requests with an
error (for retry tests). In a test or a benchmark, `start_stub(delay_ms=50)` runs one in a separate process and
returns it with its base URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from typing import Any

REPLY = "An answer."
TOP = [{"token": "yes", "logprob": -0.35667494}, {"token": "no", "logprob": -1.2039728}]  # p = 0.7, 0.3


def _completion(model: str, logprobs: bool) -> bytes:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}
    if logprobs:
        choice["message"]["content"] = "yes"
        choice["logprobs"] = {"content": [{"token": "yes", "logprob": TOP[0]["logprob"], "top_logprobs": TOP}]}
    body = {"id": "stub", "object": "chat.completion", "created": 0, "model": model, "choices": [choice],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}  # fmt: skip
    return json.dumps(body).encode()


class Stub(asyncio.Protocol):
    """One connection: requests are parsed as they arrive and answered in order after the delay."""

    def __init__(self, server: StubServer) -> None:
        self.server, self.buf, self.transport = server, b"", None
        self.queue: list[asyncio.Future[bytes]] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections.add(self)
        self.server.opened += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < head_end + 4 + length:
                return
            body = self.buf[head_end + 4 : head_end + 4 + length]
            self.buf = self.buf[head_end + 4 + length :]
            method, path = head.split(" ", 2)[:2]
            self._answer(method, path, body, head)

    def _answer(self, method: str, path: str, body: bytes, head: str) -> None:
        server = self.server
        if method == "POST" and path.endswith("/chat/completions"):
            server.requests += 1
            server.last_body, server.last_head = body, head
            if server.requests <= server.fail_first:
                extra = f"Retry-After: {server.retry_after}\r\n" if server.retry_after is not None else ""
                payload, status, delay = b'{"error": {"message": "stub failure"}}', server.status, 0.0
            else:
                model = "stub"
                want_logprobs = b'"logprobs"' in body and json.loads(body).get("logprobs")
                payload, status, extra, delay = _completion(model, bool(want_logprobs)), 200, "", server.turn()
        elif method == "GET" and path == "/props" and server.props:
            payload, status, extra, delay = json.dumps({"total_slots": server.slots}).encode(), 200, "", 0.0
        elif method == "GET" and path == "/openapi.json" and server.title:
            payload, status, extra, delay = json.dumps({"info": {"title": server.title}}).encode(), 200, "", 0.0
        elif method == "GET" and (path.endswith("/models") or path == "/health"):
            payload, status, extra, delay = (
                b'{"object": "list", "data": [{"id": "stub", "object": "model"}]}',
                200,
                "",
                0.0,
            )
        else:
            payload, status, extra, delay = b'{"error": {"message": "not found"}}', 404, "", 0.0
        reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests"}.get(status, "Error")
        response = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            f"{extra}\r\n"
        ).encode() + payload
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self.queue.append(future)
        if delay > 0:
            loop.call_later(delay, future.set_result, response)
        else:
            future.set_result(response)
        future.add_done_callback(lambda _: self._flush())

    def _flush(self) -> None:
        # HTTP/1.1 answers a connection's requests in order (pipelining); clients send one at a time anyway.
        while self.queue and self.queue[0].done():
            out = self.queue.pop(0).result()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server.connections.discard(self)


class StubServer:
    def __init__(self, *, delay_ms: float = 50.0, status: int = 200, fail_first: int = 0,
                 retry_after: float | None = None, slots: int | None = None, props: bool = False,
                 title: str | None = None) -> None:  # fmt: skip
        """`slots`: requests answered at a time (the rest queue, FIFO, as llama.cpp's servers do; None: all at
        once); `props`: say so in GET /props (`total_slots`, as llama-server does); `title`: GET /openapi.json's."""
        self.delay_s, self.status, self.fail_first, self.retry_after = delay_ms / 1000, status, fail_first, retry_after
        self.requests, self.last_body, self.last_head = 0, b"", ""  # the last chat completion's body and head
        self.slots, self.props, self.title = slots, props, title
        self.free_at: list[float] = [0.0] * (slots or 0)  # when each slot is next free (loop time)
        self.ends: list[float] = []  # when each chat completion held now is answered
        self.most_in = 0  # the most chat completions the stub held at once (in service or queued), with `slots`
        self.server: asyncio.Server | None = None
        self.connections: set[Stub] = set()
        self.opened = 0  # connections accepted so far (a client that keeps them alive opens one per slot)

    def turn(self) -> float:
        """The delay of a chat completion: with `slots`, its service starts when a slot frees."""
        if not self.slots:
            return self.delay_s
        now = asyncio.get_running_loop().time()
        self.ends = [t for t in self.ends if t > now]
        slot = min(range(self.slots), key=self.free_at.__getitem__)
        self.free_at[slot] = max(now, self.free_at[slot]) + self.delay_s
        self.ends.append(self.free_at[slot])
        self.most_in = max(self.most_in, len(self.ends))
        return self.free_at[slot] - now

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:`port` (0: a free one); returns the base URL (`http://127.0.0.1:P/v1`)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Stub(self), "127.0.0.1", port, backlog=4096)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for connection in list(self.connections):  # a stopped stub drops its clients, as a dead server does
                if connection.transport is not None:
                    connection.transport.abort()
            await self.server.wait_closed()


def start_stub(
    *, delay_ms: float = 50.0, extra: list[str] = [], cpu: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Run a stub in a separate process (on CPU `cpu` alone, through taskset, where given); returns (process, base
    URL) once it answers."""
    import httpx

    from schola.backends.vllm import free_port

    port = free_port()
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    argv = [*pin, sys.executable, __file__, "--port", str(port), "--delay-ms", str(delay_ms), *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/models", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the stub server did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--status", type=int, default=429, help="the status of the failing first requests")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--retry-after", type=float, default=None)
    a = p.parse_args()

    async def serve() -> None:
        stub = StubServer(delay_ms=a.delay_ms, status=a.status, fail_first=a.fail_first, retry_after=a.retry_after)
        await stub.start(a.port)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
