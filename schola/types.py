"""Records shared by the engine and the backends: sampling options and the ledger of model use."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import asdict, dataclass, field
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
class Usage:
    """Totals of model use for one role."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cache_hits: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Budget:
    """Limits for a whole run; None means unlimited."""

    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_requests: int | None = None


@dataclass
class Ledger:
    """Tokens, latency and cost per role, shared by every backend of a run, and the run's budget.

    Cache hits are booked (so a resumed run shows what it reused) but cost nothing against the budget.
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
            raise BudgetExceeded(f"budget.max_requests={b.max_requests} reached")
        if b.max_tokens is not None and s.tokens >= b.max_tokens:
            raise BudgetExceeded(f"budget.max_tokens={b.max_tokens} reached ({s.tokens} tokens used)")
        if b.max_cost_usd is not None and s.cost_usd >= b.max_cost_usd:
            raise BudgetExceeded(f"budget.max_cost_usd={b.max_cost_usd} reached (${s.cost_usd:.4f} spent)")

    def begin(self) -> None:
        """Check the budget and reserve one request (so concurrent requests cannot overshoot max_requests)."""
        with self._lock:
            self._check()
            self._inflight += 1

    def stop(self, reason: str) -> None:
        """Refuse every new request from now on (cached replies are still served)."""
        self._stopped = reason

    def end(self) -> None:
        """Release a reservation made by `begin` (the request is booked, or failed)."""
        with self._lock:
            self._inflight -= 1

    def book(
        self, role: str, *, prompt_tokens: int, completion_tokens: int, latency_s: float, cost_usd: float, cached: bool
    ) -> None:
        with self._lock:
            u = self.by_role[role]
            u.requests += 1
            u.prompt_tokens += prompt_tokens
            u.completion_tokens += completion_tokens
            u.latency_s += latency_s
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
            for k, v in asdict(u).items():
                setattr(out, k, getattr(out, k) + v)
        return out

    def to_dict(self) -> dict[str, Any]:
        t = self.total()
        return {"total": {**asdict(t), "tokens": t.tokens}, "by_role": {r: asdict(u) for r, u in self.by_role.items()}}
