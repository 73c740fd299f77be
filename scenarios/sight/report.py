"""SIGHT's analysis (the authors' `scripts/run_irr.py`): per category, Cohen's kappa between the two humans
(IRR) and the mean of each model's kappa with each human (scikit-learn), Krippendorff's alpha across all
annotators (`krippendorff`); the correlation across categories of IRR and human-model kappa (`schola.stats`);
tokens (and cost, where transcript lines carry it) per comment. Writes `categories.csv`, `labels.csv` and
`agreement.png`. The YAML's generic `agreement` stage gives IRR with its bootstrap CI; this stage gives the
human-model kappa and alpha with theirs: 95% percentile bootstraps over the category's comments, seeded by the
run seed (kappa vectorized over the resamples, `schola.stats.kappa_codes`; alpha from `krippendorff`, which has
no bootstrap of its own, once per resample)."""

from __future__ import annotations

import io
import math
import warnings
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from schola import stats
from schola.errors import ConfigError
from schola.metrics import MetricRow, bootstrap_interval, parse_metric_key
from schola.store import read_jsonl, to_csv

LABEL = "label"  # the score the graph records per annotator: label{annotator=<name>}


def column(annotator: str) -> str:
    """The stats column of an annotator's label."""
    return f"scores.{LABEL}{{annotator={annotator}}}"


def annotators(results: list[dict[str, Any]]) -> list[str]:
    """Every annotator with a label score, in order of first appearance."""
    seen: dict[str, None] = {}
    for r in results:
        for key in r.get("scores") or {}:
            name, labels = parse_metric_key(key)
            if name == LABEL and "annotator" in labels:
                seen.setdefault(labels["annotator"], None)
    return list(seen)


def codes(labels: list[int | None]) -> np.ndarray[Any, Any]:
    """0/1 labels as `stats.kappa_codes` takes them (-1: none given)."""
    return np.asarray([-1 if v is None else int(v) for v in labels], dtype=np.int64)


def _mean_kappa(*columns: np.ndarray[Any, Any], axis: int = -1) -> Any:
    """The mean of each human column's kappa with the last (the model's) column; NaN if one is undefined."""
    *humans, model = columns
    return sum(stats.kappa_codes(h, model, k=2, axis=axis) for h in humans) / len(humans)


def kappa(a: list[int | None], b: list[int | None]) -> float | None:
    """Cohen's kappa (scikit-learn's, `stats.kappa_codes`) over the items both annotators labelled; None when
    undefined (fewer than 2 items, or one label only in both columns)."""
    value = float(stats.kappa_codes(codes(a), codes(b), k=2))
    return value if math.isfinite(value) else None


def mean_kappa_ci(humans: list[list[int | None]], model: list[int | None], *, seed: int) -> tuple[Any, Any]:
    """95% bootstrap CI, over comments, of the mean of the model's kappa with each human."""
    return bootstrap_interval(tuple(codes(c) for c in [*humans, model]), _mean_kappa, seed=seed, vectorized=True)


def _alpha(*rows: np.ndarray[Any, Any]) -> float:
    """Krippendorff's alpha (nominal, the `krippendorff` package) of annotator rows; NaN where undefined."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            import krippendorff

            return float(krippendorff.alpha(np.vstack(rows), level_of_measurement="nominal", value_domain=[0.0, 1.0]))
    except ValueError:  # one value only
        return math.nan


def _matrix(columns: list[list[int | None]]) -> np.ndarray[Any, Any]:
    return np.asarray([[math.nan if v is None else float(v) for v in col] for col in columns], dtype=float)


def alpha(columns: list[list[int | None]]) -> float | None:
    """Krippendorff's alpha (nominal; the `krippendorff` package) across annotators, missing labels allowed."""
    value = _alpha(*_matrix(columns))
    return value if math.isfinite(value) else None


def alpha_ci(columns: list[list[int | None]], *, seed: int) -> tuple[Any, Any]:
    """95% bootstrap CI of alpha over comments (each resample: one `krippendorff.alpha` call)."""
    return bootstrap_interval(tuple(_matrix(columns)), _alpha, seed=seed)


def category_table(
    results: list[dict[str, Any]], *, humans: list[str], models: list[str], seed: int = 0
) -> list[dict[str, Any]]:
    """One row per category: n (comments both humans labelled), IRR, each model's kappa with each human and
    their mean, Krippendorff's alpha across everyone; the mean kappa and alpha with their bootstrap CIs."""
    labels: dict[str, dict[str, list[int | None]]] = {}
    for r in results:
        per = labels.setdefault(r["inputs"]["category"], {name: [] for name in humans + models})
        scores = r.get("scores") or {}
        for name in per:
            value = scores.get(f"{LABEL}{{annotator={name}}}")
            per[name].append(None if value is None else int(value))
    table = []
    for category, per in labels.items():
        h1, h2 = per[humans[0]], per[humans[1]]
        row: dict[str, Any] = {
            "category": category,
            "n": sum(x is not None and y is not None for x, y in zip(h1, h2, strict=True)),
        }
        row["irr"] = kappa(h1, h2)
        for m in models:
            with_humans = [kappa(per[h], per[m]) for h in humans]
            for h, k in zip(humans, with_humans, strict=True):
                row[f"kappa_{h}_{m}"] = k
            row[f"kappa_{m}"] = None if None in with_humans else sum(with_humans) / len(with_humans)  # type: ignore[arg-type]
            ci = mean_kappa_ci([per[h] for h in humans], per[m], seed=seed) if row[f"kappa_{m}"] is not None else None
            row[f"kappa_{m}_ci_low"], row[f"kappa_{m}_ci_high"] = ci or (None, None)
        everyone = [per[name] for name in humans + models]
        row["alpha"] = alpha(everyone)
        ci = alpha_ci(everyone, seed=seed) if row["alpha"] is not None else None
        row["alpha_ci_low"], row["alpha_ci_high"] = ci or (None, None)
        table.append(row)
    return table


def irr_correlation(table: list[dict[str, Any]], model: str, *, seed: int) -> list[MetricRow]:
    """Pearson and Spearman correlation, across categories, of IRR and the model's kappa with the humans."""
    items = [{"inputs": {"irr": r["irr"], "model_kappa": r[f"kappa_{model}"]}} for r in table]
    rows = stats.correlation(SimpleNamespace(results=items, seed=seed), x="inputs.irr", y="inputs.model_kappa")
    return [MetricRow(f"irr_vs_model.{r.name}", r.value, {"model": model}, r.ci_low, r.ci_high, r.n) for r in rows]


def usage_per_comment(output_dir: Path, results: list[dict[str, Any]], models: list[str]) -> list[MetricRow]:
    """Tokens (and cost, where transcript lines carry `cost_usd`) of each model per comment."""
    comment_of = {r["episode"]: r["inputs"].get("comment_id") for r in results}
    comments = {c for c in comment_of.values() if c is not None}
    tokens: dict[str, float] = defaultdict(float)
    cost: dict[str, float] = defaultdict(float)
    priced: set[str] = set()
    for rec in read_jsonl(output_dir / "transcript.jsonl"):
        if rec.get("agent") in models and rec.get("episode") in comment_of:
            tokens[rec["agent"]] += rec.get("prompt_tokens", 0) + rec.get("completion_tokens", 0)
            if rec.get("cost_usd") is not None:
                cost[rec["agent"]] += rec["cost_usd"]
                priced.add(rec["agent"])
    n = len(comments)
    rows = [MetricRow("tokens_per_comment", tokens[m] / n if n else None, {"model": m}, n=n) for m in models]
    rows += [
        MetricRow("cost_usd_per_comment", cost[m] / n if n else None, {"model": m}, n=n) for m in models if m in priced
    ]
    return rows


def labels_csv(results: list[dict[str, Any]], names: list[str]) -> str:
    """Every label given: one row per comment and category, one column per annotator (empty: none given)."""
    rows = []
    for r in results:
        inputs, scores = r["inputs"], r.get("scores") or {}
        if "category" not in inputs:
            continue
        row = {"comment_id": inputs.get("comment_id"), "category": inputs["category"], "gold": inputs.get("gold")}
        for name in names:
            value = scores.get(f"{LABEL}{{annotator={name}}}")
            row[name] = None if value is None else int(value)
        rows.append(row)
    return to_csv(rows)


def scatter(table: list[dict[str, Any]], models: list[str]) -> bytes:
    """IRR (x) against each model's mean kappa with the humans (y), one point per category, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m in models:
        points = [(r["irr"], r[f"kappa_{m}"], r["category"]) for r in table]
        points = [p for p in points if p[0] is not None and p[1] is not None]
        ax.scatter([p[0] for p in points], [p[1] for p in points], label=m)
        for x, y, name in points:
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("human-human kappa (IRR)")
    ax.set_ylabel("mean human-model kappa")
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(title="model", fontsize=8)
    ax.set_title("SIGHT: agreement by category")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    return png.getvalue()


def report(ctx: Any, *, humans: list[str] | None = None) -> list[MetricRow]:
    """Per category, each model's mean kappa with the humans and Krippendorff's alpha across every annotator
    (whatever the models are named); the correlation across categories of IRR and each model's kappa; usage per
    comment; and the files `categories.csv` (the per-category table: n, IRR, kappas, alpha), `labels.csv` and
    `agreement.png`. (IRR with its bootstrap CI comes from the generic `agreement` stage in the YAML.)"""
    humans = humans or ["H1", "H2"]
    results = [r for r in ctx.results if "category" in (r.get("inputs") or {})]
    names = annotators(results)
    missing = [h for h in humans if h not in names]
    if len(humans) != 2 or missing:
        raise ConfigError(
            f"stage sight.report: humans must name the two human annotators; not found: {', '.join(missing) or humans}"
            f" (annotators with labels: {', '.join(names)})",
            key="scenario.stages",
        )
    models = [a for a in names if a not in humans]
    table = category_table(results, humans=humans, models=models, seed=ctx.seed)
    rows: list[MetricRow] = []
    for r in table:
        labels = {"category": r["category"], "raters": "all"}
        rows.append(MetricRow("krippendorff_alpha", r["alpha"], labels, r["alpha_ci_low"], r["alpha_ci_high"], r["n"]))
        for m in models:
            low, high = r[f"kappa_{m}_ci_low"], r[f"kappa_{m}_ci_high"]
            labels = {"category": r["category"], "model": m}
            rows.append(MetricRow("human_model_kappa", r[f"kappa_{m}"], labels, low, high, r["n"]))
    for m in models:
        rows += irr_correlation(table, m, seed=ctx.seed)
    rows += usage_per_comment(Path(ctx.output_dir), results, models)
    ctx.store.write_file("categories.csv", to_csv(table))
    ctx.store.write_file("labels.csv", labels_csv(results, names))
    ctx.store.write_file("agreement.png", scatter(table, models))
    return rows
