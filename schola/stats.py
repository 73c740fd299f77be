"""Generic run-level statistics over episode results, usable from any scenario YAML.

    stages:
      - {fn: agreement, a: outputs.h1_label, b: outputs.llm_label, by: inputs.category}
      - {fn: agreement, raters: [outputs.h1, outputs.h2, outputs.llm], level: ordinal}
      - {fn: error, prediction: outputs.llm_grade, reference: inputs.instructor_grade, tolerance: 1}
      - {fn: correlation, x: outputs.llm_grade, y: inputs.instructor_grade}
      - {fn: compare, reference: inputs.instructor_grade, a: outputs.llm_grade, b: outputs.peer_grade}
      - {fn: paired_difference, metric: accuracy, label: phase, a: before, b: after}

A column is a dotted path into an episode record (`inputs.category`, `outputs.grades.0`, `scores.correct`,
`round`). An item whose value is missing (absent or None) is left out of that statistic; `n` says how many
counted. With `by:` every statistic comes once over all items (no group label) and once per value of the `by`
column (labelled with the path's last part: `{category: confusion}`). With `name:` rows are named
`<name>.<statistic>`. A statistic that is undefined (fewer than 2 items, one class only, a constant column) is a
row with value None, and the reason is logged. Statistics come from scikit-learn, scipy and `krippendorff`; CIs
are 95% percentile bootstraps over items (seeded with the run seed) unless a row says otherwise.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, cast

import numpy as np

from schola import templates
from schola.errors import ConfigError
from schola.metrics import (
    MetricRow,
    bootstrap_ci,
    bootstrap_interval,
    mean_row,
    parse_metric_key,
    resample_batch,
)


@functools.cache
def _scipy_stats() -> Any:
    """scipy.stats, imported on first use (it costs most of a second: `schola list` must not pay it)."""
    from scipy import stats  # type: ignore[import-untyped, unused-ignore]

    return stats


@functools.cache
def _sklearn_metrics() -> Any:
    from sklearn import metrics  # type: ignore[import-untyped, unused-ignore]

    return metrics


@functools.cache
def _krippendorff() -> Any:
    import krippendorff

    return krippendorff


log = logging.getLogger(__name__)

LEVELS = ("nominal", "ordinal", "interval", "ratio")
WEIGHTS = (None, "linear", "quadratic")
_ABSENT = object()
Groups = list[tuple[dict[str, str], list[int]]]


class Context(Protocol):
    """What these stages read of the stage context."""

    results: list[dict[str, Any]]
    seed: int


def lookup(record: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path in an episode record (`schola.templates.lookup`), or `_ABSENT`."""
    try:
        return templates.lookup(record, path)
    except KeyError:
        return _ABSENT


def agreement(
    ctx: Context,
    *,
    a: str | None = None,
    b: str | None = None,
    raters: Sequence[str] | None = None,
    weights: str | None = None,
    level: str = "nominal",
    by: str | None = None,
    name: str | None = None,
) -> list[MetricRow]:
    """Agreement between label columns, over items (episodes).

    With `a` and `b`: `cohen_kappa` (scikit-learn; `weights: linear|quadratic` weighs disagreements by the
    distance of the labels' ranks, scikit-learn's weighted kappa) and `percent_agreement` (share of items where
    a == b, with its exact interval). With `raters: [col, ...]`: `krippendorff_alpha` at `level` (nominal,
    ordinal, interval, ratio), over items rated by at least two raters (missing ratings allowed), and
    `percent_agreement` (per item, the share of agreeing rater pairs; averaged). Labels 1, 1.0 and "1" are one
    label; non-nominal levels and weighted kappa need numbers.
    """
    stage = "agreement"
    if raters is not None:
        if a is not None or b is not None:
            raise ConfigError(f"stage {stage}: give either a and b (two columns) or raters (a list), not both")
        if isinstance(raters, str) or len(list(raters)) < 2:
            raise ConfigError(f"stage {stage}: raters must be a list of at least two columns, got {raters!r}")
        if level not in LEVELS:
            raise ConfigError(f"stage {stage}: level must be one of {', '.join(LEVELS)}, got {level!r}")
        paths = {f"raters[{i}]": p for i, p in enumerate(raters)}
        table = _labels(stage, ctx.results, paths, numeric=level != "nominal")
        labels = {"raters": ",".join(raters), "level": level}
        return [
            r
            for g, idx in _groups(stage, ctx.results, by)
            for r in _alpha(table, idx, level, ctx.seed, name, labels | g)
        ]
    if a is None or b is None:
        raise ConfigError(f"stage {stage}: needs a and b (two label columns) or raters (a list of columns)")
    if weights not in WEIGHTS:
        raise ConfigError(f"stage {stage}: weights must be linear or quadratic (or left out), got {weights!r}")
    table = _labels(stage, ctx.results, {"a": a, "b": b}, numeric=weights is not None)
    labels = {"a": a, "b": b} | ({"weights": weights} if weights else {})
    return [
        r for g, idx in _groups(stage, ctx.results, by) for r in _kappa(table, idx, weights, ctx.seed, name, labels | g)
    ]


def error(
    ctx: Context,
    *,
    prediction: str,
    reference: str,
    tolerance: float = 1.0,
    by: str | None = None,
    name: str | None = None,
) -> list[MetricRow]:
    """Error of a numeric column against a reference: `mae` and `rmse` (scikit-learn), and `within_tolerance`,
    the share of items with |prediction - reference| <= tolerance. Each with a bootstrap CI (RMSE's is the square
    root of the mean squared error's: the percentile interval carries over any increasing function)."""
    stage = "error"
    if not isinstance(tolerance, int | float) or tolerance < 0:
        raise ConfigError(f"stage {stage}: tolerance must be a number >= 0, got {tolerance!r}")
    cols = _numbers(stage, ctx.results, {"prediction": prediction, "reference": reference})
    rows: list[MetricRow] = []
    for group, idx in _groups(stage, ctx.results, by):
        labels = {"prediction": prediction, "reference": reference} | group
        pred, ref = np.asarray(_complete(cols, idx, "prediction", "reference"), dtype=float)
        err = np.abs(pred - ref)
        within = (err <= tolerance) | np.isclose(err, tolerance)
        if len(err) == 0:
            rows += _undefined(stage, [_name(name, "mae"), _name(name, "rmse")], labels, 0, "no item has both values")
        else:
            low, high = bootstrap_ci(err, seed=ctx.seed)
            rows.append(
                _row(name, "mae", _sklearn_metrics().mean_absolute_error(ref, pred), (low, high), len(err), labels)
            )
            low, high = bootstrap_ci(err**2, seed=ctx.seed)
            rmse = _sklearn_metrics().root_mean_squared_error(ref, pred)
            rows.append(_row(name, "rmse", rmse, (math.sqrt(low), math.sqrt(high)), len(err), labels))
        rows.append(
            mean_row(_name(name, "within_tolerance"), list(within), seed=ctx.seed, **labels, tolerance=str(tolerance))
        )
    return rows


def correlation(ctx: Context, *, x: str, y: str, by: str | None = None, name: str | None = None) -> list[MetricRow]:
    """`pearson_r` (scipy.stats.pearsonr; CI from its Fisher-z `confidence_interval`) and `spearman_rho`
    (scipy.stats.spearmanr; bootstrap CI), each followed by its two-sided `..._p_value` row."""
    stage = "correlation"
    cols = _numbers(stage, ctx.results, {"x": x, "y": y})
    rows: list[MetricRow] = []
    for group, idx in _groups(stage, ctx.results, by):
        labels = {"x": x, "y": y} | group
        xs, ys = np.asarray(_complete(cols, idx, "x", "y"), dtype=float)
        n = len(xs)
        reason = "fewer than 2 items" if n < 2 else "a constant column" if np.ptp(xs) == 0 or np.ptp(ys) == 0 else ""
        if reason:
            rows += _undefined(stage, [_name(name, s) for s in _CORRELATION_ROWS], labels, n, reason)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pearson = _scipy_stats().pearsonr(xs, ys)
            pearson_ci = pearson.confidence_interval(confidence_level=0.95)
            spearman = _scipy_stats().spearmanr(xs, ys)
        rho_ci = bootstrap_interval((xs, ys), _spearman, seed=ctx.seed)
        rows += [
            _row(name, "pearson_r", pearson.statistic, (pearson_ci.low, pearson_ci.high), n, labels),
            _row(name, "pearson_p_value", pearson.pvalue, (None, None), n, labels),
            _row(name, "spearman_rho", spearman.statistic, rho_ci, n, labels),
            _row(name, "spearman_p_value", spearman.pvalue, (None, None), n, labels),
        ]
    return rows


_CORRELATION_ROWS = ("pearson_r", "pearson_p_value", "spearman_rho", "spearman_p_value")


def compare(
    ctx: Context,
    *,
    reference: str,
    a: str,
    b: str,
    by: str | None = None,
    name: str | None = None,
    n_resamples: int = 10000,
) -> list[MetricRow]:
    """Which of two predictions is closer to a reference: `mae_difference` = MAE(a) - MAE(b) (negative: a is
    closer) with a paired bootstrap CI (items resampled, each keeping both its errors), and
    `mae_difference_p_value`, two-sided, from the same paired bootstrap: the bootstrap distribution of the
    difference is shifted to the null (mean 0), and the p-value is (1 + the resamples at least as far from zero as
    the observed difference) / (1 + n_resamples)."""
    stage = "compare"
    cols = _numbers(stage, ctx.results, {"reference": reference, "a": a, "b": b})
    rows: list[MetricRow] = []
    for group, idx in _groups(stage, ctx.results, by):
        ref, pa, pb = np.asarray(_complete(cols, idx, "reference", "a", "b"), dtype=float)
        labels = {"reference": reference, "a": a, "b": b} | group
        rows += _paired(
            stage, _name(name, "mae_difference"), np.abs(pa - ref), np.abs(pb - ref), ctx.seed, n_resamples, labels,
            test="bootstrap",
        )  # fmt: skip
    return rows


def paired_difference(
    ctx: Context,
    *,
    metric: str,
    label: str,
    a: str,
    b: str,
    by: str | None = None,
    name: str | None = None,
    n_resamples: int = 10000,
) -> list[MetricRow]:
    """The mean paired difference b - a of a labelled score: in each episode the score `metric{label=a,...}` is
    paired with `metric{label=b,...}` whose other labels are equal (so `accuracy{phase=before,student=alice}`
    pairs with `accuracy{phase=after,student=alice}`; one pair per student). Rows `<metric>.difference` (labels
    `{label: "b - a"}`, bootstrap CI, n pairs) and `<metric>.difference_p_value`, two-sided, from a paired
    permutation test (scipy.stats.permutation_test, permutation_type='samples': the sign of each pair's
    difference flipped at random). `by` is another label of the metric (`student`) or a record column."""
    stage = "paired_difference"
    a, b = str(a), str(b)
    pairs: list[tuple[int, dict[str, str], float, float]] = []  # episode index, other labels, value at a, at b
    seen: set[str] = set()
    for i, record in enumerate(ctx.results):
        sides: dict[tuple[str, tuple[tuple[str, str], ...]], float | None] = {}
        for key, value in (record.get("scores") or {}).items():
            found, labels = parse_metric_key(key) if "{" in key else (key, {})
            if found == metric and label in labels:
                seen.add(labels[label])
                others = tuple(sorted((k, v) for k, v in labels.items() if k != label))
                sides[(labels[label], others)] = number = _number(value)
                if number is None and value is not None:
                    episode = record.get("episode", i)
                    raise ConfigError(f"stage {stage}: episode '{episode}' has score {key} = {value!r}, not a number")
        for (side, others), value_a in sides.items():
            value_b = sides.get((b, others))
            if side == a and value_a is not None and value_b is not None:
                pairs.append((i, dict(others), value_a, value_b))
    if not seen:  # no episode recorded it (none reached that step: a model whose output never parsed, say)
        prefix = name or metric
        return _undefined(
            stage, [f"{prefix}.difference", f"{prefix}.difference_p_value"], {label: f"{b} - {a}"}, 0,
            f"no score '{metric}' with a label '{label}' in any episode{_hint(ctx.results)}",
        )  # fmt: skip
    for arg, value in (("a", a), ("b", b)):
        if ctx.results and value not in seen:
            raise ConfigError(
                f"stage {stage}: {arg}: no score '{metric}' has {label}={value} (values there: {', '.join(sorted(seen))})"
            )
    if by is not None and any(by in others for _, others, _, _ in pairs):
        keys = [others.get(by) for _, others, _, _ in pairs]
        groups = _group_rows(by, keys)
    else:
        episode_groups = [(g, set(idx)) for g, idx in _groups(stage, ctx.results, by)]
        groups = [(g, [j for j, p in enumerate(pairs) if p[0] in members]) for g, members in episode_groups]
    prefix = name or metric
    rows: list[MetricRow] = []
    for group, idx in groups:
        before = np.asarray([pairs[j][2] for j in idx], dtype=float)
        after = np.asarray([pairs[j][3] for j in idx], dtype=float)
        rows += _paired(
            stage, f"{prefix}.difference", after, before, ctx.seed, n_resamples, {label: f"{b} - {a}"} | group
        )
    return rows


# ---- the statistics, over one group's items ----


def _kappa(
    table: dict[str, list[Any]],
    idx: list[int],
    weights: str | None,
    seed: int,
    name: str | None,
    labels: dict[str, str],
) -> list[MetricRow]:
    x, y = _complete(table, idx, "a", "b")
    n = len(x)
    codes = {v: c for c, v in enumerate(sorted(set(x) | set(y), key=_order))}
    xc, yc = (np.asarray([codes[v] for v in col], dtype=int) for col in (x, y))

    kappa = functools.partial(kappa_codes, k=len(codes), weights=weights)
    value = kappa(xc, yc) if n >= 2 else math.nan
    if math.isfinite(value):
        ci = bootstrap_interval((xc, yc), kappa, seed=seed, vectorized=True)
        rows = [_row(name, "cohen_kappa", value, ci, n, labels)]
    else:
        reason = "fewer than 2 items" if n < 2 else "one label only in both columns"
        rows = _undefined("agreement", [_name(name, "cohen_kappa")], labels, n, reason)
    return rows + [mean_row(_name(name, "percent_agreement"), list(xc == yc), seed=seed, **labels)]


def kappa_codes(x: Any, y: Any, *, k: int, weights: str | None = None, axis: int = -1) -> Any:
    """Cohen's kappa of label codes 0..k-1 along `axis` (-1: no label; such pairs are left out), as scikit-learn's
    `cohen_kappa_score` computes it: 1 - sum(w * observed) / sum(w * expected), with the expected table from the
    observed one's margins. Vectorized over every other axis, so a bootstrap computes all its resamples in a few
    array operations (scikit-learn's 2 ms a call made 2,000 resamples cost 4 s per group). NaN where undefined
    (fewer than 2 pairs, or one label only)."""
    import numpy as np

    xs, ys = np.moveaxis(np.asarray(x, dtype=np.int64), axis, -1), np.moveaxis(np.asarray(y, dtype=np.int64), axis, -1)
    shape, n_items = xs.shape[:-1], xs.shape[-1]
    xs, ys = xs.reshape(-1, n_items), ys.reshape(-1, n_items)
    i, j = np.indices((k, k))
    w = (i != j).astype(float) if weights is None else np.abs(i - j) ** (1 if weights == "linear" else 2)
    out = np.empty(len(xs))
    step = max(1, 2**20 // (k * k))  # resamples per pass: their k x k tables stay near 8 MiB
    for start in range(0, len(xs), step):
        a, b = xs[start : start + step], ys[start : start + step]
        valid = (a >= 0) & (b >= 0)
        cell = (np.arange(len(a))[:, None] * k + a) * k + b
        observed = np.bincount(cell[valid], minlength=len(a) * k * k).reshape(len(a), k, k).astype(float)
        total = observed.sum(axis=(1, 2))
        with np.errstate(all="ignore"):
            expected = observed.sum(axis=2)[:, :, None] * observed.sum(axis=1)[:, None, :] / total[:, None, None]
            kappa = 1 - (w * observed).sum(axis=(1, 2)) / (w * expected).sum(axis=(1, 2))
        out[start : start + step] = np.where(total >= 2, kappa, np.nan)
    return out.reshape(shape) if shape else float(out[0])


def _alpha(
    table: dict[str, list[Any]], idx: list[int], level: str, seed: int, name: str | None, labels: dict[str, str]
) -> list[MetricRow]:
    domain = sorted({v for col in table.values() for i in idx if (v := col[i]) is not None}, key=_order)
    codes = {v: c for c, v in enumerate(domain)}
    numeric = level != "nominal"
    matrix = np.asarray(
        [
            [math.nan if col[i] is None else (float(col[i]) if numeric else codes[col[i]]) for i in idx]
            for col in table.values()
        ],
        dtype=float,
    ).reshape(len(table), len(idx))
    matrix = matrix[:, (~np.isnan(matrix)).sum(axis=0) >= 2]  # items that at least two raters rated
    value_domain = np.asarray([float(v) for v in domain] if numeric else list(range(len(domain))), dtype=float)

    def alpha(*rows: np.ndarray[Any, Any]) -> float:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                data = np.vstack(rows)
                return float(
                    _krippendorff().alpha(data, value_domain=value_domain, level_of_measurement=cast(Any, level))
                )
        except ValueError:  # one value only: undefined
            return math.nan

    n = matrix.shape[1]
    value = alpha(*matrix) if n >= 1 else math.nan
    if math.isfinite(value):
        ci = bootstrap_interval(tuple(matrix), alpha, seed=seed)
        rows = [_row(name, "krippendorff_alpha", value, ci, n, labels)]
    else:
        reason = "fewer than 2 items" if n < 2 else "one value only"
        rows = _undefined("agreement", [_name(name, "krippendorff_alpha")], labels, n, reason)
    shares = []
    for item in matrix.T:
        rated = item[~np.isnan(item)]
        m = len(rated)
        _, counts = np.unique(rated, return_counts=True)
        shares.append(float((counts * (counts - 1)).sum()) / (m * (m - 1)))
    return rows + [mean_row(_name(name, "percent_agreement"), shares, seed=seed, **labels)]


def _paired(
    stage: str,
    stat: str,
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    seed: int,
    n_resamples: int,
    labels: dict[str, str],
    *,
    test: Literal["permutation", "bootstrap"] = "permutation",
) -> list[MetricRow]:
    """Mean of x - y over pairs with its bootstrap CI, and a two-sided p-value: a paired permutation test, or the
    paired bootstrap test (the difference's bootstrap distribution shifted to mean 0)."""
    n = len(x)
    if n == 0:
        return _undefined(stage, [stat, f"{stat}_p_value"], labels, 0, "no complete pair")
    diff = x - y
    row = _row(None, stat, float(np.mean(diff)), bootstrap_ci(diff, seed=seed), n, labels)
    if n < 2:
        return [row, *_undefined(stage, [f"{stat}_p_value"], labels, n, "fewer than 2 pairs")]
    if test == "bootstrap":
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            dist = _scipy_stats().bootstrap(
                (diff,), np.mean, n_resamples=n_resamples, batch=resample_batch(n), vectorized=True,
                method="percentile", rng=np.random.default_rng(seed),
            ).bootstrap_distribution  # fmt: skip
        observed = float(np.mean(diff))
        extreme = int(np.sum(np.abs(dist - observed) >= abs(observed) - 1e-12))
        return [row, _row(None, f"{stat}_p_value", (1 + extreme) / (1 + n_resamples), (None, None), n, labels)]
    test_result = _scipy_stats().permutation_test(
        (x, y),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        batch=resample_batch(n, arrays=2),
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return [row, _row(None, f"{stat}_p_value", test_result.pvalue, (None, None), n, labels)]


def _mean_difference(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], axis: int = -1) -> Any:
    return np.mean(x - y, axis=axis)


def _spearman(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant resample: NaN, left out of the interval
        return float(_scipy_stats().spearmanr(x, y).statistic)


# ---- columns and groups ----


def _read(stage: str, results: list[dict[str, Any]], paths: Mapping[str, str]) -> dict[str, list[Any]]:
    """Each column's value per episode (None where missing); a path found in no episode is a ConfigError."""
    table: dict[str, list[Any]] = {}
    for arg, path in paths.items():
        if not isinstance(path, str) or not path:
            raise ConfigError(f"stage {stage}: {arg} must be a column path such as 'outputs.label', got {path!r}")
        values = [lookup(r, path) for r in results]
        if results and all(v is _ABSENT for v in values):
            raise ConfigError(f"stage {stage}: {arg}: column '{path}' not found in any episode{_hint(results)}")
        table[arg] = [None if v is _ABSENT or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    return table


def _numbers(stage: str, results: list[dict[str, Any]], paths: Mapping[str, str]) -> dict[str, list[Any]]:
    """Columns of numbers (numeric strings such as "3" too); anything else is a ConfigError naming the episode."""
    table = _read(stage, results, paths)
    for arg, values in table.items():
        for i, v in enumerate(values):
            if v is not None:
                values[i] = _number(v)
                if values[i] is None:
                    episode = results[i].get("episode", i)
                    raise ConfigError(
                        f"stage {stage}: {arg}: episode '{episode}' has {v!r} at '{paths[arg]}', not a number"
                    )
    return table


def _labels(
    stage: str, results: list[dict[str, Any]], paths: Mapping[str, str], *, numeric: bool
) -> dict[str, list[Any]]:
    """Label columns: numbers where they are numeric (so 1, 1.0 and "1" are one label), else strings."""
    if numeric:
        return _numbers(stage, results, paths)
    table = _read(stage, results, paths)
    return {arg: [None if v is None else _category(v) for v in values] for arg, values in table.items()}


def _groups(stage: str, results: list[dict[str, Any]], by: str | None) -> Groups:
    """All episodes (no label), then one group per value of the `by` column (episodes without one: pooled only)."""
    everything: Groups = [({}, list(range(len(results))))]
    if by is None:
        return everything
    return everything + _group_rows(by, _read(stage, results, {"by": by})["by"])[1:]


def _group_rows(by: str, keys: list[Any]) -> Groups:
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            groups.setdefault(str(key), []).append(i)
    label = by.rsplit(".", 1)[-1]
    return [({}, list(range(len(keys))))] + [({label: g}, idx) for g, idx in sorted(groups.items())]


def _complete(table: dict[str, list[Any]], idx: list[int], *args: str) -> list[list[Any]]:
    """The items of a group that have every one of `args`, one list per argument."""
    keep = [i for i in idx if all(table[arg][i] is not None for arg in args)]
    return [[table[arg][i] for i in keep] for arg in args]


def _number(value: Any) -> float | None:
    """A finite number from a number or a numeric string, else None."""
    try:
        number = float(value) if isinstance(value, bool | int | float | str) else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _category(value: Any) -> float | str:
    number = _number(value)
    return number if number is not None else str(value)


def _order(value: Any) -> tuple[int, float, str]:
    return (0, value, "") if isinstance(value, float) else (1, 0.0, str(value))


# ---- rows ----


def _name(name: str | None, stat: str) -> str:
    return f"{name}.{stat}" if name else stat


def _row(name: str | None, stat: str, value: Any, ci: tuple[Any, Any], n: int, labels: dict[str, str]) -> MetricRow:
    """A row with NaN or infinite numbers turned into None."""
    low, high = (_finite(c) for c in ci)
    return MetricRow(_name(name, stat), _finite(value), labels, ci_low=low, ci_high=high, n=n)


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _undefined(stage: str, stats: Sequence[str], labels: dict[str, str], n: int, reason: str) -> list[MetricRow]:
    """Rows with value None for statistics that are undefined here; the reason goes to the log."""
    log.warning("stage %s: %s undefined for %s: %s", stage, ", ".join(stats), labels, reason)
    return [MetricRow(stat, None, labels, n=n) for stat in stats]


def _hint(results: list[dict[str, Any]]) -> str:
    """The columns an episode has, for an error message."""
    first = results[0]
    names = [f"{part}.{key}" for part in ("inputs", "outputs", "scores") for key in (first.get(part) or {})]
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f" (an episode has: {shown})" if names else ""
