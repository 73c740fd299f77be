"""Metric rows with labels and 95% bootstrap confidence intervals (scipy); agreement statistics are rows too.

The bootstrap resamples in batches sized to a fixed memory budget (`RESAMPLE_BYTES`), so a CI over 200,000
values takes megabytes, not gigabytes; the mean of 0/1 values gets its exact interval instead (below). A run's
episode scores are summed as they come (`StreamingMean`): memory that does not grow with the run.

numpy and scipy are imported where a number is computed, not with this module (`schola list` and `schola check`
must not pay for them)."""

from __future__ import annotations

import hashlib
import heapq
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
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
    # per-episode values behind the row, where a stage keeps them (findings pair them by episode); not saved
    items: dict[str, float] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["items"]
        return out


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
    import numpy as np

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
    import numpy as np

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
    import numpy as np

    x = [float(v) for v in values if v is not None]
    if not x:
        return MetricRow(name=name, value=None, labels=labels, n=0)
    low, high = bootstrap_ci(x, seed=seed)
    return MetricRow(name=name, value=float(np.mean(x)), labels=labels, ci_low=low, ci_high=high, n=len(x))


def cohen_kappa(a: Sequence[Any], b: Sequence[Any], **labels: Any) -> MetricRow:
    """Cohen's kappa between two raters (scikit-learn)."""
    from sklearn.metrics import cohen_kappa_score  # type: ignore[import-untyped, unused-ignore]

    return MetricRow(name="cohen_kappa", value=float(cohen_kappa_score(a, b)), labels=labels, n=len(a))


class StreamingMean:
    """The mean of a stream of values (a run's episode scores) and its 95% CI, in memory that does not grow with
    the stream, and the same whatever order the values come in (a resumed run's come in another).

    The sum is exact (Shewchuk's partials, as `math.fsum`), so the mean does not depend on the order. The CI is the
    percentile bootstrap of the mean, drawn from the values' counts: resampling n items is drawing n times from
    the values' empirical distribution, i.e. a multinomial over the distinct values, so while there are at most
    `MAX_DISTINCT` of them (scores are 0/1, grades, shares of a few samples) the bootstrap distribution is exactly
    the one resampling items gives, at a cost independent of n. Past that, it is drawn from a uniform sample of
    `SAMPLE` values: those whose episodes hash lowest (a bottom-k sample: the same items whatever the order);
    centred on the exact mean, the CI's width then carries the relative error of a standard deviation estimated from `SAMPLE` values,
    about 1/sqrt(2 * SAMPLE) = 1.1%, well inside the bootstrap's own Monte Carlo error at 2,000 resamples.
    0/1 values keep their exact interval (`bootstrap_ci`)."""

    MAX_DISTINCT = 4096
    SAMPLE = 4096

    def __init__(self) -> None:
        self.n = 0
        self._finite = 0
        self._partials: list[float] = []
        self._special = 0.0  # infinities and NaN: the exact sum cannot hold them
        self._counts: dict[float, int] | None = {}
        self._sample: list[tuple[int, float]] = []  # a max-heap of (-hash of the key, value): the lowest hashes

    def add(self, value: float | bool | None, key: str) -> None:
        """One value (None is left out, as `mean_row` does); `key` names its item (the episode) for the sample."""
        if value is None:
            return
        x = float(value)
        self.n += 1
        if not math.isfinite(x):
            self._special += x
            return
        self._finite += 1
        _add_exact(self._partials, x)
        if self._counts is not None:
            self._counts[x] = self._counts.get(x, 0) + 1
            if len(self._counts) > self.MAX_DISTINCT:
                self._counts = None
        rank = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
        entry = (-rank, x)
        if len(self._sample) < self.SAMPLE:
            heapq.heappush(self._sample, entry)
        elif entry > self._sample[0]:
            heapq.heapreplace(self._sample, entry)

    @property
    def mean(self) -> float | None:
        if not self.n:
            return None
        if self._finite < self.n:
            return self._special
        return math.fsum(self._partials) / self.n

    def row(self, name: str, *, seed: int = 0, **labels: Any) -> MetricRow:
        """The mean with its 95% CI, as `mean_row` gives for the same values."""
        mean = self.mean
        if mean is None:
            return MetricRow(name=name, value=None, labels=labels, n=0)
        low, high = self.ci(seed=seed)
        return MetricRow(name=name, value=mean, labels=labels, ci_low=low, ci_high=high, n=self.n)

    def ci(self, *, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
        import numpy as np

        if self._counts is not None:
            values = np.fromiter(self._counts, dtype=float, count=len(self._counts))
            counts = np.fromiter(self._counts.values(), dtype=float, count=len(self._counts))
        else:
            values = np.asarray([x for _, x in sorted(self._sample)], dtype=float)
            counts = np.ones(len(values))
        if len(values) == 0:
            return (math.nan, math.nan)
        if len(values) == 1:
            return (float(values[0]), float(values[0]))
        n = self._finite  # the values the CI is over (an infinite or NaN one has no place in a bootstrap)
        alpha = (1 - confidence) / 2
        if self._counts is not None and np.all((values == 0) | (values == 1)):
            from scipy import stats  # type: ignore[import-untyped, unused-ignore]

            p = float(counts[values == 1].sum() / counts.sum())
            low, high = stats.binom.ppf([alpha, 1 - alpha], n, p) / n
            return (float(low), float(high))
        order = np.argsort(values)  # the same draws whatever order the values came in
        values, p = values[order], counts[order] / counts.sum()
        rng = np.random.default_rng(seed)
        batch = max(1, RESAMPLE_BYTES // (8 * len(values)))
        means = []
        for start in range(0, N_RESAMPLES, batch):
            draws = rng.multinomial(n, p, size=min(batch, N_RESAMPLES - start))
            means.append(draws @ values / n)
        # centred on the exact mean: the sample gives the spread around it (exact counts: no shift at all)
        shift = (math.fsum(self._partials) / n - float(values @ p)) if self._counts is None else 0.0
        low_b, high_b = np.quantile(np.concatenate(means), [alpha, 1 - alpha]) + shift
        return (float(low_b), float(high_b))


def _add_exact(partials: list[float], x: float) -> None:
    """Add `x` to a sum kept exactly as non-overlapping partials (Shewchuk; the recipe `math.fsum` follows)."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]
