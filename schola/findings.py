"""Findings: a paper's claim declared in a scenario, measured at the end of a run with a 95% interval and a
verdict, and, for `run.until=decided`, the anytime-valid test that stops a run as soon as every claim is decided.

    findings:
      - name: lbt_beats_majority
        claim: Selecting rationales by their LbT score beats self-consistency (majority vote).
        source: Ning et al. 2024, Table 2
        effect: accuracy{rule=SUM} - accuracy{rule=MAJ}     # a contrast of two rows, or one row (a correlation)
        direction: positive                                 # the paper's sign of the effect
        paper_effect: 0.05                                  # the paper's size, where it gives one

How an effect is measured (the `method` of its result says which applied):
- both rows are episode scores (results.jsonl `scores`, or a stage row that keeps its per-episode values):
  the mean paired difference over the episodes that have both, with a 95% percentile bootstrap over episodes
  (`schola.metrics.bootstrap_ci`); rows with no episode in common: a two-sample bootstrap;
- one row that is itself an effect (a correlation, a stage's paired difference): its value and its own interval;
- two rows with no per-episode values: the difference of their values, the interval from the two rows'
  intervals taken as independent (normal approximation; conservative for a paired design).

Verdict: supported (the interval excludes 0 in the paper's direction), contradicted (excludes 0 the other way),
inconclusive (it holds 0; then `n_needed`: the n that decides an effect of the observed size at 80% power, by the
normal approximation n = ((z_.975 + z_.8)·sd / effect)², sd the per-episode SD of the difference), or
unmeasured (the run has no such row, and `reason` says why).

`run.until=decided` tests each finding sequentially with Waudby-Smith & Ramdas' hedged betting confidence
sequence for a bounded mean ("Estimating means of bounded random variables by betting", JRSS-B 2024, Theorem 3
with the predictable plug-in bets of their eq. 26): valid at every episode at once, so looking after every batch
keeps its 5% error rate. The `confseq` package (Howard et al.) was measured first: an alpha-stage C++ source
build with pandas, matplotlib and pytest as install requirements and no betting CS, so the CS lives here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schola.errors import ConfigError
from schola.metrics import MetricRow, bootstrap_ci, parse_metric_key

if TYPE_CHECKING:  # numpy is imported where a number is computed: `schola check` must not pay for it
    import numpy as np

ALPHA = 0.05
Z_975, Z_80 = 1.959963984540054, 0.8416212335729143
Verdict = Literal["supported", "contradicted", "inconclusive", "unmeasured"]
# Rows the generic stages (schola/stats.py) return, by stage: names known before a run, for `check`.
STAGE_ROWS = {
    "agreement": ("cohen_kappa", "krippendorff_alpha", "percent_agreement"),
    "error": ("mae", "rmse", "within_tolerance"),
    "correlation": ("pearson_r", "pearson_p_value", "spearman_rho", "spearman_p_value"),
    "compare": ("mae_difference", "mae_difference_p_value"),
    "paired_difference": ("difference", "difference_p_value"),
}


class FindingConfig(BaseModel):
    """One claim of a paper, as a scenario declares it (`scenario.findings[i]`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    claim: str = Field(min_length=1, max_length=1000, description="the paper's sentence")
    source: str = Field("", max_length=300, description="where the paper says it (section, table)")
    effect: str = Field(description="`row - row` (a contrast, paired by episode) or one row that is an effect")
    direction: Literal["positive", "negative"] = Field("positive", description="the sign the paper reports")
    paper_effect: float | None = Field(None, description="the paper's effect size, in the effect's units")
    bounds: tuple[float, float] = Field((0.0, 1.0), description="the range of one episode's value (until=decided)")

    @field_validator("effect")
    @classmethod
    def _parses(cls, v: str) -> str:
        terms(v)
        return v

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError("expected [low, high] with low < high")
        return v


Term = tuple[str, dict[str, str]]


def terms(effect: str) -> list[Term]:
    """`accuracy{rule=SUM} - accuracy{rule=MAJ}` -> two (name, labels); one row -> one. A ' - ' inside braces
    belongs to a label value."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(effect):
        depth += {"{": 1, "}": -1}.get(c, 0)
        if depth == 0 and effect.startswith(" - ", i):
            parts.append(effect[start:i])
            start = i + 3
    parts.append(effect[start:])
    if len(parts) > 2 or any(not p.strip() for p in parts):
        raise ValueError(f"expected 'row' or 'row - row' (a row is name{{label=value,...}}), got {effect!r}")
    try:
        found = [parse_metric_key(p.strip()) for p in parts]
    except ValueError as e:
        raise ValueError(str(e)) from None
    for name, _ in found:
        if not name or any(c in name for c in " {}=,"):
            raise ValueError(f"{name!r} is not a metric name (in {effect!r})")
    return found


# ---- check: the rows a finding names must be rows the scenario makes ----


def known_rows(score_names: Iterable[str], stages: Sequence[Mapping[str, Any]]) -> tuple[set[str], bool]:
    """Metric names a run of this scenario makes, known before it runs: the episode scores, and what the generic
    stages return (`name.` prefixed where a stage names its rows); and whether a plugin stage may make more."""
    names = set(score_names)
    open_ended = False
    for stage in stages:
        fn = str(stage.get("fn", ""))
        if fn not in STAGE_ROWS:
            open_ended = True
            continue
        prefix = stage.get("name") or (stage.get("metric") if fn == "paired_difference" else None)
        names |= {f"{prefix}.{s}" if prefix else s for s in STAGE_ROWS[fn]}
    return names, open_ended


def check(
    findings: Sequence[FindingConfig],
    *,
    score_names: Iterable[str],
    stages: Sequence[Mapping[str, Any]],
    until: str,
    file: str,
) -> None:
    """Every row a finding names is a metric this scenario makes (a plugin stage's rows are only known when it
    runs: a name none of the rest makes is then taken on trust and checked at the end of the run); with
    run.until=decided every finding reads episode scores, which exist after each batch."""
    scores = set(score_names)
    names, open_ended = known_rows(scores, stages)
    seen: set[str] = set()
    for i, f in enumerate(findings):
        key = f"scenario.findings[{i}]"
        if f.name in seen:
            raise ConfigError(
                f"finding '{f.name}' is declared twice; names must be unique", key=f"{key}.name", file=file
            )
        seen.add(f.name)
        for name, _ in terms(f.effect):
            if name not in names and not open_ended:
                from schola.schema import difflib_near

                near = difflib_near(name, names)
                known = ", ".join(sorted(names)) or "none"
                hint = f"did you mean {near}? " if near else ""
                raise ConfigError(
                    f"no metric '{name}' in this scenario; {hint}its metrics: {known}", key=f"{key}.effect", file=file
                )
            if until == "decided" and name not in scores:
                raise ConfigError(
                    f"run.until=decided tests findings after each batch of episodes, so '{name}' must be an episode "
                    f"score (a score step's output); episode scores here: {', '.join(sorted(scores)) or 'none'}",
                    key=f"{key}.effect",
                    file=file,
                )
    if until == "decided" and not findings:
        raise ConfigError("run.until=decided needs the scenario to declare findings", key="run.until", file=file)


def check_plan(plan: Any) -> None:
    """`check` for a plan (schola.plan.Plan): its findings against its graphs' recorded scores and its stages."""
    graphs = [g for g in [plan.graph, *plan.graphs.values()] if g is not None]
    scores = {n.output for g in graphs for n in g.walk() if getattr(n, "kind", "") == "score" and n.record}
    sc = plan.config.scenario
    stages = [{"fn": st.fn, **(st.model_extra or {})} for st in sc.stages]
    check(sc.findings, score_names=scores, stages=stages, until=plan.config.run.until, file=plan.files.scenario)


# ---- measure: a finding over a finished run ----


@dataclass
class Measured:
    """One line of the findings table (metrics.json `findings`)."""

    name: str
    claim: str
    source: str
    effect: str
    direction: str
    paper_effect: float | None
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    verdict: Verdict = "unmeasured"
    method: str = ""
    sd: float | None = None
    n_needed: int | None = None
    n_needed_paper: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def episode_values(results: Sequence[Mapping[str, Any]], term: Term) -> dict[str, float]:
    """Each finished episode's value of a row (the mean where several of its scores match: other labels, such as
    a student per score); `round` matches the episode's round."""
    import numpy as np

    name, want = term
    values: dict[str, float] = {}
    for record in results:
        if "error" in record:
            continue
        if "round" in want and str(record.get("round", 0)) != want["round"]:
            continue
        found = []
        for key, value in (record.get("scores") or {}).items():
            metric, labels = parse_metric_key(key)
            number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if number and metric == name and all(str(labels.get(k)) == v for k, v in want.items() if k != "round"):
                found.append(float(value))
        if found:
            values[str(record["episode"])] = float(np.mean(found))
    return values


def find_row(rows: Sequence[MetricRow], term: Term) -> MetricRow | str:
    """The row a term names: its name and labels, the fewest other labels (the pooled row before its groups);
    else why there is none."""
    name, want = term
    matches = [r for r in rows if r.name == name and all(str(r.labels.get(k)) == v for k, v in want.items())]
    if not matches:
        return f"no row {name}{_labels(want)} in this run"
    fewest = min(len(r.labels) for r in matches)
    best = [r for r in matches if len(r.labels) == fewest]
    if len(best) > 1:
        shown = "; ".join(_labels(r.labels) for r in best[:4])
        return f"{name}{_labels(want)} names {len(best)} rows ({shown}): give more labels"
    return best[0]


def measure(
    finding: FindingConfig,
    results: Sequence[Mapping[str, Any]],
    rows: Sequence[MetricRow],
    *,
    seed: int = 0,
    sequential: bool = False,
) -> Measured:
    """The effect a run measured for one finding, with its interval, n and verdict (see the module's docstring).
    `sequential`: the interval is the confidence sequence's (a run that stopped when it was decided)."""
    sides = [(_episode_values(results, rows, t), find_row(rows, t)) for t in terms(finding.effect)]
    return _measured(finding, sides, seed=seed, sequential=sequential)


Side = tuple[dict[str, float], MetricRow | str]  # a term's per-episode values, and its row (or why there is none)


def _measured(finding: FindingConfig, sides: Sequence[Side], *, seed: int = 0, sequential: bool = False) -> Measured:
    """The effect from each term's per-episode values where every term has them, else from the rows; judged."""
    out = _blank(finding)
    per_episode = [values for values, _ in sides]
    if all(per_episode):
        _from_episodes(out, finding, per_episode, seed=seed, sequential=sequential)
    else:
        _from_rows(out, [row for _, row in sides])
    return _judge(out, finding)


def _blank(finding: FindingConfig) -> Measured:
    return Measured(
        finding.name, finding.claim, finding.source, finding.effect, finding.direction, finding.paper_effect
    )


def _judge(out: Measured, finding: FindingConfig) -> Measured:
    """The verdict the interval gives in the paper's direction; when inconclusive, the n that would decide."""
    if out.value is None or out.ci_low is None or out.ci_high is None:
        out.verdict = "unmeasured"
        out.reason = out.reason or "the effect or its interval is undefined here (too few episodes?)"
        return out
    sign = 1 if finding.direction == "positive" else -1
    if out.ci_low > 0 or out.ci_high < 0:
        out.verdict = "supported" if (out.ci_low > 0) == (sign > 0) else "contradicted"
    else:
        out.verdict = "inconclusive"
        out.n_needed = n_for_power(out.sd, out.value)
        out.n_needed_paper = n_for_power(out.sd, finding.paper_effect)
    return out


def measure_all(
    findings: Sequence[FindingConfig],
    results: Sequence[Mapping[str, Any]],
    rows: Sequence[MetricRow],
    *,
    seed: int = 0,
    sequential: bool = False,
) -> list[dict[str, Any]]:
    return [measure(f, results, rows, seed=seed, sequential=sequential).to_dict() for f in findings]


def n_for_power(sd: float | None, effect: float | None, power_z: float = Z_80) -> int | None:
    """Episodes that decide `effect` at 80% power with a two-sided 5% test: ((z_.975 + z_.8)·sd / effect)²."""
    if not sd or effect is None or effect == 0 or not math.isfinite(sd):  # no spread seen: no estimate
        return None
    return max(2, math.ceil(((Z_975 + power_z) * sd / abs(effect)) ** 2))


def _episode_values(results: Sequence[Mapping[str, Any]], rows: Sequence[MetricRow], term: Term) -> dict[str, float]:
    """A term's per-episode values: episode scores, else those a stage's row kept (`MetricRow.items`)."""
    values = episode_values(results, term)
    if values:
        return values
    row = find_row(rows, term)
    return dict(row.items) if isinstance(row, MetricRow) and row.items else {}


def _from_episodes(
    out: Measured, finding: FindingConfig, values: list[dict[str, float]], *, seed: int, sequential: bool
) -> None:
    import numpy as np

    if len(values) == 1:
        ids = list(values[0])
        diff = np.asarray([values[0][e] for e in ids], dtype=float)
        out.method = "mean over episodes, 95% percentile bootstrap over episodes"
    else:
        ids = [e for e in values[0] if e in values[1]]
        if len(ids) < 2:
            _two_samples(out, values, seed=seed)
            return
        diff = np.asarray([values[0][e] - values[1][e] for e in ids], dtype=float)
        out.method = "mean paired difference by episode, 95% paired percentile bootstrap over episodes"
    out.n = len(diff)
    out.value = float(np.mean(diff))
    out.sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else None
    if sequential:
        low, high = sequence_interval(diff, finding.bounds, len(values) == 2)
        out.method = "mean over episodes in run order, Waudby-Smith & Ramdas hedged betting confidence sequence (95%)"
    else:
        low, high = bootstrap_ci(diff.tolist(), seed=seed) if len(diff) > 1 else (math.nan, math.nan)
    out.ci_low, out.ci_high = _finite(low), _finite(high)


def _two_samples(out: Measured, values: list[dict[str, float]], *, seed: int) -> None:
    """Rows measured on different episodes (rounds, arms): the difference of means, two-sample bootstrap."""
    import numpy as np
    from scipy import stats  # type: ignore[import-untyped, unused-ignore]

    a, b = (np.asarray(list(v.values()), dtype=float) for v in values)
    out.value, out.n = float(a.mean() - b.mean()), min(len(a), len(b))
    out.method = "difference of means over different episodes, 95% two-sample percentile bootstrap"
    if len(a) < 2 or len(b) < 2:
        out.reason = "fewer than 2 episodes on a side"
        return
    out.sd = math.sqrt(float(a.var(ddof=1) + b.var(ddof=1)))  # per pair of episodes, for n_needed (per side)
    res = stats.bootstrap(
        (a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis), paired=False, vectorized=True,
        n_resamples=2000, method="percentile", rng=np.random.default_rng(seed),
    )  # fmt: skip
    out.ci_low, out.ci_high = _finite(res.confidence_interval.low), _finite(res.confidence_interval.high)


def _from_rows(out: Measured, found: Sequence[MetricRow | str]) -> None:
    missing = [f for f in found if isinstance(f, str)]
    if missing:
        out.reason = missing[0]
        return
    picked = [f for f in found if isinstance(f, MetricRow)]
    if any(r.value is None for r in picked):
        out.reason = "a row it reads has no value (undefined in this run)"
        return
    if len(picked) == 1:
        row = picked[0]
        out.value, out.ci_low, out.ci_high, out.n = row.value, row.ci_low, row.ci_high, row.n
        out.method = f"the row's own value and 95% interval ({row.name})"
    else:
        a, b = picked
        assert a.value is not None and b.value is not None
        out.value, out.n = a.value - b.value, min(a.n, b.n)
        out.method = "difference of two rows, their 95% intervals combined as independent (normal approximation)"
        se = [_se(r) for r in (a, b)]
        if se[0] is not None and se[1] is not None:
            half = Z_975 * math.hypot(se[0], se[1])
            out.ci_low, out.ci_high = out.value - half, out.value + half
        else:
            out.reason = "a row it reads has no interval, and no per-episode values to pair"
    if out.ci_low is not None and out.ci_high is not None and out.n > 1:
        out.sd = (out.ci_high - out.ci_low) / (2 * Z_975) * math.sqrt(out.n)


def _se(row: MetricRow) -> float | None:
    if row.ci_low is None or row.ci_high is None:
        return None
    return (row.ci_high - row.ci_low) / (2 * Z_975)


def _finite(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _labels(labels: Mapping[str, Any]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in labels.items()) + "}" if labels else ""


# ---- sweeps: a finding across the runs of a sweep (`schola report`) ----


@dataclass
class Arm:
    """One run of a sweep as a finding reads it: its config values by dotted key, finished episodes and rows."""

    config: Mapping[str, Any]
    results: Sequence[Mapping[str, Any]]
    rows: Sequence[MetricRow]


def arm_keys(finding: FindingConfig, keys: Iterable[str]) -> dict[str, str]:
    """The labels of a finding's rows that name one of a sweep's differing config keys by its last part (`variant`
    for `scenario.variant`), label -> key: such a row is read from the arm with that value (score{variant=spp}:
    the run with scenario.variant=spp), not from a row label."""
    keys = list(keys)
    out = {}
    for _, labels in terms(finding.effect):
        for label in labels:
            named = [k for k in keys if k == label or k.endswith("." + label)]
            if len(named) == 1:
                out[label] = named[0]
    return out


def config_label(value: Any) -> str:
    """A config value as a label value: `true`, not `True` (YAML's and the command line's spelling)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def measure_arms(finding: FindingConfig, arms: Sequence[Arm], keys: Mapping[str, str], *, seed: int = 0) -> Measured:
    """A finding over a group of a sweep's arms (`keys`: its `arm_keys`): each row read from the arms whose config
    has its arm labels' values (all of them for a row with none), each episode's value its mean over those arms
    (the seeds of one setting: n counts episodes, not episodes x seeds, since a seed reruns the same items); then
    paired by episode id as in one run (two arms that ran the same episodes), else a two-sample interval."""
    sides: list[Side] = []
    for name, labels in terms(finding.effect):
        term = (name, {k: v for k, v in labels.items() if k not in keys})
        chosen = arms_of(arms, labels, keys)
        if not chosen:
            arm = ", ".join(f"{keys[k]}={v}" for k, v in labels.items() if k in keys)
            out = _blank(finding)
            out.reason = f"no run of this sweep has {arm}"
            return out
        per_arm = [_episode_values(a.results, a.rows, term) for a in chosen]
        values = _mean_by_episode(per_arm) if all(per_arm) else {}
        row = find_row(chosen[0].rows, term) if len(chosen) == 1 else "no per-episode values to pool over runs"
        sides.append((values, row))
    return _measured(finding, sides, seed=seed)


def arms_of(arms: Sequence[Arm], labels: Mapping[str, str], keys: Mapping[str, str]) -> list[Arm]:
    """The arms whose config has the values a row's arm labels name (every arm, for a row with none)."""
    return [a for a in arms if all(config_label(a.config.get(keys[k])) == v for k, v in labels.items() if k in keys)]


def _mean_by_episode(per_arm: Sequence[Mapping[str, float]]) -> dict[str, float]:
    ids = dict.fromkeys(e for values in per_arm for e in values)
    return {e: math.fsum(v[e] for v in per_arm if e in v) / sum(e in v for v in per_arm) for e in ids}


def over_runs(finding: FindingConfig, values: Sequence[float], *, seed: int = 0) -> Measured:
    """A finding pooled over runs (seeds) whose rows keep no per-episode values: the mean of the runs' measured
    effects with a bootstrap interval over runs (n = runs), as `schola report` pools a metric over seeds."""
    from schola.metrics import mean_row

    row = mean_row(finding.name, values, seed=seed)
    out = _blank(finding)
    out.value, out.ci_low, out.ci_high, out.n = row.value, row.ci_low, row.ci_high, row.n
    out.method = "mean of the runs' measured effects, 95% percentile bootstrap over runs"
    if row.n < 2:
        out.reason = "fewer than 2 runs measured it"
        out.ci_low = out.ci_high = None
    return _judge(out, finding)


# ---- run.until=decided: the anytime-valid test ----


def _unit(
    values: np.ndarray[Any, Any], bounds: tuple[float, float], contrast: bool
) -> tuple[np.ndarray[Any, Any], float]:
    """Values mapped into [0, 1] and where an effect of 0 lands: a contrast of two values in [lo, hi] lies in
    [lo - hi, hi - lo]."""
    import numpy as np

    lo, hi = bounds
    low, high = (lo - hi, hi - lo) if contrast else (lo, hi)
    return np.clip((values - low) / (high - low), 0.0, 1.0), (0.0 - low) / (high - low)


def log_capital(
    x: np.ndarray[Any, Any], m: np.ndarray[Any, Any], alpha: float = ALPHA, wealth: Wealth | None = None
) -> tuple[Any, Any]:
    """Log wealth of the betting processes K+ (betting that the mean exceeds m) and K- (below m) after each
    observation, for observations `x` in [0, 1] (shape (..., T)) and candidate means `m` (shape (G,)):
    arrays (..., T, G). Bets are Waudby-Smith & Ramdas' predictable plug-in (eq. 26), truncated at 1/2 of the
    largest bet that keeps wealth positive. `wealth`: the test so far, carried on from (and updated to include
    `x`); none: from the start."""
    import numpy as np

    w = Wealth() if wealth is None else wealth
    t = np.arange(w.t + 1, w.t + x.shape[-1] + 1, dtype=float)
    sum_x = _carried_cumsum(w.sum_x, np.array(x, dtype=float), -1)
    mu_hat = (0.5 + sum_x) / (t + 1)
    sum_sq = _carried_cumsum(w.sum_sq, (x - mu_hat) ** 2, -1)
    var_hat = (0.25 + sum_sq) / (t + 1)
    first_var = np.broadcast_to(np.expand_dims(w.var, -1), x.shape[:-1] + (1,))
    var_before = np.concatenate([first_var, var_hat[..., :-1]], axis=-1)
    lam = np.sqrt(2 * math.log(2 / alpha) / (var_before * t * np.log1p(t)))[..., None]
    m = np.asarray(m, dtype=float)
    up = np.minimum(lam, 0.5 / np.maximum(m, 1e-12))
    down = np.minimum(lam, 0.5 / np.maximum(1 - m, 1e-12))
    centred = x[..., None] - m
    with np.errstate(divide="ignore"):
        k_up = _carried_cumsum(w.up, np.log1p(up * centred), -2)
        k_down = _carried_cumsum(w.down, np.log1p(-down * centred), -2)
    w.t += x.shape[-1]
    w.sum_x, w.sum_sq, w.var = sum_x[..., -1], sum_sq[..., -1], var_hat[..., -1]
    w.up, w.down = k_up[..., -1, :], k_down[..., -1, :]
    return k_up, k_down


@dataclass
class Wealth:
    """The betting test after `t` observations, all `log_capital` needs to go on with the next ones: the running
    sums (of x, and of squares about the running mean), the last variance estimate and the two log wealths (the
    start: none seen). Running sums go on from where they were, added in the order a whole series adds them, so
    a series fed in batches gets the same numbers as at once."""

    t: int = 0
    sum_x: Any = 0.0
    sum_sq: Any = 0.0
    var: Any = 0.25
    up: Any = 0.0
    down: Any = 0.0


def _carried_cumsum(carry: Any, x: Any, axis: int) -> Any:
    """The running sums of `x` (an array of the caller's own: its first term takes the carry) along `axis` after
    `carry`, added one by one as `np.cumsum` over the whole series adds them (0.0 first: the same numbers)."""
    import numpy as np

    head = (..., slice(0, 1)) + (slice(None),) * (-1 - axis)  # the first term along `axis`
    x[head] += carry if np.ndim(carry) == 0 else np.expand_dims(carry, axis)
    return np.cumsum(x, axis=axis)


def sequential_decision(
    values: Sequence[float], bounds: tuple[float, float] = (0.0, 1.0), *, contrast: bool = True, alpha: float = ALPHA
) -> int:
    """+1 when the hedged betting test at some point so far showed the effect is above 0 (mean above the null),
    -1 below, 0 not yet: each side bets half the wealth, so a side decides at wealth 2/alpha, and under an effect
    of 0 the chance that either ever does is at most alpha (Ville's inequality)."""
    test = _Bets()
    test.add(values, bounds, contrast, alpha)
    return test.decision


def sequence_interval(
    values: np.ndarray[Any, Any] | Sequence[float],
    bounds: tuple[float, float] = (0.0, 1.0),
    contrast: bool = True,
    *,
    alpha: float = ALPHA,
    grid: int = 2001,
) -> tuple[float, float]:
    """The 95% confidence sequence for the mean effect after the last value (the running intersection: a mean
    once excluded stays excluded), in the effect's units."""
    import numpy as np

    x, _ = _unit(np.asarray(values, dtype=float), bounds, contrast)
    m = np.linspace(0, 1, grid)[1:-1]
    up, down = log_capital(x, m, alpha)
    hedged = np.maximum(up, down) + math.log(0.5)
    kept = m[np.max(hedged, axis=0) < math.log(1 / alpha)]
    lo, hi = bounds
    low, width = ((lo - hi), 2 * (hi - lo)) if contrast else (lo, hi - lo)
    if len(kept) == 0:
        return (math.nan, math.nan)
    return (float(low + width * kept.min()), float(low + width * kept.max()))


class Decider:
    """`decided`, fed as episodes finish in the order they were asked for (`add`), each finding's betting test
    carried from one batch to the next (its counts, sums and the two log wealths): a run.until=decided run reads
    each batch's episodes once instead of every finished episode again at every batch (quadratic in the run).
    The same decisions as `decided` over all of them at once: the running sums are added in the same order."""

    def __init__(self, findings: Sequence[FindingConfig], alpha: float = ALPHA) -> None:
        self.findings, self.alpha = list(findings), alpha
        self.terms = [terms(f.effect) for f in self.findings]
        self.state = [_Bets() for _ in self.findings]

    def add(self, results: Iterable[Mapping[str, Any]]) -> None:
        """More finished episodes, after those added before (failed ones are left out)."""
        series: list[list[float]] = [[] for _ in self.findings]
        for r in results:
            for parts, out in zip(self.terms, series, strict=True):
                values = [episode_values([r], t) for t in parts]
                eid = str(r["episode"])
                if "error" not in r and all(eid in v for v in values):
                    out.append(values[0][eid] - (values[1][eid] if len(values) == 2 else 0.0))
        for f, parts, bets, x in zip(self.findings, self.terms, self.state, series, strict=True):
            bets.add(x, f.bounds, len(parts) == 2, self.alpha)

    def decided(self) -> dict[str, int]:
        return {f.name: bets.decision for f, bets in zip(self.findings, self.state, strict=True)}


class _Bets:
    """One finding's sequential decision so far (`sequential_decision`), its test carried in a `Wealth`."""

    def __init__(self) -> None:
        self.wealth, self.decision = Wealth(), 0

    def add(self, values: Sequence[float], bounds: tuple[float, float], contrast: bool, alpha: float) -> None:
        import numpy as np

        if not len(values) or self.decision:
            return
        x, null = _unit(np.asarray(values, dtype=float), bounds, contrast)
        if not 0 < null < 1:
            return
        up, down = log_capital(x, np.asarray([null]), alpha, self.wealth)
        crossed = np.nonzero(np.maximum(up[:, 0], down[:, 0]) >= math.log(2 / alpha))[0]
        if len(crossed):  # the first side to cross decides (were both to cross at once: the richer one)
            self.decision = 1 if up[crossed[0], 0] > down[crossed[0], 0] else -1


def decided(findings: Sequence[FindingConfig], results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Each finding's sequential decision over the finished episodes in the order they were asked for."""
    out = {}
    for f in findings:
        parts = terms(f.effect)
        values = [episode_values(results, t) for t in parts]
        ids = [str(r["episode"]) for r in results if all(str(r["episode"]) in v for v in values)]
        series = [values[0][e] - (values[1][e] if len(values) == 2 else 0.0) for e in ids]
        out[f.name] = sequential_decision(series, f.bounds, contrast=len(values) == 2)
    return out
