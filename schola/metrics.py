"""Metric rows with labels and 95% bootstrap confidence intervals (scipy); agreement statistics are rows too.

The bootstrap resamples in batches sized to a fixed memory budget (`RESAMPLE_BYTES`), so a CI over 200,000
values takes megabytes, not gigabytes; the mean of 0/1 values gets its exact interval instead (below)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

import numpy as np

N_RESAMPLES = 2000
RESAMPLE_BYTES = 16 * 2**20  # what one batch of resamples may hold
_RESERVED = {ord(c): f"%{ord(c):02X}" for c in "%,={}"}  # escaped in label keys and values of a metric key


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


def metric_key(name: str, labels: dict[str, Any]) -> str:
    """The score key of a metric with labels: `accuracy{phase=before,student=alice}` (labels sorted by key;
    `%`, `,`, `=`, `{`, `}` in a label are percent-escaped, so every key parses back)."""
    if not labels:
        return name
    inner = ",".join(f"{str(k).translate(_RESERVED)}={str(v).translate(_RESERVED)}" for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def parse_metric_key(key: str) -> tuple[str, dict[str, str]]:
    """`accuracy{phase=before,student=alice}` -> `("accuracy", {"phase": "before", "student": "alice"})`."""
    name, brace, rest = key.partition("{")
    if not brace:
        return key, {}
    if not rest.endswith("}"):
        raise ValueError(f"metric key {key!r} has no closing '}}'")
    labels: dict[str, str] = {}
    for part in filter(None, rest[:-1].split(",")):
        label, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"metric key {key!r}: label {part!r} has no '='")
        labels[unquote(label)] = unquote(value)
    return name, labels


def resample_batch(n: int, *, arrays: int = 1) -> int:
    """How many resamples of `n` paired items over `arrays` arrays fit in `RESAMPLE_BYTES` (scipy holds an index
    and a gathered copy of each array per resample, with its temporaries: about 24 bytes per item and array)."""
    return max(1, RESAMPLE_BYTES // (24 * max(n, 1) * max(arrays, 1)))


def bootstrap_interval(
    data: Sequence[np.ndarray[Any, Any]],
    statistic: Callable[..., Any],
    *,
    seed: int = 0,
    confidence: float = 0.95,
    vectorized: bool = False,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of `statistic(*data)` over paired items (scipy.stats.bootstrap, resampling item
    indices in memory-bounded batches). Resamples on which the statistic is undefined (NaN: one class only, a
    constant column) are left out; (None, None) when fewer than 2 items or no resample is defined."""
    n = len(data[0])
    if n < 2:
        return (None, None)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # degenerate resamples are expected and left out below
        from scipy import stats  # type: ignore[import-untyped, unused-ignore]  # slow to import: on first use

        res = stats.bootstrap(
            tuple(data),
            statistic,
            n_resamples=N_RESAMPLES,
            batch=resample_batch(n, arrays=len(data)),
            vectorized=vectorized,
            paired=True,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    dist = dist[np.isfinite(dist)]
    if len(dist) == 0:
        return (None, None)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(dist, [alpha, 1 - alpha])
    return (float(low), float(high))


def bootstrap_ci(values: Sequence[float], *, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """95% CI of the mean: a single value or constant values give a zero-width interval; 0/1 values get the
    exact limit of the percentile bootstrap (the mean of n resampled 0/1 values is Binomial(n, p)/n, so the
    interval is that distribution's quantiles, with no resampling); other values a percentile bootstrap in
    bounded memory."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan)
    if len(x) == 1 or np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    alpha = (1 - confidence) / 2
    if np.all((x == 0) | (x == 1)):
        from scipy import stats  # type: ignore[import-untyped, unused-ignore]

        low, high = stats.binom.ppf([alpha, 1 - alpha], len(x), x.mean()) / len(x)
        return (float(low), float(high))
    low_b, high_b = bootstrap_interval((x,), np.mean, seed=seed, confidence=confidence, vectorized=True)
    return (math.nan, math.nan) if low_b is None or high_b is None else (low_b, high_b)


def mean_row(name: str, values: Sequence[float | bool | None], *, seed: int = 0, **labels: Any) -> MetricRow:
    """The mean of `values` with its bootstrap CI; None values are left out (and n says how many counted)."""
    x = [float(v) for v in values if v is not None]
    if not x:
        return MetricRow(name=name, value=None, labels=labels, n=0)
    low, high = bootstrap_ci(x, seed=seed)
    return MetricRow(name=name, value=float(np.mean(x)), labels=labels, ci_low=low, ci_high=high, n=len(x))


def cohen_kappa(a: Sequence[Any], b: Sequence[Any], **labels: Any) -> MetricRow:
    """Cohen's kappa between two raters (scikit-learn)."""
    from sklearn.metrics import cohen_kappa_score  # type: ignore[import-untyped, unused-ignore]

    return MetricRow(name="cohen_kappa", value=float(cohen_kappa_score(a, b)), labels=labels, n=len(a))
