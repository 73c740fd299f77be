"""Learning to Learn: How to Continuously Teach Humans and Machines (Singh et al., ICCV 2023) — the designer.

Class-incremental learning in one pass: the classes are grouped into tasks (10 digits: 5 tasks of 2 classes)
and a curriculum is an order of the tasks (5! = 120). No language model: the designer (teacher) and the
continual learners (students) are roles without a backend. Per order (an episode):
  1. the designer scores the order: S from the cosine distances between task prototypes and their variance v;
  2. each learner (naive fine-tuning, EWC, LwF) learns the tasks in that order: final average accuracy A and
     first-task forgetting Δ.
Then, as a run-level stage, the designer generates its own curricula (evaluated too, when the sample missed
them) and the stage reports, per learner: the Spearman (and Pearson) correlation of S with A, the overlap of the
top quarter of orders by S with the top quarter by A (and by the authors' F = 2A/(ΔA+1)), where the designer's
curricula rank, a table of every order, and a PNG of A against S.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import random
from types import SimpleNamespace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from schola.scenarios.curriculum.data import CurriculumData, Split, describe, load_split

from schola.errors import ConfigError
from schola.metrics import MetricRow, bootstrap_interval
from schola.scenario import Scenario
from schola.scorers import value  # a number the roles computed (S, A, Δ), recorded as an episode score
from schola.stats import correlation
from schola.store import to_csv

MAX_TASKS = 8  # 8! = 40,320 orders are still enumerated; more tasks need another sampler


class CurriculumParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def episode(order: list[int], split: Split, dataset: dict[str, Any]) -> dict[str, Any]:
    """The episode of one order; its id is the order's rank among all orders (lexicographic)."""
    rank = sum(
        sum(1 for later in order[i + 1 :] if later < task) * math.factorial(len(order) - 1 - i)
        for i, task in enumerate(order)
    )
    return {
        "id": f"order-{rank:05d}", "order": list(order),
        "curriculum": " > ".join(split.names(t) for t in order), "dataset": dataset,
    }  # fmt: skip


def load(data: CurriculumData, *, seed: int, source: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """One episode per order: all n! orders, or a seeded sample of `orders` of them."""
    dataset = describe(data, seed=seed, source=source)
    split = load_split(dataset)
    n = len(split.tasks)
    if n > MAX_TASKS:
        raise ConfigError(
            f"{n} tasks are too many orders to enumerate (at most {MAX_TASKS}); raise classes_per_task",
            key="scenario.data.classes_per_task",
        )
    orders = list(itertools.permutations(range(n)))
    if data.orders is not None and data.orders < len(orders):
        orders = sorted(random.Random(f"curriculum/{seed}").sample(orders, data.orders))
    return [episode(list(o), split, dataset) for o in orders]


def top_quarter(scores: dict[str, float]) -> set[str]:
    """The orders scoring above the 75th percentile (the authors' cut)."""
    cut = np.percentile(list(scores.values()), 75)
    return {k for k, v in scores.items() if v > cut}


def overlap(predicted: dict[str, float], measured: dict[str, float]) -> float | None:
    """Share of the measured top quarter that the predicted top quarter also holds (chance: about a quarter)."""
    value = _overlap(*_aligned(predicted, measured))
    return None if math.isnan(value) else value


def _aligned(predicted: dict[str, float], measured: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray([predicted[k] for k in measured], dtype=float), np.asarray(list(measured.values()), dtype=float)


def _overlap(predicted: np.ndarray, measured: np.ndarray) -> float:
    """`overlap` over orders as aligned arrays (a bootstrap resample repeats some); NaN without a top quarter."""
    best = measured > np.percentile(measured, 75)
    top = predicted > np.percentile(predicted, 75)
    return float((best & top).sum() / best.sum()) if best.any() else math.nan


def overlap_row(predicted: dict[str, float], measured: dict[str, float], *, seed: int, **labels: Any) -> MetricRow:
    """`top_quarter_overlap` with its 95% bootstrap CI over the orders."""
    low, high = bootstrap_interval(_aligned(predicted, measured), _overlap, seed=seed)
    return MetricRow("top_quarter_overlap", overlap(predicted, measured), labels, low, high, n=len(measured))


def rank(scores: dict[str, float], key: str) -> int:
    """1 + how many orders score strictly higher than `key`."""
    return 1 + sum(v > scores[key] for v in scores.values())


def table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per order: S, and A, Δ and F of each learner."""
    rows = []
    for r in results:
        row: dict[str, Any] = {
            "episode": r["episode"],
            "curriculum": r["inputs"]["curriculum"],
            "S": r["outputs"]["design"]["S"],
        }
        for run in r["outputs"]["runs"]:
            row |= {f"{key}[{run['learner']}]": run[key] for key in ("A", "delta", "F")}
        rows.append(row)
    return sorted(rows, key=lambda row: row["episode"])


async def report(ctx: Any, *, designer: str = "designer", plot: bool = True) -> list[MetricRow]:
    """Compare the designer's S with the learners' measured A over every evaluated order."""
    if not ctx.results:
        return []
    dataset = ctx.results[0]["inputs"]["dataset"]
    reply = await ctx.act(designer, json.dumps({"dataset": dataset, "generate": True}))
    generated: list[list[int]] = reply.data["curricula"]
    split = load_split(dataset)
    done = {r["episode"]: r for r in ctx.results}
    wanted = [episode(c, split, dataset) for c in generated]
    missing = [e for e in wanted if e["id"] not in done]
    if missing:
        for r in await ctx.run_episodes(missing, round=1):
            done[r["episode"]] = r
    rows_by_order = table(list(done.values()))
    s = {row["episode"]: row["S"] for row in rows_by_order}
    learners = [k[2:-1] for k in rows_by_order[0] if k.startswith("A[")]
    metrics: list[MetricRow] = []
    orders = SimpleNamespace(results=rows_by_order, seed=ctx.seed)  # the generic stages read rows as records
    for learner in learners:
        a = {row["episode"]: row[f"A[{learner}]"] for row in rows_by_order}
        f = {row["episode"]: row[f"F[{learner}]"] for row in rows_by_order}
        n = len(a)
        metrics += correlation(orders, x="S", y=f"A[{learner}]")  # Pearson and Spearman, CIs and p-values
        metrics.append(overlap_row(s, a, seed=ctx.seed, learner=learner, by="A"))
        metrics.append(overlap_row(s, f, seed=ctx.seed, learner=learner, by="F"))
        for i, e in enumerate(wanted, 1):
            metrics.append(
                MetricRow("designer_rank", rank(a, e["id"]), {"learner": learner, "curriculum": i, "by": "A"}, n=n)
            )
            metrics.append(MetricRow("designer_A", a[e["id"]], {"learner": learner, "curriculum": i}, n=1))
    metrics.append(MetricRow("top_quarter_chance", len(top_quarter(s)) / len(s), n=len(s)))
    for i, e in enumerate(wanted, 1):
        metrics.append(MetricRow("designer_rank", rank(s, e["id"]), {"curriculum": i, "by": "S"}, n=len(s)))
    made = [{"episode": e["id"], "curriculum": e["curriculum"], "order": e["order"]} for e in wanted]
    ctx.store.write_file("orders.csv", to_csv(rows_by_order))  # the run's one writer: never through a link
    ctx.store.write_file("designer.json", json.dumps({**reply.data, "generated": made}, indent=1))
    if plot:
        ctx.store.write_file("a_vs_s.png", _plot(rows_by_order, learners, {e["id"] for e in wanted}))
    return metrics


def _plot(rows: list[dict[str, Any]], learners: list[str], marked: set[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(learners), figsize=(4 * len(learners), 3.4), squeeze=False, sharey=True)
    for ax, learner in zip(axes[0], learners):
        for is_marked, style in (
            (False, {"c": "tab:blue", "s": 14}),
            (True, {"c": "tab:red", "marker": "*", "s": 120}),
        ):
            pts = [(r["S"], r[f"A[{learner}]"]) for r in rows if (r["episode"] in marked) == is_marked]
            if pts:
                ax.scatter(*zip(*pts), label="designer's curricula" if is_marked else "orders", **style)
        ax.set_title(learner)
        ax.set_xlabel("designer score S")
    axes[0][0].set_ylabel("final average accuracy A")
    axes[0][-1].legend(fontsize="small")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    return png.getvalue()


scenario = Scenario(
    name="curriculum",
    description=__doc__.splitlines()[0],
    load=load,
    data=CurriculumData,
    params=CurriculumParams,
    scorers={"value": value},
    stages={"report": report},
)
