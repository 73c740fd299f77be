"""OpenAI-compatible endpoints (vLLM, llama.cpp's server, SGLang, OpenAI itself) through a lean native client.

One aiohttp session per client (per event loop), its connection pool sized to `max_concurrency` and kept alive;
a request is a JSON body posted to `<base_url>/chat/completions`, a reply the parsed JSON. Measured by
benchmarks/client_saturation.py against the same requests through the `openai` SDK's AsyncOpenAI (with a tuned
httpx pool) and raw httpx: aiohttp spent 4 to 60 times less CPU per request, and kept scaling with concurrency
where both stalled near 130 requests/s (httpx's pool slows down with many connections), so it is the one kept.

Several endpoints serving one model (`base_url` plus `base_urls`) share the load: each request goes to the
endpoint with the fewest requests in flight (or round robin). An endpoint that cannot be reached is taken out and
tried again after `revive_s` (doubling while it stays down); the request that found it dead is retried at once on
another. Schola's base gives every request the cache, the retries (a 429/503's Retry-After honoured), the
concurrency limit, the timeout and the ledger; option probabilities come from `logprobs`/`top_logprobs`."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from schola.backends.base import (
    Completion,
    ScholaClient,
    http_preflight,
    retry_after_seconds,
)
from schola.backends.config import OpenAIConfig
from schola.encoding import acyclic_encoder, loads
from schola.errors import BackendError, ContextOverflow, NoLogprobs, TransientBackendError
from schola.secrets import redact
from schola.types import CallInfo

log = logging.getLogger("schola.backends")
OPENAI_URL = "https://api.openai.com/v1"
TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
T = TypeVar("T")
_dumps = acyclic_encoder()  # a request body as json.dumps writes it, without building json's C encoder per request

CONTEXT_WORDS = ("context length", "context window", "maximum context", "too many tokens", "exceeds the")


@dataclass(eq=False)
class Endpoint:
    """One server of a backend, with what the balancer knows about it."""

    url: str
    proxy: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    inflight: int = 0
    served: int = 0
    failures: int = 0  # connection failures in a row
    dead_until: float = 0.0
    slots: int | None = None  # requests the server answers at a time, where it says (None: not known)
    _chat: tuple[str, Any] = field(default=("", None), repr=False)

    def chat(self) -> Any:
        """`url`/chat/completions as a yarl URL, parsed once per `url` (aiohttp parsed the string at every request)."""
        if self._chat[0] is not self.url:
            from yarl import URL  # (aiohttp's own URL type)

            self._chat = (self.url, URL(self.url + "/chat/completions"))
        return self._chat[1]


@functools.cache
def user_agent() -> str:
    """`schola/<version>`, as installed (read from the package's metadata: the backends import nothing of the
    engine, `schola/__init__` included)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"schola/{version('schola')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "schola"


def proxy_for(url: str) -> str | None:
    """The HTTP(S)_PROXY the environment gives for `url` (NO_PROXY respected), looked up once per endpoint."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class Endpoints:
    """Picks the endpoint for each request; takes out the ones that died and brings them back later."""

    def __init__(self, urls: list[str], *, balance: str = "least_busy", revive_s: float = 10.0) -> None:
        self.all = [Endpoint(u, proxy_for(u)) for u in urls]
        self.balance, self.revive_s = balance, revive_s
        self._next = 0

    def __len__(self) -> int:
        return len(self.all)

    def pick(self) -> Endpoint:
        if len(self.all) == 1:
            return self.all[0]
        if not self.all:
            raise BackendError("no endpoint to send the request to (a managed server not started yet?)")
        now = time.monotonic()
        alive = [e for e in self.all if e.dead_until <= now]
        if not alive:  # every one is down: try the one due back first rather than fail without asking
            return min(self.all, key=lambda e: e.dead_until)
        self._next += 1
        start = self._next % len(alive)
        ring = alive[start:] + alive[:start]  # ties go round, so equal endpoints share the load
        if self.balance == "round_robin":
            return ring[0]
        return min(ring, key=lambda e: e.inflight / (e.slots or 1))

    def died(self, endpoint: Endpoint) -> None:
        if endpoint.dead_until > time.monotonic():  # requests sent before it was found dead: one outage
            return
        endpoint.failures += 1
        wait = self.revive_s * 2 ** min(endpoint.failures - 1, 6)
        endpoint.dead_until = time.monotonic() + wait
        log.warning("%s cannot be reached: taken out for %.0f s", redact(endpoint.url, []), wait)

    def others_alive(self, endpoint: Endpoint) -> bool:
        now = time.monotonic()
        return any(e is not endpoint and e.dead_until <= now for e in self.all)


class OpenAIClient(ScholaClient):
    """Any OpenAI-compatible endpoint (vLLM, llama.cpp's server, SGLang, OpenAI) through a lean aiohttp client."""

    Config = OpenAIConfig
    config: OpenAIConfig
    has_logprobs = True
    always_suspends = True  # every request waits on the server: awaited as it is (ScholaClient._start)

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.endpoints = self._endpoints(self.urls())
        self._session: aiohttp.ClientSession | None = None  # made in the loop that uses it
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def _endpoints(self, urls: list[str]) -> Endpoints:
        endpoints = Endpoints(urls, balance=self.config.balance, revive_s=self.config.revive_s)
        for e in endpoints.all:
            e.headers = {"Content-Type": "application/json", "User-Agent": user_agent()}
            if "@" not in urlsplit(e.url).netloc:  # user-info in the URL is basic auth, which aiohttp sends itself
                e.headers["Authorization"] = f"Bearer {self.api_key or 'no-key'}"  # local servers want some key
        return endpoints

    def urls(self) -> list[str]:
        """Every endpoint of this backend, without a trailing slash (none given: OpenAI's own)."""
        urls = [u.rstrip("/") for u in [self.config.base_url, *self.config.base_urls] if u]
        return list(dict.fromkeys(urls)) or [OPENAI_URL]

    @functools.cached_property
    def identity(self) -> str:  # read on every request: computed once
        return f"openai:{self.config.model}@{','.join(sorted(self.urls()))}"

    @property
    def api_key(self) -> str | None:
        env = self.config.api_key_env
        return os.environ.get(env) if env else None

    @property
    def secrets(self) -> list[str]:
        return [k for k in [self.api_key] if k]

    @property
    def inflight(self) -> int:
        """Requests on the wire now, over every endpoint."""
        return sum(e.inflight for e in self.endpoints.all)

    def session(self) -> aiohttp.ClientSession:
        """The client's aiohttp session in the running loop (a run in a new loop gets a new one)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(limit=self.config.max_concurrency, limit_per_host=0, keepalive_timeout=60)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, self.config.timeout_s))
            # (no skip_auto_headers: aiohttp then built a header dict of them on every request; the User-Agent
            # is set in each endpoint's headers instead)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
            self._session_loop = loop
        return self._session

    async def preflight(self) -> None:
        """Every endpoint answers `/models`; the ones that do not are taken out (and tried again later) as long
        as one does. A refused key fails at once. Then requests in flight are bounded by what the servers say they
        answer at a time (`slots`)."""
        outcomes = await asyncio.gather(*(self._probe(e) for e in self.endpoints.all), return_exceptions=True)
        errors = [(e, o) for e, o in zip(self.endpoints.all, outcomes) if isinstance(o, BaseException)]
        for _, error in errors:
            if not isinstance(error, BackendError) or "API key" in str(error) or len(errors) == len(outcomes):
                raise error
        for endpoint, _ in errors:
            self.endpoints.died(endpoint)
        self._fit_to_slots()

    def _fit_to_slots(self) -> None:
        """A request sent past a server's slots waits in the server's queue, on the request's own timeout: a serial
        server given 64 requests times out all but the first few. Where every endpoint says how many it serves at
        once, no more than that are sent; the rest wait here, off the clock."""
        slots = [e.slots for e in self.endpoints.all]
        if None in slots:
            return
        total = sum(s for s in slots if s is not None)
        if total < self.config.max_concurrency:
            key = "backend" if self.name == "default" else f"backends.{self.name}"
            log.warning(
                "%s answers %d request(s) at a time: %s.max_concurrency=%d lowered to %d (queued requests would "
                "spend their timeout_s waiting)", ", ".join(redact(e.url, []) for e in self.endpoints.all), total,
                key, self.config.max_concurrency, total,
            )  # fmt: skip
            self._sem = asyncio.Semaphore(total)

    async def _slots(self, endpoint: Endpoint) -> int | None:
        """How many requests the server at `endpoint` answers at once, where it says: llama.cpp's llama-server
        gives `total_slots` in `/props` (its --parallel); llama-cpp-python's server (`python -m llama_cpp.server`,
        its OpenAPI title "llama.cpp Python API") holds one lock around every request, so it answers one. None
        for a server that says neither (vLLM, SGLang and OpenAI batch what they are sent)."""
        root = endpoint.url.removesuffix("/v1")
        for path in ("/props", "/openapi.json"):
            try:
                get = self.session().get(root + path, headers=endpoint.headers, proxy=endpoint.proxy,
                                         timeout=aiohttp.ClientTimeout(total=5.0))  # fmt: skip
                async with get as response:
                    if response.status != 200:
                        continue
                    data = json.loads(await response.read())
            except (TimeoutError, aiohttp.ClientError, ValueError):
                continue
            if not isinstance(data, dict):
                continue
            if path == "/props" and isinstance(data.get("total_slots"), int) and data["total_slots"] >= 1:
                return int(data["total_slots"])
            info = data.get("info")
            if path == "/openapi.json" and isinstance(info, dict) and "llama.cpp Python API" in str(info.get("title")):
                return 1
        return None

    async def _probe(self, endpoint: Endpoint) -> None:
        """The one probe (`http_preflight`) through the client's own session, then the server's slots."""
        await http_preflight(endpoint.url, headers=endpoint.headers, proxy=endpoint.proxy, session=self.session())
        if endpoint.url != OPENAI_URL:  # OpenAI's own says nothing of slots: not asked
            endpoint.slots = await self._slots(endpoint)

    # -- requests ---------------------------------------------------------------------------------
    def _body(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> dict[str, Any]:
        return {"model": self.config.model, "messages": messages, **sampling,
                "seed": info.seed * 1_000_003 + info.sample, **self.config.extra}  # fmt: skip

    def _complete(
        self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo
    ) -> Coroutine[Any, Any, Completion]:
        """`_post`'s coroutine, which reads its reply with `_completion`: one coroutine a request, not two."""
        return self._post(self._body(messages, sampling, info), self._completion)

    def _completion(self, data: Any, url: str) -> Completion:
        try:
            choice = data["choices"][0]
            text = (choice.get("message") or {}).get("content") or ""
            usage = data.get("usage") or {}
            done = Completion(
                text=text,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                finish_reason=choice.get("finish_reason") or "unknown",
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise BackendError(f"{url} answered without a chat completion: {str(data)[:200]}") from None
        if self.config.cost_per_1k_tokens:
            p, c = self.config.cost_per_1k_tokens
            done.cost_usd = (done.prompt_tokens * p + done.completion_tokens * c) / 1000
        return done

    def _top_logprobs(
        self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo
    ) -> Coroutine[Any, Any, Completion]:
        """One token with its top alternatives (`logprobs`/`top_logprobs`; vLLM, llama.cpp's server, SGLang and
        OpenAI answer them). A server that does not raises NoLogprobs: the role then samples."""
        body = self._body(messages, {"max_tokens": 1, "temperature": 0.0}, info)
        body.update(logprobs=True, top_logprobs=int(sampling.get("top_logprobs", 20)))
        return self._post(body, self._logprobs, asking="logprobs")

    @staticmethod
    def _logprobs(data: Any, url: str) -> Completion:
        try:
            choice = data["choices"][0]
            top = choice["logprobs"]["content"][0]["top_logprobs"]
            pairs = [(str(t["token"]), float(t["logprob"])) for t in top]
        except (KeyError, IndexError, TypeError, ValueError):
            raise NoLogprobs(f"{url} returned no logprobs") from None
        usage = data.get("usage") or {}
        return Completion(text=(choice.get("message") or {}).get("content") or "", top_logprobs=pairs,
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))  # fmt: skip

    async def _post(self, body: dict[str, Any], read: Callable[[Any, str], T], *, asking: str = "") -> T:
        """POST `body` to the chosen endpoint's /chat/completions; `read(parsed reply, endpoint URL)`."""
        endpoint = self.endpoints.pick()
        url = endpoint.url
        endpoint.inflight += 1
        try:
            # Awaited, not `async with`: one coroutine frame less on every resume of the request.
            response = await self.session().post(
                endpoint.chat(),
                data=_dumps(body).encode(),
                headers=endpoint.headers,
                proxy=endpoint.proxy,
            )
            try:
                raw = await response.read()
            finally:
                response.release()
            if response.status != 200:
                raise self._refusal(url, response.status, response.headers, raw, asking)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            # Nobody there: take the endpoint out and retry at once on another one, if one is left.
            self.endpoints.died(endpoint)
            now = 0.0 if self.endpoints.others_alive(endpoint) else None
            raise TransientBackendError(f"cannot reach {url} ({type(e).__name__})", retry_after=now) from None
        except aiohttp.ClientError as e:  # a reset or a server gone mid-reply
            now = 0.0 if len(self.endpoints) > 1 else None
            raise TransientBackendError(f"{url}: {type(e).__name__}: {e}", retry_after=now) from None
        finally:
            endpoint.inflight -= 1
        endpoint.served += 1
        if endpoint.failures:
            endpoint.failures, endpoint.dead_until = 0, 0.0
        try:
            data = loads(raw)
        except ValueError:
            raise TransientBackendError(f"{url} answered with something that is not JSON: {raw[:120]!r}") from None
        return read(data, url)

    def _refusal(self, url: str, status: int, headers: Any, raw: bytes, asking: str) -> BackendError:
        try:
            detail = json.loads(raw).get("error", raw.decode(errors="replace"))
            detail = detail.get("message", detail) if isinstance(detail, dict) else detail
        except (ValueError, AttributeError):
            detail = raw.decode(errors="replace")
        detail = str(detail)[:300]
        if status in TRANSIENT_STATUS:
            return TransientBackendError(f"{url}: HTTP {status}: {detail}", retry_after=retry_after_seconds(headers))
        if status in (401, 403):
            return BackendError(f"{url} refused the API key (HTTP {status})")
        if asking:
            return NoLogprobs(f"{url} refused a request for {asking} (HTTP {status}: {detail})")
        if status == 404:
            return BackendError(f"{url}: HTTP 404 (is the model '{self.config.model}' served there?): {detail}")
        if any(w in detail.lower() for w in CONTEXT_WORDS):
            return ContextOverflow(f"{url}: the prompt and max_tokens do not fit the model's context: {detail}")
        return BackendError(f"{url}: HTTP {status}: {detail}")

    async def close(self) -> None:
        await super().close()
        session, self._session = self._session, None
        if session is not None and not session.closed and self._session_loop is asyncio.get_running_loop():
            await session.close()
