"""The one base every Schola backend shares: an autogen-core `ChatCompletionClient` with cache, retries,
a concurrency limit, a per-request timeout and the ledger. A backend only implements `_complete`."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import time
import types
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from autogen_core import CancellationToken
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelInfo,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from schola.aio import Slots, resume
from schola.backends.cache import Cache, cache_key, sampling_text
from schola.backends.config import (  # noqa: F401 (re-exported: a backend written before imports them from here)
    BackendConfig,
    Concurrency,
    Options,
    Price,
    PricePer1k,
    Retries,
    TimeoutS,
    Url,
    Urls,
    secret_in,
)
from schola.errors import BackendError, NoLogprobs, TransientBackendError
from schola.secrets import redact
from schola.types import TIMING, CallInfo, Ledger, Timing, queued

if TYPE_CHECKING:  # aiohttp (a fifth of a second) loads with the first HTTP request, not for `schola check`
    import aiohttp

SAMPLING_KEYS = ("temperature", "max_tokens", "top_p", "top_k", "stop", "presence_penalty", "frequency_penalty")
LOGPROB_TOP_K = 20  # alternatives of the first token asked for when a step wants option probabilities
MAX_RETRY_AFTER_S = 300.0
PREFLIGHT_ATTEMPTS = 3  # tries of the endpoint check before a run (a reset or timeout is retried)
FINISH_REASONS = {"stop", "length", "function_calls", "content_filter", "unknown"}


@dataclass
class Completion:
    """What a backend's `_complete` returns."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    cost_usd: float | None = None  # None: the backend has no price for its tokens
    top_logprobs: list[tuple[str, float]] | None = None  # the first generated token's alternatives


class Result(CreateResult):
    """A reply as AutoGen's CreateResult, with what it cost (what the ledger booked for it), so the transcript
    line can carry it: None where the backend has no price for its tokens, 0 for a reply from the cache."""

    cost_usd: float | None = None

    @classmethod
    def built(cls, **values: Any) -> Result:
        """What `model_construct(**values)` makes, in a quarter of its time (it took 11 µs, a tenth of a cached
        reply's CPU): the caller builds every field with its declared type, so validation would only cost time."""
        if cls._defaults is None:
            cls._defaults = {name: f.get_default(call_default_factory=True) for name, f in cls.model_fields.items()}
        m = cls.__new__(cls)
        object.__setattr__(m, "__dict__", {**cls._defaults, **values})
        object.__setattr__(m, "__pydantic_fields_set__", set(values))
        object.__setattr__(m, "__pydantic_extra__", None)
        object.__setattr__(m, "__pydantic_private__", None)
        return m

    _defaults: ClassVar[dict[str, Any] | None] = None


def cost_of(done: Completion, *, cached: bool) -> float | None:
    """What a reply cost: None where the backend has no price for its tokens, 0 for a reply from the cache."""
    return None if done.cost_usd is None else 0.0 if cached else done.cost_usd


def to_dicts(messages: Sequence[LLMMessage]) -> list[dict[str, str]]:
    """AutoGen messages to OpenAI-style dicts (text only)."""
    out = []
    for m in messages:
        role = {"SystemMessage": "system", "UserMessage": "user", "AssistantMessage": "assistant"}.get(
            type(m).__name__, "user"
        )
        content = m.content
        if not isinstance(content, str):
            content = "\n".join(str(getattr(c, "content", c)) if not isinstance(c, str) else c for c in content)
        out.append({"role": role, "content": content})
    return out


def from_dicts(messages: list[dict[str, str]]) -> list[LLMMessage]:
    """OpenAI-style dicts back to AutoGen messages."""
    out: list[LLMMessage] = []
    for m in messages:
        if m["role"] == "system":
            out.append(SystemMessage(content=m["content"]))
        elif m["role"] == "assistant":
            out.append(AssistantMessage(content=m["content"], source="assistant"))
        else:
            out.append(UserMessage(content=m["content"], source="user"))
    return out


def retry_after_seconds(headers: Any) -> float | None:
    """The wait a 429/503 response asks for: `Retry-After` in seconds or as an HTTP date (None when absent)."""
    if not hasattr(headers, "get"):
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _norm(text: str) -> str:
    return text.strip().strip("()[].:,*\"'").strip().lower()


def option_of(text: str, options: Sequence[str]) -> str | None:
    """Which option a reply answers with: the option its first word (or label) is, else the first option
    named as a whole word; None when it names none."""
    words = re.findall(r"[\w']+", text.lower())
    norm = {_norm(o): o for o in options}
    if words and words[0] in norm:
        return norm[words[0]]
    for w in words:
        if w in norm:
            return norm[w]
    return None


def distribute(top: Sequence[Sequence[Any]], options: Sequence[str]) -> dict[str, float] | None:
    """Option probabilities from the first token's top log-probabilities: each token counts toward the
    options it begins (case and spacing ignored), then the options are normalised. None if no token fits."""
    mass = dict.fromkeys(options, 0.0)
    for token, logprob in top:
        t = _norm(str(token))
        if not t:
            continue
        for o in options:
            if _norm(o).startswith(t):
                mass[o] += math.exp(float(logprob))
    total = sum(mass.values())
    return {o: m / total for o, m in mass.items()} if total > 0 else None


def valid_unicode(text: str) -> str:
    """A reply as text every later step can encode: a lone surrogate (a server's broken decoding, sent as the JSON
    escape \\ud800) becomes U+FFFD, which prompts, cache keys and run files can hold."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


async def http_preflight(
    base_url: str,
    *,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
    proxy: str | None = None,
    session: aiohttp.ClientSession | None = None,
    timeout_s: float = 5.0,
) -> None:
    """Fail in seconds when an OpenAI-compatible endpoint cannot be reached or refuses the key: GET `/models`. The
    one probe of every HTTP backend; a client with a session of its own passes it (no new pool and SSL context per
    run: a replayed run takes a tenth of a second), else one is made that honours HTTP(S)_PROXY."""
    import aiohttp

    headers = {**({"Authorization": f"Bearer {api_key}"} if api_key else {}), **(headers or {})}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    for attempt in range(PREFLIGHT_ATTEMPTS):
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = session
                if client is None:  # closed with the stack when this try ends
                    client = await stack.enter_async_context(aiohttp.ClientSession(trust_env=True))
                get = client.get(base_url.rstrip("/") + "/models", headers=headers, proxy=proxy, timeout=timeout)
                async with get as response:
                    status = response.status
            break
        except (TimeoutError, aiohttp.ClientError) as e:
            # A refused connection is a server that is down: say so at once. A reset or a timeout may be a
            # passing fault (a proxy, a busy server): it is retried like any request.
            if isinstance(e, aiohttp.ClientConnectorError) or attempt == PREFLIGHT_ATTEMPTS - 1:
                raise BackendError(f"cannot reach {base_url} ({type(e).__name__}); is the server running?") from None
            await asyncio.sleep(0.5 * 2**attempt * (0.5 + random.random()))
    if status in (401, 403):
        raise BackendError(f"{base_url} refused the API key (HTTP {status})")


class Watchdog:
    """Per-request timeouts from one timer per client instead of one timer per request.

    asyncio.timeout() arms and cancels a timer handle on every request, which cost a fifth of the engine's
    throughput on a zero-latency backend; here a request only registers its deadline, and one timer, armed at the
    earliest deadline, cancels the requests past theirs when it fires and is armed again at the next one. Requests
    that end before their deadline leave the timer as it is (it finds nothing to cancel, once per timeout_s at most),
    so a client waiting on a slow server does not wake its loop before a deadline is due."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadlines: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None  # armed in `_loop`
        self._loop: asyncio.AbstractEventLoop | None = None

    def arm(self, started: float | None = None) -> asyncio.Task[Any]:
        """Start the clock of the request the running task makes (at `started`, a `time.monotonic()`; default: now);
        it stops with `deadlines.pop(task)`. Its one user is `ScholaClient._with_retries`, which arms it, awaits the
        request and, on a cancel, asks `timed_out` whether it was the deadline's (no coroutine layer of its own)."""
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        deadline = self.deadlines[task] = (loop.time() if started is None else started) + self.timeout_s
        self._watch(loop, deadline)
        return task

    def _watch(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """The timer fires by `deadline` (armed again where it would fire later, or in another loop)."""
        timer = self._timer
        if timer is None or timer.when() > deadline or self._loop is not loop:
            if timer is not None:
                timer.cancel()
            self._timer, self._loop = loop.call_at(deadline, self._expire), loop

    def _expire(self) -> None:
        """Cancel the requests past their deadline; arm the timer at the next one."""
        self._timer, loop = None, self._loop
        assert loop is not None
        now, due = loop.time(), None
        for task, deadline in list(self.deadlines.items()):
            if deadline > now:
                due = deadline if due is None else min(due, deadline)
            elif task not in self.expired and not task.cancelling():
                self.expired.add(task)
                task.cancel()
        if due is not None:
            self._watch(loop, due)

    def timed_out(self, task: asyncio.Task[Any]) -> None:
        """Raise TimeoutError when the cancel `task` just got was the watchdog's (else return: it stays a cancel).
        Only the watchdog's own cancel is a timeout: an outside cancel (Ctrl-C, a failure stopping the others)
        that arrived in the same tick leaves a cancel request behind, and stays a cancel."""
        if task in self.expired:
            self.expired.discard(task)
            if task.uncancel() == 0:
                raise TimeoutError from None

    @contextlib.asynccontextmanager
    async def queued(self) -> AsyncIterator[None]:
        """Time spent waiting for a turn (a slot on a server, a batch) is not the request's: the clock stops inside
        and starts again, at the full timeout_s, when the request is served; the wait is booked as queue time, not
        service time (`schola.types.queued`). Outside an armed request the clock is not touched."""
        task = asyncio.current_task()
        stopped = self.deadlines.pop(task, None) if task is not None else None
        asked = time.perf_counter()
        try:
            yield
        finally:
            queued(time.perf_counter() - asked)
            if stopped is not None and task is not None:
                loop = asyncio.get_running_loop()
                deadline = self.deadlines[task] = loop.time() + self.timeout_s
                self._watch(loop, deadline)


class ScholaClient(ChatCompletionClient):
    """Shared base of Schola's backends.

    Args:
        config: the backend's validated config.
        name: the backend's name in the run (`default`, or a key of `backends`).
        ledger: books tokens, latency and cost per role and enforces the budget.
        cache: the run's response cache; None disables caching.
    """

    Config: ClassVar[type[BackendConfig]] = BackendConfig

    def __init__(
        self,
        config: BackendConfig | Mapping[str, Any] | None = None,
        *,
        name: str = "default",
        ledger: Ledger | None = None,
        cache: Cache | None = None,
    ) -> None:
        if not isinstance(config, BackendConfig):
            config = self.Config.model_validate(dict(config or {}))
        self.config = config
        self.name = name
        self.ledger = ledger or Ledger()
        self.cache = cache
        self._sem: Slots | asyncio.Semaphore = Slots(config.max_concurrency)
        self._watchdog = Watchdog(config.timeout_s)
        self._prompt_tokens = self._completion_tokens = 0
        self._last = (0, 0)
        # The sampling options of a request that asks for none, and their text in its cache key.
        plain = {} if config.max_tokens is None else {"max_tokens": config.max_tokens}
        self._plain = (plain, sampling_text(plain))

    # -- what a backend implements ------------------------------------------------------------
    @property
    @abstractmethod
    def identity(self) -> str:
        """The model's identity in cache keys: two models must never share one."""

    @abstractmethod
    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        """One request. Raise TransientBackendError to be retried, BackendError to fail at once."""

    async def preflight(self) -> None:
        """Check the backend can serve before the run starts (reachable endpoint, model file present)."""

    @property
    def secrets(self) -> list[str]:
        """Values that must never appear in an error message."""
        return []

    # -- the wrappers every backend gets -------------------------------------------------------
    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        done, cached = await self.reply(to_dicts(messages), extra_create_args)
        return self._result(done, cached=cached)

    def reply(
        self, messages: list[dict[str, str]], args: Mapping[str, Any], info: CallInfo | None = None
    ) -> Coroutine[Any, Any, tuple[Completion, bool]]:
        """What `create` asks of the backend, for callers that hold OpenAI-style dicts (Schola's roles): awaited, the
        reply and whether it came from the cache. No AutoGen message or result is built (they were a fifth of a
        cached reply's time); `args` are create's `extra_create_args` (sampling options, `schola`: the CallInfo,
        which `info` gives instead). A plain function returning `_call`'s coroutine: no coroutine layer of its own."""
        if info is None:
            info = args.get("schola") or CallInfo()
        if len(args) <= ("schola" in args):  # no sampling options (most calls): the backend's own, found once
            return self._call(self._complete, messages, dict(self._plain[0]), info, self._plain[1])
        sampling = {k: args[k] for k in SAMPLING_KEYS if args.get(k) is not None}
        if "max_tokens" not in sampling and self.config.max_tokens is not None:
            sampling["max_tokens"] = self.config.max_tokens
        return self._call(self._complete, messages, sampling, info)

    async def option_probs(
        self, messages: Sequence[LLMMessage], options: Sequence[str], *, info: CallInfo
    ) -> tuple[dict[str, float], str] | None:
        """The probability the model gives each option as its next answer, from the first token's top
        log-probabilities; None when this backend has none (the role then estimates from samples)."""
        if not self.has_logprobs:
            return None
        sampling = {"max_tokens": 1, "temperature": 0.0, "top_logprobs": LOGPROB_TOP_K}
        try:
            done, _ = await self._call(self._top_logprobs, to_dicts(messages), sampling, info)
        except NoLogprobs:  # a server without logprobs: estimate from samples from now on
            self.has_logprobs = False
            return None
        probs = distribute(done.top_logprobs or [], options)
        return (probs, "logprobs") if probs is not None else None

    has_logprobs: bool = False  # set by backends that implement _top_logprobs (cleared when a server lacks them)
    always_suspends: ClassVar[bool] = False  # every request waits on the network (an HTTP backend): see `_start`

    async def _top_logprobs(
        self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo
    ) -> Completion:
        """One request for the first token's top log-probabilities (`Completion.top_logprobs`); backends that
        have them set `has_logprobs` and override this."""
        raise NoLogprobs(f"backend '{self.name}' has no token log-probabilities")

    async def _call(
        self, fn: Any, msgs: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo, options: str | None = None
    ) -> tuple[Completion, bool]:
        """`fn` (a request) through the cache, the concurrency limit, the budget, retries, the timeout and the
        ledger; `options`: `sampling_text(sampling)`, where the caller has it."""
        cache = self.cache
        key = cache_key(self.identity, msgs, sampling, info.seed, info.sample, options) if cache is not None else None
        if key is not None and (hit := cache.get(key)) is not None:  # type: ignore[union-attr]
            done = Completion(**hit)
            self._account(info.role, done, 0.0, 0.0, cached=True)
            if (outer := TIMING.get()) is not None:
                outer.requests += 1
            return done, True
        outer, mine = TIMING.get(), Timing()  # this request's: a wait for a turn inside it adds to mine.queue_s
        token = TIMING.set(mine)
        try:
            asked = time.perf_counter()
            async with self._sem:  # waiting for a slot under max_concurrency is queue time
                mine.queue_s += time.perf_counter() - asked
                self.ledger.begin()
                try:
                    done, pending = self._start(fn, msgs, sampling, info)
                    if pending is not None:  # it suspended, or failed: the rest on the watchdog's clock, with retries
                        done = await self._with_retries(fn, msgs, sampling, info, pending)
                    done.text = valid_unicode(done.text)
                    mine.service_s = max(0.0, time.perf_counter() - asked - mine.queue_s)
                    self._account(info.role, done, mine.service_s, mine.queue_s, cached=False)
                finally:
                    self.ledger.end()
        finally:
            TIMING.reset(token)
        if outer is not None:
            outer.requests += 1
            outer.service_s += mine.service_s
            outer.queue_s += mine.queue_s
        if key is not None:
            cache.put(key, done.__dict__)  # type: ignore[union-attr]
        return done, False

    def _start(self, fn: Any, msgs: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> tuple[Any, Any]:
        """One attempt of `fn`, stepped by hand: (its Completion, None) when it answers without suspending (a cached or
        scripted reply never gave the loop a turn, so no timeout could fire and the watchdog is not involved); else
        (None, what is pending): the rest of the request and when it started, or the error it raised. A backend whose
        every request waits on the network (`always_suspends`) is not stepped: its request is awaited as it is, without
        `resume` between it and the task at each of its suspensions."""
        try:
            started, request = time.monotonic(), fn(msgs, sampling, info)
            if isinstance(request, types.CoroutineType) and not self.always_suspends:  # (an `async def`)
                try:
                    request = resume(request, request.send(None))
                except StopIteration as answered:
                    return answered.value, None
        except (BackendError, TimeoutError) as e:
            return None, e
        return None, (request, started)

    async def _with_retries(
        self, fn: Any, msgs: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo, pending: Any
    ) -> Completion:
        """The request `_start` left `pending` (its rest, or its error), then its retries."""
        cfg, watchdog = self.config, self._watchdog
        timed_out = False
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                done, pending = self._start(fn, msgs, sampling, info)
                if pending is None:
                    return done  # type: ignore[no-any-return]
            try:
                if isinstance(pending, BaseException):
                    raise pending
                request, started = pending
                task = watchdog.arm(started)  # the rest of the request runs on the watchdog's clock
                try:
                    return await request  # type: ignore[no-any-return]
                except asyncio.CancelledError:
                    watchdog.timed_out(task)  # raises TimeoutError when it was the deadline's
                    raise
                finally:
                    watchdog.deadlines.pop(task, None)
            except TransientBackendError as e:
                error, retry_after = e, e.retry_after
            except TimeoutError:
                error, retry_after = TransientBackendError(f"no reply within timeout_s={cfg.timeout_s}"), None
                timed_out = True
            except BackendError as e:  # permanent: 401, 404, a bad request; its type (NoLogprobs, ContextOverflow) kept
                raise type(e)(f"backend '{self.name}': {redact(str(e), self.secrets)}") from None
            finally:
                pending = None  # (no reference cycle through a raised error's traceback)
            if attempt == cfg.max_retries:
                break
            backoff = min(30.0, cfg.retry_base_s * 2**attempt) * (0.5 + random.random())
            # A server's Retry-After is honoured, capped so a hostile value cannot stall a run for hours.
            await asyncio.sleep(min(retry_after, MAX_RETRY_AFTER_S) if retry_after is not None else backoff)
        message = redact(str(error), self.secrets)
        advice = f"; {self.timeout_advice()}" if timed_out else ""
        raise BackendError(f"backend '{self.name}': {message} (gave up after {cfg.max_retries + 1} attempts){advice}")

    def timeout_advice(self) -> str:
        """What to change when requests time out: the two settings (a resumed run may change both)."""
        key = "backend" if self.name == "default" else f"backends.{self.name}"
        return (
            f"a slow model needs a longer {key}.timeout_s (now {self.config.timeout_s:g}), and a server that answers "
            f"fewer requests at a time than are sent ({key}.max_concurrency={self.config.max_concurrency}) keeps "
            f"the rest waiting: lower {key}.max_concurrency"
        )

    async def in_thread(self, executor: Any, call: Any) -> Any:
        """`call()` on `executor`; the time it waits there for a thread (a model that serves one request at a
        time) is queue time, not the request's."""
        submitted = time.perf_counter()
        started: list[float] = []

        def timed() -> Any:
            started.append(time.perf_counter())
            return call()

        try:
            return await asyncio.get_running_loop().run_in_executor(executor, timed)
        finally:
            queued((started[0] if started else time.perf_counter()) - submitted)

    def _account(self, role: str, done: Completion, service_s: float, queue_s: float, *, cached: bool) -> None:
        self._last = (done.prompt_tokens, done.completion_tokens)  # AutoGen's RequestUsage is built when asked for
        self._prompt_tokens += done.prompt_tokens
        self._completion_tokens += done.completion_tokens
        self.ledger.book(
            role,
            prompt_tokens=done.prompt_tokens,
            completion_tokens=done.completion_tokens,
            latency_s=service_s,
            queue_s=queue_s,
            cost_usd=0.0 if cached else done.cost_usd or 0.0,
            cached=cached,
        )

    @staticmethod
    def _result(done: Completion, *, cached: bool) -> Result:
        reason: Any = done.finish_reason if done.finish_reason in FINISH_REASONS else "unknown"
        usage = RequestUsage(prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens)
        # Every field is built here with its declared type, so pydantic's validation would only cost time.
        return Result.built(
            finish_reason=reason, content=done.text, usage=usage, cached=cached, cost_usd=cost_of(done, cached=cached)
        )

    # -- the rest of AutoGen's ChatCompletionClient --------------------------------------------
    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        result = await self.create(messages, extra_create_args=extra_create_args)
        assert isinstance(result.content, str)
        yield result.content
        yield result

    async def close(self) -> None:
        if self.cache is not None:
            self.cache.flush()

    async def __aenter__(self) -> ScholaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def actual_usage(self) -> RequestUsage:
        return RequestUsage(prompt_tokens=self._last[0], completion_tokens=self._last[1])

    def total_usage(self) -> RequestUsage:
        return RequestUsage(prompt_tokens=self._prompt_tokens, completion_tokens=self._completion_tokens)

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        # A rough count (4 characters a token); backends with a tokenizer override it.
        return sum(len(m["content"]) // 4 + 4 for m in to_dicts(messages))

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return max(0, self.context_size - self.count_tokens(messages))

    context_size: int = 8192

    @property
    def capabilities(self) -> Any:  # deprecated in AutoGen; kept because it is abstract there
        return self.model_info

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(
            vision=False, function_calling=False, json_output=False, family="unknown", structured_output=False
        )
