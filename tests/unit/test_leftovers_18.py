"""Issue 18's review leftovers: one home for the sequential test, results.jsonl read in one pass, the live
viewer's walk cached, `schola report` reading a sweep once."""

from __future__ import annotations

import numpy as np

from schola.findings import Wealth, log_capital


def test_log_capital_carried_in_batches_is_the_whole_series() -> None:
    """The batch path (`log_capital` over a series) and the incremental one (`run.until=decided`: the same call
    fed batch after batch with a carried `Wealth`) are one computation: the same numbers, bit for bit, also with
    several series at once and a grid of candidate means."""
    rng = np.random.default_rng(4)
    m = np.linspace(0, 1, 21)[1:-1]
    for _ in range(20):
        x = rng.random((3, int(rng.integers(1, 200))))
        whole = log_capital(x, m)
        wealth, parts, at = Wealth(), [], 0
        while at < x.shape[-1]:
            size = int(rng.integers(1, 30))
            parts.append(log_capital(x[:, at : at + size], m, wealth=wealth))
            at += size
        for side in (0, 1):
            assert np.array_equal(np.concatenate([p[side] for p in parts], axis=-2), whole[side])
        assert wealth.t == x.shape[-1]
