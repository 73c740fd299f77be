"""The grading comparison per course, as a table and a plot: MAE against the instructor for the LLM grader and
for the peers' median, share within one point, correlation, and the paired test of the MAE difference; all from
Schola's generic statistics (`schola.stats`), over the answer episodes. Writes `grading.csv`, `grades.csv`
and `grading.png`; returns the LLM's parse rate per course (the generic stages in the YAML give the rest)."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

from schola import stats
from schola.metrics import MetricRow, mean_row
from schola.store import to_csv

GOLD, LLM, PEER, COURSE = "inputs.instructor_grade", "outputs.llm_grade", "outputs.peer_grade", "inputs.course"


def _pick(rows: list[MetricRow], stat: str) -> dict[str, MetricRow]:
    """Rows of one statistic by course ('all' for the pooled row)."""
    return {r.labels.get("course", "all"): r for r in rows if r.name.split(".")[-1] == stat}


def course_table(view: Any, courses: list[str]) -> list[dict[str, Any]]:
    """One row per course and one for all courses pooled."""
    llm = stats.error(view, prediction=LLM, reference=GOLD, tolerance=1, by=COURSE)
    peer = stats.error(view, prediction=PEER, reference=GOLD, tolerance=1, by=COURSE)
    diff = stats.compare(view, reference=GOLD, a=LLM, b=PEER, by=COURSE)
    llm_r = stats.correlation(view, x=LLM, y=GOLD, by=COURSE)
    peer_r = stats.correlation(view, x=PEER, y=GOLD, by=COURSE)
    picked = {
        "llm_mae": _pick(llm, "mae"), "peer_mae": _pick(peer, "mae"),
        "llm_within_1": _pick(llm, "within_tolerance"), "peer_within_1": _pick(peer, "within_tolerance"),
        "llm_pearson": _pick(llm_r, "pearson_r"), "peer_pearson": _pick(peer_r, "pearson_r"),
        "llm_spearman": _pick(llm_r, "spearman_rho"), "peer_spearman": _pick(peer_r, "spearman_rho"),
        "mae_difference": _pick(diff, "mae_difference"), "p_value": _pick(diff, "mae_difference_p_value"),
    }  # fmt: skip
    table = []
    for course in [*courses, "all"]:
        answers = [r for r in view.results if course in ("all", r["inputs"]["course"])]
        row: dict[str, Any] = {"course": course, "answers": len(answers)}
        for column, by_course in picked.items():
            found = by_course.get(course)
            row[column] = found.value if found else None
            if column.endswith("mae") and found:
                row[column + "_ci"] = None if found.ci_low is None else f"{found.ci_low:.2f}-{found.ci_high:.2f}"
        row["llm_parsed"] = (
            sum(r["outputs"].get("llm_grade") is not None for r in answers) / len(answers) if answers else None
        )
        table.append(row)
    return table


def grades_csv(results: list[dict[str, Any]]) -> str:
    rows = [
        {
            "course": r["inputs"]["course"], "question": r["inputs"]["question_id"], "student": r["inputs"]["student"],
            "instructor_grade": r["inputs"]["instructor_grade"], "llm_grade": r["outputs"].get("llm_grade"),
            "peer_grade": r["outputs"].get("peer_grade"),
            "peer_grades": " ".join(f"{g:g}" for g in (r["inputs"].get("recorded_peer_grades") or r["outputs"].get("peer_grades") or []) if g is not None),
        }
        for r in results
    ]  # fmt: skip
    return to_csv(rows)


def plot(table: list[dict[str, Any]], prompt: str) -> bytes:
    """MAE against the instructor per course: the LLM grader beside the peers' median, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(table))
    for offset, who, label in ((-0.2, "llm", f"LLM ({prompt})"), (0.2, "peer", "peers (median)")):
        values = [r[f"{who}_mae"] if r[f"{who}_mae"] is not None else 0.0 for r in table]
        ax.bar([x + offset for x in xs], values, width=0.4, label=label)
    ax.set_xticks(list(xs), [r["course"].replace("_", "\n") for r in table], fontsize=8)
    ax.set_ylabel("mean absolute error vs instructor (points)")
    ax.set_title("Grading agreement with the instructor (lower is better)")
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    return png.getvalue()


def report(ctx: Any) -> list[MetricRow]:
    """`grading.csv` (per course and pooled: MAE of LLM and peers with CIs, within one point, Pearson and
    Spearman, MAE difference and its p-value, the LLM's parse rate), `grades.csv` (every answer), `grading.png`."""
    answers = [r for r in ctx.results if "student" in (r.get("inputs") or {})]
    courses = list(dict.fromkeys(r["inputs"]["course"] for r in answers))
    prompt = str(getattr(ctx.scenario, "variant", None) or "-")
    table = course_table(SimpleNamespace(results=answers, seed=ctx.seed), courses)
    ctx.store.write_file("grading.csv", to_csv([{"prompt": prompt, **r} for r in table]))
    ctx.store.write_file("grades.csv", grades_csv(answers))
    ctx.store.write_file("grading.png", plot(table, prompt))
    parsed = [
        mean_row(
            "llm_parse_rate", [r["outputs"].get("llm_grade") is not None for r in answers], seed=ctx.seed, prompt=prompt
        )
    ]
    for course in courses:
        flags = [r["outputs"].get("llm_grade") is not None for r in answers if r["inputs"]["course"] == course]
        parsed.append(mean_row("llm_parse_rate", flags, seed=ctx.seed, prompt=prompt, course=course))
    return parsed
