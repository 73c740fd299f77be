"""Large Language Models As MOOCs Graders (Golchin, Garuda, Impey, Wenger; COLING 2025): can LLMs replace peers?

Protocol (no public code; SCENARIOS.md section 4):
  1. Per course and question, the instructor gives a reference answer, a rubric and a grade for every student
     answer (here: answers written by rubric coverage, so the instructor grade follows from the rubric; or a CSV
     of instructor-graded answers).
  2. The rubric writer runs first where the prompt needs it: one LLM-written rubric per question (main episodes,
     one per question; the rubric each question was graded with is saved as `rubrics.jsonl`).
  3. Every answer (an episode of the `grading` graph, started by the `mooc_grading.grade` stage) is graded by
     the LLM grader, zero-shot chain of thought, with one of three prompts (`scenario.variant`): the
     instructor's answer (`answer`); the answer and the rubric (`answer_rubric`); the answer and the LLM-written
     rubric (`answer_llm_rubric`); and by several peers (personas of varying care and leniency), whose median
     is the peer grade, as MOOCs aggregate it.
  4. Per course: MAE against the instructor for the LLM and for the peers, the paired test of their difference
     (p-value), Pearson/Spearman correlation, share within one point. The paper (GPT-4 and GPT-3.5, three
     astronomy courses): answer + rubric agrees best with the instructor and beats peer grading; the humanities
     course (History and Philosophy of Astronomy) is the hardest to grade.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from schola.scenarios.mooc_grading.data import MoocData, load
from schola.scenarios.mooc_grading.report import report as report_stage

from schola.metrics import MetricRow
from schola.scenario import Scenario

__all__ = ["grade", "median", "scenario"]

_NUMBER = r"(-?\d+(?:\.\d+)?)"
_GRADE = re.compile(
    r"(?:grade|score)\s*(?:is|of|:|=)?\s*\**\s*" + _NUMBER + r"(?:\s*(?:/|out of)\s*" + _NUMBER + ")?", re.I
)


def grade(reply: Any, *, max_points: float) -> float | None:
    """The grade in a grader's reply: the last "Grade: n" (or "Score: n", "n/m", "n out of m", rescaled to
    `max_points`); a number as is (a simulated peer's). None when there is none or it is off the scale."""
    if reply is None or isinstance(reply, bool):
        return None
    if isinstance(reply, int | float):
        value = float(reply)
    else:
        found = _GRADE.findall(str(reply))
        if not found:
            return None
        number, out_of = found[-1]
        value = float(number)
        if out_of and float(out_of) > 0 and float(out_of) != max_points:
            value = value / float(out_of) * max_points
    return value if 0 <= value <= max_points else None


def median(grades: list[Any] | None, *, recorded: list[Any] | None = None) -> float | None:
    """The peer grade of an answer: the median of its peers' grades (the recorded ones where the data has them);
    None when no peer gave one."""
    values = [float(g) for g in (recorded or grades or []) if g is not None]
    return float(statistics.median(values)) if values else None


async def grade_answers(ctx: Any, *, graph: str = "grading") -> list[MetricRow]:
    """Step 3: every answer of every question becomes an episode of `graph`, carrying its question and the
    rubric the question's episode chose (the instructor's, or the rubric writer's); `rubrics.jsonl` keeps them."""
    questions = [r for r in ctx.results if "answers" in (r.get("inputs") or {})]
    episodes, rubrics = [], []
    for r in questions:
        q, rubric = r["inputs"], (r.get("outputs") or {}).get("grading_rubric")
        written_by = "instructor" if rubric == q["rubric"] else "rubric_writer"
        rubrics.append({"question": q["id"], "course": q["course"], "written_by": written_by, "rubric": rubric})
        for a in q["answers"]:
            episodes.append({
                "id": f"{q['id']}/{a['student']}", "course": q["course"], "question_id": q["question_id"],
                "question": q["question"], "reference_answer": q["reference_answer"], "rubric": q["rubric"],
                "grading_rubric": rubric, "max_points": q["max_points"], "student": a["student"],
                "answer": a["answer"], "instructor_grade": a["instructor_grade"], "recorded_peer_grades": a["peer_grades"],
            })  # fmt: skip
    ctx.store.write_jsonl("rubrics.jsonl", rubrics)
    await ctx.run_episodes(episodes, graph=graph)
    return []


scenario = Scenario(
    name="mooc_grading",
    description=__doc__.splitlines()[0],
    load=load,
    data=MoocData,
    scorers={"grade": grade, "median": median},
    stages={"grade": grade_answers, "report": report_stage},
)
