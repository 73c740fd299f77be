"""A fault-injecting HTTP proxy on 127.0.0.1, for tests: in front of an OpenAI-compatible server (or a tiny stub
of one), it answers a share of requests with a fault instead of the server's reply, and records when every
request arrived and what it got, so a test can measure retries, Retry-After and backoff from the outside.

Faults: `429` (with Retry-After), `500`, `503`, `401`, `404` (model not found), `hang` (no reply for `hang_s`,
longer than the client's timeout), `reset` (the connection is reset: RST, no reply) and `malformed` (the server's
reply cut in half: status 200, invalid JSON). The proxy runs its own event loop on a thread, so the code under
test may run its own loop (the CLI does) in the main thread."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

TRANSIENT = ("429", "500", "503", "hang", "reset", "malformed")
ERRORS = {
    "429": (429, "rate_limit_exceeded", "Rate limit reached; slow down"),
    "500": (500, "server_error", "The server had an error while processing your request"),
    "503": (503, "server_error", "The server is overloaded"),
    "401": (401, "invalid_api_key", "Incorrect API key provided"),
    "404": (404, "model_not_found", "The model `smollm2` does not exist or you do not have access to it"),
}
REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable"}  # fmt: skip


@dataclass
class Event:
    """One request as the proxy saw it."""

    at: float  # time.monotonic() when its body had arrived
    method: str
    path: str
    body: str  # sha256 of the body, to tell requests apart
    fault: str | None  # None: passed to the server
    status: int | None  # what the client got (None: a hang or a reset)


class FaultProxy:
    """Proxy `upstream` (an origin such as http://127.0.0.1:8000; None: answer from a stub) on a free port.

    Args:
        share: the share of requests answered with a fault (drawn with a `seed`ed generator, in arrival order).
        faults: the faults drawn from, uniformly.
        script: faults for the first requests, in arrival order (None: pass); after it, `share` applies.
        paths: only requests whose path ends with one of these may get a fault.
        retry_after: the Retry-After (seconds) a 429 carries.
        hang_s: how long a `hang` keeps the request without an answer.
    """

    def __init__(
        self,
        upstream: str | None = None,
        *,
        share: float = 0.0,
        faults: Sequence[str] = TRANSIENT,
        seed: int = 0,
        script: Sequence[str | None] = (),
        paths: Sequence[str] = ("/chat/completions", "/models"),
        retry_after: float = 1.0,
        hang_s: float = 10.0,
    ) -> None:
        self.upstream, self.share, self.faults = upstream, share, list(faults)
        self.rng = random.Random(seed)
        self.script = list(script)
        self.paths = tuple(paths)
        self.retry_after, self.hang_s = retry_after, hang_s
        self.events: list[Event] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self.url = ""

    # -- lifetime ------------------------------------------------------------------------------
    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():  # requests still hanging
                if task is not asyncio.current_task():
                    task.cancel()
            if self._client is not None:
                await self._client.aclose()

        self._run(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    # -- what a test reads ---------------------------------------------------------------------
    def completions(self) -> list[Event]:
        return [e for e in self.events if e.path.endswith("/chat/completions")]

    def faulted(self) -> list[Event]:
        return [e for e in self.events if e.fault is not None]

    # -- one connection, one request (every answer says Connection: close) -----------------------
    def _pick(self, path: str) -> str | None:
        if not path.endswith(self.paths):
            return None
        if self.script:
            return self.script.pop(0)
        return self.rng.choice(self.faults) if self.rng.random() < self.share else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
        body = await reader.readexactly(int(headers.get("content-length", 0) or 0))
        fault = self._pick(target.split("?")[0])
        event = Event(time.monotonic(), method, target, hashlib.sha256(body).hexdigest()[:16], fault, None)
        self.events.append(event)
        try:
            if fault == "hang":
                await asyncio.sleep(self.hang_s)
                writer.close()
            elif fault == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
                writer.transport.abort()
            elif fault in ERRORS:
                status, code, message = ERRORS[fault]
                extra = {"retry-after": f"{self.retry_after:g}"} if status == 429 else {}
                payload = {"error": {"message": message, "type": code, "code": code}}
                await self._answer(writer, status, json.dumps(payload).encode(), extra)
            else:
                status, content = await self._forward(method, target, headers, body)
                if fault == "malformed":
                    content = content[: len(content) // 2]
                event.status = status
                await self._answer(writer, status, content, {})
            if fault in ERRORS:
                event.status = ERRORS[fault][0]
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:  # the proxy stops
            writer.close()

    async def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.upstream is None:
            return 200, stub(target, body)
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.upstream, timeout=600)
        keep = {k: v for k, v in headers.items() if k in ("content-type", "authorization", "accept")}
        response = await self._client.request(method, target, headers=keep, content=body)
        return response.status_code, response.content

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, content: bytes, extra: dict[str, str]) -> None:
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", "content-type: application/json",
                f"content-length: {len(content)}", "connection: close", *(f"{k}: {v}" for k, v in extra.items())]  # fmt: skip
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + content)
        await writer.drain()
        writer.close()


def stub(target: str, body: bytes) -> bytes:
    """A tiny OpenAI-compatible server: one model, and a reply that depends only on the request's messages and
    seed (so a retried request gets the same answer)."""
    if target.split("?")[0].endswith("/models"):
        return json.dumps({"object": "list", "data": [{"id": "smollm2", "object": "model"}]}).encode()
    request = json.loads(body or b"{}")
    messages = request.get("messages", [])
    digest = hashlib.sha256(json.dumps([messages, request.get("seed")]).encode()).digest()
    text = f"Let's think. [[Final Answer]]: {digest[0] % 10}"
    words = sum(len(str(m.get("content", "")).split()) for m in messages)
    return json.dumps({
        "id": "stub-" + digest.hex()[:8], "object": "chat.completion", "created": 0, "model": request.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": words, "completion_tokens": 5, "total_tokens": words + 5},
    }).encode()  # fmt: skip
