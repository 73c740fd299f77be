"""The generic statistics stages, pinned on hand-computed cases (textbook formulas written out here, not the
library calls the code makes), and the metric-key helpers and the bounded-memory bootstrap they build on."""

from __future__ import annotations

import logging
import math
import tracemalloc
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schola.errors import ConfigError
from schola.metrics import (
    MetricRow,
    bootstrap_ci,
    mean_row,
    metric_key,
    parse_metric_key,
)
from schola.stats import (
    _ABSENT,
    agreement,
    compare,
    correlation,
    error,
    lookup,
    paired_difference,
)


@pytest.fixture
def few_resamples(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kappa's bootstrap calls scikit-learn once per resample (~0.5 ms each): 300 keep these tests quick."""
    monkeypatch.setattr("schola.metrics.N_RESAMPLES", 300)


def episode(i: int, **parts: dict[str, Any]) -> dict[str, Any]:
    return {"episode": f"e{i}", "round": 0, "inputs": {}, "outputs": {}, "scores": {}} | parts


def context(records: list[dict[str, Any]], seed: int = 0) -> Any:
    return SimpleNamespace(results=records, seed=seed)


def by_name(rows: list[MetricRow], **labels: str) -> dict[str, MetricRow]:
    """The rows whose labels include `labels`, by name (for calls without `by`, or naming the group)."""
    return {r.name: r for r in rows if all(r.labels.get(k) == v for k, v in labels.items())}


def assert_sound(rows: list[MetricRow]) -> None:
    """Every defined CI contains its value; every p-value lies in [0, 1]."""
    for r in rows:
        if r.ci_low is not None and r.value is not None:
            assert r.ci_high is not None and r.ci_low - 1e-12 <= r.value <= r.ci_high + 1e-12, r
        if r.name.endswith("p_value") and r.value is not None:
            assert 0.0 <= r.value <= 1.0, r


def kappa_by_formula(a: list[int], b: list[int], weight: Any) -> float:
    """Cohen's (weighted) kappa from its definition: 1 - sum(w * observed) / sum(w * expected)."""
    cats = sorted(set(a) | set(b))
    n = len(a)
    observed = expected = 0.0
    for i, ci in enumerate(cats):
        for j, cj in enumerate(cats):
            o = sum(1 for x, y in zip(a, b) if x == ci and y == cj) / n
            e = (a.count(ci) / n) * (b.count(cj) / n)
            observed += weight(i, j) * o
            expected += weight(i, j) * e
    return 1 - observed / expected


# ---- lookup and metric keys ----


def test_lookup_follows_dotted_paths_into_dicts_lists_and_score_keys_with_dots() -> None:
    record = episode(0, inputs={"meta": {"grades": [3, 4]}}, scores={"acc{model=gpt-4.1}": 0.5, "correct": None})
    assert lookup(record, "inputs.meta.grades.1") == 4
    assert lookup(record, "inputs.meta.grades.-1") == 4
    assert lookup(record, "scores.acc{model=gpt-4.1}") == 0.5
    assert lookup(record, "round") == 0
    assert lookup(record, "scores.correct") is None
    assert lookup(record, "inputs.meta.grades.2") is _ABSENT
    assert lookup(record, "inputs.meta.grades.x") is _ABSENT
    assert lookup(record, "outputs.nothing") is _ABSENT


def test_metric_key_sorts_labels_and_parses_back() -> None:
    key = metric_key("accuracy", {"student": "alice", "phase": "before"})
    assert key == "accuracy{phase=before,student=alice}"
    assert parse_metric_key(key) == ("accuracy", {"phase": "before", "student": "alice"})
    assert metric_key("accuracy", {}) == "accuracy" and parse_metric_key("accuracy") == ("accuracy", {})
    assert metric_key("m", {"who": "a, b={c}"}) == "m{who=a%2C b%3D%7Bc%7D}"
    with pytest.raises(ValueError):
        parse_metric_key("m{phase}")


@given(
    name=st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
    labels=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4),
)
def test_any_labels_round_trip_through_a_metric_key(name: str, labels: dict[str, str]) -> None:
    assert parse_metric_key(metric_key(name, labels)) == (name, labels)


# ---- bounded-memory bootstrap ----


def test_mean_of_zero_one_values_gets_the_exact_binomial_interval() -> None:
    # the mean of 10 resampled values of five 1s and five 0s is Binomial(10, 0.5)/10; its 2.5% and 97.5%
    # quantiles, from the binomial CDF: P(X <= 1) = 11/1024 < 0.025 <= P(X <= 2) = 56/1024, and by symmetry 8
    cdf = [sum(math.comb(10, k) for k in range(m + 1)) / 1024 for m in range(11)]
    low = next(m for m in range(11) if cdf[m] >= 0.025) / 10
    high = next(m for m in range(11) if cdf[m] >= 0.975) / 10
    assert (low, high) == (0.2, 0.8)
    assert bootstrap_ci([1.0] * 5 + [0.0] * 5) == pytest.approx((low, high))


@pytest.mark.parametrize("kind", ["continuous", "zero_one"])
def test_ci_of_200000_values_stays_under_50_mb(kind: str) -> None:
    rng = np.random.default_rng(0)
    values = (rng.normal(size=200_000) if kind == "continuous" else rng.integers(0, 2, 200_000)).tolist()
    tracemalloc.start()
    try:
        row = mean_row("x", values)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20
    assert row.n == 200_000 and row.ci_low is not None and row.ci_high is not None
    assert row.ci_low < row.value < row.ci_high and row.ci_high - row.ci_low < 0.02  # se ~ 1/sqrt(n)


# ---- agreement ----


@pytest.mark.usefixtures("few_resamples")
def test_cohen_kappa_and_percent_agreement_match_the_hand_computed_values() -> None:
    # a says yes 6/10, b says yes 5/10; they agree on 7 items: p_o = 0.7, p_e = 0.6*0.5 + 0.4*0.5 = 0.5,
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    a = ["yes"] * 6 + ["no"] * 4
    b = ["yes"] * 4 + ["no", "no", "yes", "no", "no", "no"]
    rows = agreement(
        context([episode(i, outputs={"h": x, "m": y}) for i, (x, y) in enumerate(zip(a, b))]),
        a="outputs.h",
        b="outputs.m",
    )
    named = by_name(rows)
    assert named["cohen_kappa"].value == pytest.approx(0.4)
    assert named["cohen_kappa"].labels == {"a": "outputs.h", "b": "outputs.m"} and named["cohen_kappa"].n == 10
    assert named["percent_agreement"].value == pytest.approx(0.7)
    assert_sound(rows)


@pytest.mark.usefixtures("few_resamples")
def test_weighted_kappa_follows_the_textbook_formula_and_one_label_is_the_same_in_any_type() -> None:
    a = [1, 1, 2, 2, 3, 3]
    b = [1, 2, 2, 3, 3, 2]
    # by hand: observed linear disagreement 3/6, expected 5/6 -> 1 - 3/5 = 0.4; quadratic 3/6 vs 7/6 -> 4/7;
    # unweighted p_o = 1/2, p_e = 1/3 -> 1/4
    expected = {None: 0.25, "linear": 0.4, "quadratic": 4 / 7}
    assert kappa_by_formula(a, b, lambda i, j: abs(i - j)) == pytest.approx(expected["linear"])
    assert kappa_by_formula(a, b, lambda i, j: (i - j) ** 2) == pytest.approx(expected["quadratic"])
    assert kappa_by_formula(a, b, lambda i, j: float(i != j)) == pytest.approx(expected[None])
    ctx = context([episode(i, outputs={"a": x, "b": str(y)}) for i, (x, y) in enumerate(zip(a, b))])  # "2" is 2
    for weights, value in expected.items():
        row = agreement(ctx, a="outputs.a", b="outputs.b", weights=weights)[0]
        assert row.value == pytest.approx(value)
        assert row.labels.get("weights") == weights
        assert_sound([row])


def test_krippendorff_alpha_matches_the_hand_computation_and_krippendorffs_published_example() -> None:
    # two coders, four units: (1,1) (1,2) (2,2) (2,2). Coincidences o_12 = o_21 = 1, n_1 = 3, n_2 = 5, n = 8:
    # alpha = 1 - (n - 1) * (o_12 + o_21) / (n_1 n_2 + n_2 n_1) = 1 - 7 * 2 / 30 = 8/15
    ctx = context([episode(i, outputs={"r": [x, y]}) for i, (x, y) in enumerate([(1, 1), (1, 2), (2, 2), (2, 2)])])
    named = by_name(agreement(ctx, raters=["outputs.r.0", "outputs.r.1"]))
    assert named["krippendorff_alpha"].value == pytest.approx(8 / 15)
    assert named["percent_agreement"].value == pytest.approx(3 / 4)
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units, missing values;
    # alpha nominal .743, ordinal .815, interval .849, ratio .797; unit 12 has one value only and does not count
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    ctx = context([episode(u, outputs={f"c{c}": data[c][u] for c in range(4)}) for u in range(12)])
    raters = [f"outputs.c{c}" for c in range(4)]
    for level, published in {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}.items():
        rows = agreement(ctx, raters=raters, level=level)
        assert rows[0].name == "krippendorff_alpha" and rows[0].value == pytest.approx(published, abs=5e-4)
        assert rows[0].n == 11 and rows[0].labels == {"raters": ",".join(raters), "level": level}
        assert_sound(rows)


@pytest.mark.usefixtures("few_resamples")
def test_agreement_by_a_column_gives_one_row_set_per_group_and_the_pooled_one() -> None:
    # group x: a == b on 3 of 4; group y: 1 of 4; one episode has no category: pooled only
    pairs = {"x": [(1, 1), (0, 0), (1, 1), (1, 0)], "y": [(1, 0), (0, 1), (1, 1), (0, 1)]}
    records = [
        episode(i, inputs={"cat": g}, outputs={"a": p, "b": q}) for g in pairs for i, (p, q) in enumerate(pairs[g])
    ]
    records.append(episode(9, outputs={"a": 1, "b": 1}))
    rows = agreement(context(records), a="outputs.a", b="outputs.b", by="inputs.cat")
    share = {r.labels.get("cat"): r for r in rows if r.name == "percent_agreement"}
    assert share[None].value == pytest.approx(5 / 9) and share[None].n == 9
    assert share["x"].value == pytest.approx(3 / 4) and share["y"].value == pytest.approx(1 / 4)
    assert [r.name for r in rows] == ["cohen_kappa", "percent_agreement"] * 3


def test_agreement_with_one_label_only_is_an_undefined_row_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    ctx = context([episode(i, outputs={"a": "yes", "b": "yes"}) for i in range(5)])
    with caplog.at_level(logging.WARNING):
        rows = by_name(agreement(ctx, a="outputs.a", b="outputs.b"))
    assert rows["cohen_kappa"].value is None and rows["cohen_kappa"].n == 5
    assert rows["percent_agreement"].value == 1.0
    assert "one label only" in caplog.text
    alpha = agreement(context([episode(0, outputs={"a": 1, "b": 1})]), raters=["outputs.a", "outputs.b"])[0]
    assert alpha.value is None and alpha.n == 1


@pytest.mark.usefixtures("few_resamples")
def test_missing_labels_are_left_out_and_counted() -> None:
    a = ["yes"] * 6 + ["no"] * 4 + [None, "no"]
    b = ["yes"] * 4 + ["no", "no", "yes", "no", "no", "no"] + ["yes", None]
    records = [episode(i, outputs={"h": x} | ({} if y is None else {"m": y})) for i, (x, y) in enumerate(zip(a, b))]
    row = agreement(context(records), a="outputs.h", b="outputs.m")[0]
    assert row.n == 10 and row.value == pytest.approx(0.4)  # the same ten items as the hand-computed case


# ---- error, correlation, compare ----


def test_mae_rmse_and_share_within_tolerance_match_hand_values_and_missing_items_are_dropped() -> None:
    prediction = [3, 5, 2, 8, None, 7]
    reference = [2, 5, 4, 4, 1, None]  # errors 1, 0, 2, 4
    ctx = context(
        [episode(i, outputs={"p": p}, inputs={"r": r}) for i, (p, r) in enumerate(zip(prediction, reference))]
    )
    rows = error(ctx, prediction="outputs.p", reference="inputs.r", tolerance=1)
    named = by_name(rows)
    assert named["mae"].value == pytest.approx((1 + 0 + 2 + 4) / 4)
    assert named["rmse"].value == pytest.approx(math.sqrt((1 + 0 + 4 + 16) / 4))
    assert (
        named["within_tolerance"].value == pytest.approx(2 / 4) and named["within_tolerance"].labels["tolerance"] == "1"
    )
    assert {r.n for r in rows} == {4}
    assert_sound(rows)


def test_pearson_and_spearman_match_the_textbook_formulas() -> None:
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 50]
    dx, dy = [v - 3 for v in x], [v - 12 for v in y]  # means 3 and 12
    r = sum(p * q for p, q in zip(dx, dy)) / math.sqrt(sum(p * p for p in dx) * sum(q * q for q in dy))
    rho = 1 - 6 * sum((p - q) ** 2 for p, q in zip([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])) / (5 * (25 - 1))  # ranks
    t = r * math.sqrt(3 / (1 - r * r))
    from scipy.stats import t as student_t

    p_value = 2 * student_t.sf(abs(t), 3)
    fisher = (math.tanh(math.atanh(r) - 1.959964 / math.sqrt(2)), math.tanh(math.atanh(r) + 1.959964 / math.sqrt(2)))
    rows = correlation(
        context([episode(i, outputs={"x": p, "y": q}) for i, (p, q) in enumerate(zip(x, y))]),
        x="outputs.x",
        y="outputs.y",
    )
    named = by_name(rows)
    assert named["pearson_r"].value == pytest.approx(r) and r == pytest.approx(0.72843, abs=1e-5)
    assert (named["pearson_r"].ci_low, named["pearson_r"].ci_high) == pytest.approx(fisher, abs=1e-5)
    assert named["pearson_p_value"].value == pytest.approx(p_value)
    assert named["spearman_rho"].value == pytest.approx(rho) and rho == pytest.approx(0.8)
    assert named["spearman_p_value"].value is not None and all(row.n == 5 for row in rows)
    assert_sound(rows)


def test_correlation_of_a_constant_column_or_one_item_is_undefined() -> None:
    constant = context([episode(i, outputs={"x": i, "y": 3}) for i in range(5)])
    assert all(row.value is None for row in correlation(constant, x="outputs.x", y="outputs.y"))
    single = context([episode(0, outputs={"x": 1, "y": 3}), episode(1, outputs={"x": 2})])
    assert {(row.value, row.n) for row in correlation(single, x="outputs.x", y="outputs.y")} == {(None, 1)}


def test_compare_gives_the_paired_bootstrap_p_value_on_small_cases() -> None:
    # a misses by 1 on all four items, b is exact: every resampled difference is +1, so shifted to the null none
    # reaches 1: p = 1 / (1 + 10,000)
    ctx = context([episode(i, inputs={"ref": 0}, outputs={"a": 1, "b": 0}) for i in range(4)])
    named = by_name(compare(ctx, reference="inputs.ref", a="outputs.a", b="outputs.b", name="llm_vs_peer"))
    assert named["llm_vs_peer.mae_difference"].value == pytest.approx(1.0)
    assert named["llm_vs_peer.mae_difference_p_value"].value == pytest.approx(1 / 10_001)
    # differences +2 and 0: a resample's mean is 0, 1 or 2 with chances 1/4, 1/2, 1/4; shifted by the observed 1,
    # |m - 1| >= 1 for 0 and 2: about half the resamples, p about 0.5
    two = context(
        [
            episode(0, inputs={"ref": 0}, outputs={"a": 2, "b": 0}),
            episode(1, inputs={"ref": 0}, outputs={"a": 0, "b": 0}),
        ]
    )
    p = by_name(compare(two, reference="inputs.ref", a="outputs.a", b="outputs.b"))["mae_difference_p_value"].value
    assert 0.45 < p < 0.55
    assert named["llm_vs_peer.mae_difference"].labels == {"reference": "inputs.ref", "a": "outputs.a", "b": "outputs.b"}


def test_compare_p_value_is_small_for_a_clear_difference_and_large_for_none() -> None:
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 10, 60)
    close, far = ref + rng.choice([-1, 0, 1], 60), ref + rng.choice([-4, 4], 60)
    mirror = ref - (close - ref)  # the same errors, on the other side
    records = [
        episode(i, inputs={"ref": int(r)}, outputs={"close": int(c), "far": int(f), "mirror": int(m)})
        for i, (r, c, f, m) in enumerate(zip(ref, close, far, mirror))
    ]
    clear = by_name(compare(context(records), reference="inputs.ref", a="outputs.close", b="outputs.far"))
    assert clear["mae_difference"].value < 0 and clear["mae_difference"].ci_high < 0
    assert clear["mae_difference_p_value"].value < 0.001
    same = by_name(compare(context(records), reference="inputs.ref", a="outputs.close", b="outputs.mirror"))
    assert same["mae_difference"].value == 0 and same["mae_difference_p_value"].value == pytest.approx(1.0)
    assert_sound(list(clear.values()) + list(same.values()))


# ---- paired_difference ----


def scores(student: str, before: float | None, after: float | None) -> dict[str, Any]:
    out = {}
    for phase, value in (("before", before), ("after", after)):
        if value is not None:
            out[metric_key("acc", {"phase": phase, "student": student})] = value
    return out


def test_paired_difference_pairs_labelled_scores_and_gives_the_exact_p_value() -> None:
    # three pairs, differences 0.4, 0.2, 0.3 (mean 0.3): only the all-plus of 2^3 sign flips reaches 0.3 and
    # only all-minus -0.3: p = 2/8. Carol's second episode has no "after": not a pair.
    records = [
        episode(0, inputs={"topic": "t1"}, scores=scores("alice", 0.2, 0.6) | scores("bob", 0.5, 0.7)),
        episode(1, inputs={"topic": "t2"}, scores=scores("carol", 0.1, 0.4)),
        episode(2, inputs={"topic": "t2"}, scores=scores("carol", 0.9, None)),
    ]
    rows = paired_difference(context(records), metric="acc", label="phase", a="before", b="after")
    named = by_name(rows)
    assert named["acc.difference"].value == pytest.approx(0.3) and named["acc.difference"].n == 3
    assert named["acc.difference"].labels == {"phase": "after - before"}
    assert named["acc.difference_p_value"].value == pytest.approx(2 / 8)
    assert_sound(rows)
    per_student = paired_difference(context(records), metric="acc", label="phase", a="before", b="after", by="student")
    assert by_name(per_student, student="alice")["acc.difference"].value == pytest.approx(0.4)
    per_topic = paired_difference(
        context(records), metric="acc", label="phase", a="before", b="after", by="inputs.topic"
    )
    assert (
        by_name(per_topic, topic="t1")["acc.difference"].n == 2
        and by_name(per_topic, topic="t2")["acc.difference"].n == 1
    )


def test_paired_difference_p_value_is_small_for_a_large_clear_gain() -> None:
    rng = np.random.default_rng(2)
    before = rng.uniform(0.1, 0.4, 40)
    records = [
        episode(i, scores=scores("s", float(v), float(v) + 0.3 + rng.uniform(0, 0.1))) for i, v in enumerate(before)
    ]
    named = by_name(paired_difference(context(records), metric="acc", label="phase", a="before", b="after"))
    assert named["acc.difference"].ci_low > 0.29 and named["acc.difference_p_value"].value < 0.001


# ---- bad configuration ----


def test_a_column_found_in_no_episode_is_a_config_error_naming_stage_argument_and_path() -> None:
    ctx = context([episode(0, outputs={"h1": 1, "h2": 0})])
    with pytest.raises(ConfigError, match=r"stage agreement: b: column 'outputs\.h3' not found in any episode"):
        agreement(ctx, a="outputs.h1", b="outputs.h3")
    with pytest.raises(ConfigError, match=r"raters\[1\]: column 'outputs\.h9'"):
        agreement(ctx, raters=["outputs.h1", "outputs.h9"])
    with pytest.raises(ConfigError, match=r"stage error: by: column 'inputs\.course'"):
        error(ctx, prediction="outputs.h1", reference="outputs.h2", by="inputs.course")
    # no episode recorded the metric at all (none reached the step): undefined rows, not an error
    undefined = paired_difference(ctx, metric="acc", label="phase", a="before", b="after")
    assert [(r.name, r.value, r.n) for r in undefined] == [
        ("acc.difference", None, 0),
        ("acc.difference_p_value", None, 0),
    ]
    with pytest.raises(ConfigError, match=r"b: no score 'acc' has phase=aftr"):
        paired_difference(
            context([episode(0, scores=scores("s", 0.1, 0.2))]), metric="acc", label="phase", a="before", b="aftr"
        )


def test_bad_arguments_and_non_numbers_are_config_errors() -> None:
    ctx = context([episode(0, outputs={"p": "three", "r": 3})])
    with pytest.raises(
        ConfigError, match=r"stage error: prediction: episode 'e0' has 'three' at 'outputs\.p', not a number"
    ):
        error(ctx, prediction="outputs.p", reference="outputs.r")
    with pytest.raises(ConfigError, match="weights must be linear or quadratic"):
        agreement(ctx, a="outputs.p", b="outputs.r", weights="cubic")
    with pytest.raises(ConfigError, match="level must be one of"):
        agreement(ctx, raters=["outputs.p", "outputs.r"], level="fuzzy")
    with pytest.raises(ConfigError, match="needs a and b"):
        agreement(ctx, a="outputs.p")


def test_vectorized_kappa_is_scikit_learns_on_every_resample_and_leaves_out_missing_labels() -> None:
    """The bootstrap of a kappa (IRR, SIGHT's human-model kappa) computes every resample in one call: the same
    numbers as cohen_kappa_score, weighted or not, with pairs missing a label left out."""
    import warnings

    from sklearn.metrics import cohen_kappa_score

    from schola.stats import kappa_codes

    rng = np.random.default_rng(3)
    for k in (2, 3, 5):
        x, y = rng.integers(-1, k, (40, 12)), rng.integers(-1, k, (40, 12))
        for weights in (None, "linear", "quadratic"):
            got = kappa_codes(x, y, k=k, weights=weights)
            assert got.shape == (40,)
            for row in range(40):
                keep = (x[row] >= 0) & (y[row] >= 0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    want = cohen_kappa_score(x[row][keep], y[row][keep], labels=list(range(k)), weights=weights)
                assert got[row] == pytest.approx(want, nan_ok=True) if keep.sum() >= 2 else np.isnan(got[row])
    assert math.isnan(kappa_codes([1, 1, 1], [1, 1, 1], k=2))  # one label only: undefined
