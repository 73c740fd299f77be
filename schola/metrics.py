"""Metric rows with labels and 95% bootstrap confidence intervals (scipy); agreement statistics are rows too."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats


@dataclass
class MetricRow:
    """One number of a run: `{"name", "labels", "value", "ci_low", "ci_high", "n"}` in metrics.json."""

    name: str
    value: float | None
    labels: dict[str, Any] = field(default_factory=dict)
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_ci(values: Sequence[float], *, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-BCa bootstrap CI of the mean; a single value or constant values give a zero-width interval."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan)
    if len(x) == 1 or np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    res = stats.bootstrap(
        (x,), np.mean, confidence_level=confidence, n_resamples=2000, method="percentile", rng=np.random.default_rng(seed)
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def mean_row(name: str, values: Sequence[float | bool | None], *, seed: int = 0, **labels: Any) -> MetricRow:
    """The mean of `values` with its bootstrap CI; None values are left out (and n says how many counted)."""
    x = [float(v) for v in values if v is not None]
    if not x:
        return MetricRow(name=name, value=None, labels=labels, n=0)
    low, high = bootstrap_ci(x, seed=seed)
    return MetricRow(name=name, value=float(np.mean(x)), labels=labels, ci_low=low, ci_high=high, n=len(x))


def cohen_kappa(a: Sequence[Any], b: Sequence[Any], **labels: Any) -> MetricRow:
    """Cohen's kappa between two raters (scikit-learn)."""
    from sklearn.metrics import cohen_kappa_score

    return MetricRow(name="cohen_kappa", value=float(cohen_kappa_score(a, b)), labels=labels, n=len(a))
