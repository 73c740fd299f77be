"""The run-level stage `tom_teaching.teach`: after the student has answered every item on its own (the main
episodes), for each teacher
  1. choose the teacher's demonstrations (unpersonalized, personalized, deceiving);
  2. the teacher explains a few train items and the student answers with those explanations: the mental model's
     P_post demonstrations (and, multi-turn, the student's new demonstrations);
  3. single-turn: the teacher explains every test item once, the student answers with the explanation, the mental
     model predicts P_pre(gold) and P_post(gold); every intervention function ranks the test set and the
     accuracy at each intervention budget follows from the two answers per item (no model call per budget);
  4. multi-turn: the teacher's explanations of k train items become the student's demonstrations; the student is
     tested without intervention, for each k.
Writes `accuracy_vs_budget.csv` / `.png` (and `accuracy_vs_k.*` multi-turn) and `observations.jsonl`.
"""

from __future__ import annotations

import io
from typing import Any

from schola.scenarios.tom_teaching.data import demo
from schola.scenarios.tom_teaching.demos import balanced, personalized
from schola.scenarios.tom_teaching.interventions import Observation, argmax, correctness

from schola.errors import ConfigError
from schola.metrics import MetricRow, mean_row
from schola.store import to_csv

NO_DEMOS: dict[str, list[Any]] = {"teacher_demos": [], "mm_pre_demos": [], "mm_post_demos": []}


def probs(outputs: dict[str, Any], name: str) -> dict[str, float]:
    value = outputs.get(name) or {}
    return dict(value.get("p") or {})


def sources(records: list[dict[str, Any]]) -> set[str]:
    return {v["source"] for r in records for v in r["outputs"].values() if isinstance(v, dict) and v.get("source")}


def answer(record: dict[str, Any], name: str) -> str | None:
    """The most probable of the item's options in the output `name` of an episode record."""
    return argmax(probs(record["outputs"], name), record["inputs"]["options"])


def main_episodes(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The train pool and the test items as the student answered them on its own (round 0)."""
    main = [r for r in results if not r.get("round")]
    pool = [r for r in main if r["inputs"]["split"] == "train"]
    test = [r for r in main if r["inputs"]["split"] == "test"]
    if not test:
        raise ConfigError("tom_teaching.teach found no test episodes", key="scenario.data.test")
    return pool, test


def observation(item: dict[str, Any], own: dict[str, Any], told: dict[str, Any]) -> Observation:
    return Observation(
        id=item["id"], gold=item["answer"], options=tuple(item["options"]),
        student_pre=probs(own, "student_pre"), student_post=probs(told, "student_post"),
        teacher=probs(told, "teacher_answer"), mm_pre=probs(told, "mm_pre"), mm_post=probs(told, "mm_post"),
    )  # fmt: skip


class Teaching:
    """One stage call: the rounds, the rows, the files."""

    def __init__(self, ctx: Any) -> None:
        self.ctx, self.params = ctx, ctx.params
        self.pool, self.test = main_episodes(ctx.results)
        # two options (yes/no): the mental model's demonstrations are balanced over the predicted answers
        self.options = list(self.test[0]["inputs"]["options"])
        self.student_demos = self.test[0]["inputs"]["student_demos"]
        self.round = 0
        self.rows: list[MetricRow] = []
        self.table: list[dict[str, Any]] = []
        self.observations: list[dict[str, Any]] = []
        self.used: list[dict[str, Any]] = list(self.test)

    async def run(self, inputs: list[dict[str, Any]], *, graph: str | None) -> list[dict[str, Any]]:
        self.round += 1
        out: list[dict[str, Any]] = await self.ctx.run_episodes(inputs, graph=graph, round=self.round)
        self.used += out
        return out

    def teacher_demos(self, teacher: str) -> list[dict[str, Any]]:
        k = self.params.demos
        if teacher == "unpersonalized":
            return list(self.student_demos)
        if teacher == "personalized":
            # the student's answers on the pool without and with the gold explanation (main episodes)
            observed = [{**demo(r["inputs"]), "pre": answer(r, "student_pre"), "post": answer(r, "student_post")}
                        for r in self.pool]  # fmt: skip
            chosen = personalized(observed, self.student_demos, k=k)
            found = sum(1 for d in chosen if d not in self.student_demos)
            self.rows.append(MetricRow("personalized_demos", float(found), {"teacher": teacher}, n=k))
            return chosen
        return list(self.test[0]["inputs"]["deceiving_demos"])

    async def teach(self, teacher: str) -> None:
        p = self.params
        demos = self.teacher_demos(teacher)
        needed = max([2 * p.demos, *p.multi_turn])
        if len(self.pool) < needed:
            raise ConfigError(
                f"the train pool has {len(self.pool)} items; {needed} are needed (2·params.demos and the largest "
                "multi-turn k): raise scenario.data.train",
                key="scenario.data.train",
            )  # fmt: skip
        candidates = [r["inputs"] for r in self.pool[:needed]]
        explained = await self.run(
            [{**c, **NO_DEMOS, "id": f"{teacher}/explain/{c['id']}", "teacher_demos": demos} for c in candidates],
            graph="explain",
        )
        if p.single_turn:
            await self.single_turn(teacher, demos, explained)
        if p.multi_turn:
            await self.multi_turn(teacher, explained)

    async def single_turn(self, teacher: str, demos: list[dict[str, Any]], explained: list[dict[str, Any]]) -> None:
        p, options = self.params, self.options
        pre_seen = [{**demo(r["inputs"]), "prediction": answer(r, "student_pre")} for r in self.pool]
        post_seen = [
            {
                **demo(r["inputs"]),
                "explanation": r["outputs"]["hint"],
                "prediction": answer(r, "student_post"),
            }
            for r in explained
        ]
        mm = {"mm_pre_demos": balanced(pre_seen, k=p.demos, options=options),
              "mm_post_demos": balanced(post_seen, k=p.demos, options=options)}  # fmt: skip
        told = await self.run(
            [
                {**r["inputs"], **mm, "id": f"{teacher}/test/{r['inputs']['id']}", "teacher_demos": demos}
                for r in self.test
            ],
            graph="explain",
        )
        items = [observation(r["inputs"], r["outputs"], t["outputs"]) for r, t in zip(self.test, told, strict=True)]
        labels = {"teacher": teacher}
        for fn in p.intervention:
            for b in p.budgets:
                row = mean_row("accuracy", correctness(items, fn, b, seed=self.ctx.seed), seed=self.ctx.seed,
                               **labels, intervention=fn, budget=b)  # fmt: skip
                self.rows.append(row)
                self.table.append(
                    {**row.labels, "accuracy": row.value, "ci_low": row.ci_low, "ci_high": row.ci_high, "n": row.n}
                )
        teacher_right = [argmax(it.teacher, it.options) == it.gold for it in items]
        self.rows.append(mean_row("teacher_accuracy", teacher_right, seed=self.ctx.seed, **labels))
        for phase, mm_name, student in (("pre", "mm_pre", "student_pre"), ("post", "mm_post", "student_post")):
            agree = [
                argmax(getattr(it, mm_name), it.options) == argmax(getattr(it, student), it.options) for it in items
            ]
            self.rows.append(mean_row("mental_model_agreement", agree, seed=self.ctx.seed, **labels, phase=phase))
        for it, t in zip(items, told, strict=True):
            self.observations.append(
                {"teacher": teacher, "item": it.id, "gold": it.gold, "pre_correct": it.pre_correct,
                 "post_correct": it.post_correct, "utility": it.utility, "teacher_probs": t["outputs"].get("teacher_answer"),
                 "explanation": t["outputs"].get("teacher_explanation")}
            )  # fmt: skip

    async def multi_turn(self, teacher: str, explained: list[dict[str, Any]]) -> None:
        """Explanations of k train items become the student's demonstrations; then an unexplained test."""
        base = [answer(r, "student_pre") == r["inputs"]["answer"] for r in self.test]
        self.rows.append(mean_row("multi_turn_accuracy", base, seed=self.ctx.seed, teacher=teacher, k=0))
        for k in self.params.multi_turn:
            demos = [
                {**demo(r["inputs"]), "explanation": r["outputs"]["teacher_explanation"],
                 "answer": answer(r, "teacher_answer") or r["inputs"]["answer"]}
                for r in explained[:k]
            ]  # fmt: skip
            tested = await self.run(
                [
                    {**r["inputs"], "id": f"{teacher}/k{k}/{r['inputs']['id']}", "student_demos": demos}
                    for r in self.test
                ],
                graph=None,
            )
            hits = [answer(t, "student_pre") == t["inputs"]["answer"] for t in tested]
            self.rows.append(mean_row("multi_turn_accuracy", hits, seed=self.ctx.seed, teacher=teacher, k=k))

    def write(self, store: Any) -> None:
        """The tables, plots and observations, through the run's one writer (never through a link)."""
        source = "+".join(sorted(sources(self.used))) or "none"
        for row in self.rows:
            row.labels.setdefault("probs", source)
        if self.table:
            store.write_file("accuracy_vs_budget.csv", to_csv(self.table))
            title = "Student accuracy vs intervention budget"
            store.write_file("accuracy_vs_budget.png", plot(self.table, x="budget", title=title))
        turns = [r.to_dict() for r in self.rows if r.name == "multi_turn_accuracy"]
        if turns:
            table = [
                {**r["labels"], "accuracy": r["value"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"]}
                for r in turns
            ]
            store.write_file("accuracy_vs_k.csv", to_csv(table))
            title = "Multi-turn: student accuracy vs explained demonstrations"
            store.write_file("accuracy_vs_k.png", plot(table, x="k", title=title))
        if self.observations:
            store.write_jsonl("observations.jsonl", self.observations)


async def teach(ctx: Any) -> list[MetricRow]:
    """Accuracy vs intervention budget per intervention function and teacher; multi-turn accuracy vs k."""
    run = Teaching(ctx)
    for teacher in ctx.params.teachers:
        await run.teach(teacher)
    run.write(ctx.store)
    return run.rows


def plot(table: list[dict[str, Any]], *, x: str, title: str) -> bytes:
    """One panel per teacher, one line per intervention function (multi-turn: per teacher), with 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teachers = list(dict.fromkeys(r["teacher"] for r in table))
    panels = teachers if x == "budget" else ["all"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False, sharey=True)
    for ax, panel in zip(axes[0], panels, strict=True):
        rows = [r for r in table if panel == "all" or r["teacher"] == panel]
        series = "intervention" if x == "budget" else "teacher"
        names = list(dict.fromkeys(r[series] for r in rows))
        step = 0.008 if x == "budget" else 0.08  # lines side by side, so the CIs do not hide each other
        for j, name in enumerate(names):
            line = sorted((r for r in rows if r[series] == name), key=lambda r: r[x])
            xs = [float(r[x]) + (j - (len(names) - 1) / 2) * step for r in line]
            ys = [r["accuracy"] for r in line]
            err = [[y - (r["ci_low"] if r["ci_low"] is not None else y) for y, r in zip(ys, line, strict=True)],
                   [(r["ci_high"] if r["ci_high"] is not None else y) - y for y, r in zip(ys, line, strict=True)]]  # fmt: skip
            ax.errorbar(xs, ys, yerr=err, marker="o", markersize=4, capsize=2, linewidth=1.2, label=name)
        ax.set_xlabel("intervention budget" if x == "budget" else "explained demonstrations k")
        ax.set_title(f"teacher: {panel}" if panel != "all" else title)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("student accuracy")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    return png.getvalue()
