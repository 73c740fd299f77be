"""Records shared by the engine and the backends: sampling options and the ledger of model use."""

from __future__ import annotations

import threading
from collections import defaultdict
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from schola.errors import BudgetExceeded


class CallInfo(NamedTuple):
    """What the engine tells a backend about one call, passed in `extra_create_args["schola"]`.

    Args:
        role: the role (persona) that makes the call; the ledger books usage under it.
        sample: the sample index; K samples of one prompt are K different cache entries.
        seed: the run seed; part of the cache key and the model's sampling seed.
    """

    role: str = "-"
    sample: int = 0
    seed: int = 0


@dataclass
class Timing:
    """Where requests' time went: `service_s` the requests themselves (retries included), `queue_s` waiting for a
    turn (the backend's concurrency limit, a batch, the model's one thread). Kept apart because a queue grows with
    concurrency: a 7.9 s call queued behind 25 others read as 205 s."""

    service_s: float = 0.0
    queue_s: float = 0.0
    requests: int = 0  # requests made through a backend, cache hits included


#: The timing of what runs now: the engine sets one per reply, a backend adds each request's service and queue
#: time to it, and a wait for a turn (`queued`) adds to the request's own.
TIMING: ContextVar[Timing | None] = ContextVar("schola_timing", default=None)


def queued(seconds: float) -> None:
    """Count `seconds` of waiting for a turn as queue time of the request running now."""
    if (t := TIMING.get()) is not None:
        t.queue_s += seconds


@dataclass
class Usage:
    """Totals of model use for one role: `requests` reached a model; `cache_hits` were answered from the cache;
    `latency_s` is the requests' service time, `queue_s` their wait for a turn (`Timing`)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cache_hits: int = 0
    queue_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        """`dataclasses.asdict(self)`, without its deep copy of each number (ledger.json is written from one per
        role: asdict took 4 ms of a run's fixed cost at 34 roles)."""
        return {name: getattr(self, name) for name in _USAGE_FIELDS}


_USAGE_FIELDS = tuple(f.name for f in fields(Usage))


@dataclass
class Budget:
    """Limits for a whole run; None means unlimited."""

    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_requests: int | None = None


@dataclass
class Ledger:
    """Tokens, latency and cost per role, shared by every backend of a run, and the run's budget.

    The ledger covers the whole run: it is saved in the run directory and seeded from there on resume, so
    `budget.*` limits every invocation together and `usage` adds up across them. Cache hits are booked under
    `cache_hits` (tokens included, so a resumed run shows what it reused) and cost nothing against the budget.
    """

    budget: Budget = field(default_factory=Budget)
    by_role: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    _spent: Usage = field(default_factory=Usage)
    _inflight: int = 0
    _stopped: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _check(self) -> None:
        b, s = self.budget, self._spent
        if self._stopped:
            raise BudgetExceeded(f"no new requests: {self._stopped}")
        if b.max_requests is not None and s.requests + self._inflight >= b.max_requests:
            raise BudgetExceeded(f"budget.max_requests={b.max_requests} reached", key="budget.max_requests")
        if b.max_tokens is not None and s.tokens >= b.max_tokens:
            raise BudgetExceeded(
                f"budget.max_tokens={b.max_tokens} reached ({s.tokens} tokens used)", key="budget.max_tokens"
            )
        if b.max_cost_usd is not None and s.cost_usd >= b.max_cost_usd:
            raise BudgetExceeded(
                f"budget.max_cost_usd={b.max_cost_usd} reached (${s.cost_usd:.4f} spent)", key="budget.max_cost_usd"
            )

    def begin(self) -> None:
        """Check the budget and reserve one request (so concurrent requests cannot overshoot max_requests)."""
        with self._lock:
            self._check()
            self._inflight += 1

    @property
    def stopped(self) -> str | None:
        """Why new requests are refused (None while they are not)."""
        return self._stopped

    def stop(self, reason: str) -> None:
        """Refuse every new request from now on (cached replies are still served)."""
        self._stopped = reason

    def end(self) -> None:
        """Release a reservation made by `begin` (the request is booked, or failed)."""
        with self._lock:
            self._inflight -= 1

    def book(
        self, role: str, *, prompt_tokens: int, completion_tokens: int, latency_s: float, cost_usd: float, cached: bool,
        queue_s: float = 0.0,
    ) -> None:  # fmt: skip
        with self._lock:
            u = self.by_role[role]
            u.requests += int(not cached)
            u.prompt_tokens += prompt_tokens
            u.completion_tokens += completion_tokens
            u.latency_s += latency_s
            u.queue_s += queue_s
            u.cost_usd += cost_usd
            u.cache_hits += int(cached)
            if not cached:
                self._spent.requests += 1
                self._spent.prompt_tokens += prompt_tokens
                self._spent.completion_tokens += completion_tokens
                self._spent.cost_usd += cost_usd

    def total(self) -> Usage:
        out = Usage()
        for u in self.by_role.values():
            for k, v in u.as_dict().items():
                setattr(out, k, getattr(out, k) + v)
        return out

    def to_dict(self, *, timing: bool = True) -> dict[str, Any]:
        """Totals, per role and spent; `timing=False` leaves out latency (metrics.json holds no timings, so two
        identical runs write identical bytes; ledger.json has them)."""

        def row(u: Usage) -> dict[str, Any]:
            d = u.as_dict()
            if not timing:
                d.pop("latency_s")
                d.pop("queue_s")
            return d

        t = self.total()
        return {
            "total": {**row(t), "tokens": t.tokens},
            "by_role": {r: row(u) for r, u in sorted(self.by_role.items())},
            "spent": row(self._spent),
        }

    def seed(self, saved: dict[str, Any]) -> None:
        """Continue from a saved `to_dict()` (a resumed run): its usage and spending count toward this one's."""
        fields = set(Usage.__dataclass_fields__)
        with self._lock:
            for role, usage in (saved.get("by_role") or {}).items():
                self.by_role[role] = Usage(**{k: v for k, v in usage.items() if k in fields})
            spent = saved.get("spent")
            if spent is None:  # written before `spent` was saved: everything booked but cache hits was spent
                spent = {k: sum(u.get(k, 0) for u in (saved.get("by_role") or {}).values())
                         for k in ("requests", "prompt_tokens", "completion_tokens", "cost_usd")}  # fmt: skip
            self._spent = Usage(**{k: v for k, v in spent.items() if k in fields})

    def exhausted(self) -> str | None:
        """Which budget key is spent already (for a resume that did not raise it), else None."""
        b, s = self.budget, self._spent
        if b.max_requests is not None and s.requests >= b.max_requests:
            return f"budget.max_requests={b.max_requests} is spent ({s.requests} requests made)"
        if b.max_tokens is not None and s.tokens >= b.max_tokens:
            return f"budget.max_tokens={b.max_tokens} is spent ({s.tokens} tokens used)"
        if b.max_cost_usd is not None and s.cost_usd >= b.max_cost_usd:
            return f"budget.max_cost_usd={b.max_cost_usd} is spent (${s.cost_usd:.4f})"
        return None
