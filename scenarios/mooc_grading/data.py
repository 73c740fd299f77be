"""Courses, questions and student answers with instructor grades; one episode per question.

- `generator: rubric_coverage`: the bundled courses (`courses/*.yaml`, or your own course files). Each student
  (a persona with an `ability`) covers each rubric item with probability `ability` (seeded): a covered item
  adds the sentence that earns it, a missed one sometimes a plausible wrong sentence. So the instructor's grade
  is known exactly: the sum of the points of the items covered.
- `path`: a CSV of instructor-graded answers with columns `course, question, reference_answer, rubric,
  student_answer, instructor_grade, peer_grade_1..k` (any order; optional `student`, `max_points`; empty peer
  grades are missing). Rows of one (course, question) make one episode.
"""

from __future__ import annotations

import csv
import io
import random
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schola.data import DataFiles, csv_errors
from schola.errors import ConfigError

COURSES = Path(__file__).parent / "courses"
REQUIRED = ("course", "question", "reference_answer", "rubric", "student_answer", "instructor_grade")
_PEER = re.compile(r"^peer_grade_(\d+)$")


class Student(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    persona: str = ""
    ability: float = Field(ge=0, le=1, description="chance of covering each rubric item")


class MoocData(BaseModel):
    """`scenario.data` of mooc_grading."""

    model_config = ConfigDict(extra="forbid")
    generator: Literal["rubric_coverage"] | None = "rubric_coverage"
    courses: list[str] = Field(
        default_factory=lambda: ["astronomy", "astrobiology", "history_philosophy_astronomy"],
        description="bundled course names, or paths to course YAML files of the same format",
    )
    questions_per_course: int | None = Field(None, ge=1, description="the first N questions of each course; null: all")
    students: list[Student] = Field(
        default_factory=lambda: [
            Student(name="strong", persona="a diligent student", ability=0.9),
            Student(name="average", persona="an average student", ability=0.6),
            Student(name="weak", persona="a struggling student", ability=0.3),
        ]
    )
    path: str | None = Field(None, description="a CSV of instructor-graded answers instead of the generator")
    max_points: float = Field(10, gt=0, description="the grading scale of a CSV without a max_points column")


# ---- generated answers ------------------------------------------------------------------------


def rubric_text(items: list[dict[str, Any]]) -> str:
    return "\n".join(f"- ({item['points']} points) {item['criterion']}" for item in items)


def write_answer(rubric: list[dict[str, Any]], ability: float, rng: random.Random) -> tuple[str, float]:
    """A student's answer and its exact grade: each item is covered with probability `ability`; an item missed
    is replaced, half the time, by its wrong sentence (worth nothing)."""
    sentences, grade = [], 0.0
    for item in rubric:
        if rng.random() < ability:
            sentences.append(item["hit"])
            grade += item["points"]
        elif item.get("miss") and rng.random() < 0.5:
            sentences.append(item["miss"])
    return (" ".join(sentences) or "I am not sure."), grade


def load_course(name: str, *, source: str | None) -> dict[str, Any]:
    bundled = COURSES / f"{name}.yaml"
    files = DataFiles(source)
    path = bundled if bundled.exists() else files.path(name, key="scenario.data.courses")
    course = files.document(path, key="scenario.data.courses")
    try:
        if "course" not in course:  # every field `generate` reads is checked here (a KeyError there was exit 1)
            raise ConfigError("no 'course' (its name)", file=str(path), key="scenario.data.courses")
        for i, q in enumerate(course["questions"]):
            for key in ("id", "question", "reference_answer", "rubric"):
                if key not in q:
                    raise ConfigError(f"questions[{i}] has no '{key}'", file=str(path), key="scenario.data.courses")
            for j, item in enumerate(q["rubric"]):
                for key in ("criterion", "points", "hit"):
                    if key not in item:
                        raise ConfigError(
                            f"questions[{i}].rubric[{j}] has no '{key}'", file=str(path), key="scenario.data.courses"
                        )
                if isinstance(item["points"], bool) or not isinstance(item["points"], (int, float)):
                    raise ConfigError(
                        f"questions[{i}].rubric[{j}].points: expected a number",
                        file=str(path),
                        key="scenario.data.courses",
                    )
        return course  # type: ignore[no-any-return]
    except (KeyError, TypeError) as e:
        raise ConfigError(
            f"not a course file ({e}); see {COURSES / 'astronomy.yaml'}", file=str(path), key="scenario.data.courses"
        ) from None


def generate(data: MoocData, *, seed: int, source: str | None) -> list[dict[str, Any]]:
    episodes = []
    for name in data.courses:
        course = load_course(name, source=source)
        for q in course["questions"][: data.questions_per_course]:
            max_points = float(sum(item["points"] for item in q["rubric"]))
            answers = []
            for s in data.students:
                rng = random.Random(f"mooc/{seed}/{course['course']}/{q['id']}/{s.name}")
                text, grade = write_answer(q["rubric"], s.ability, rng)
                answers.append({"student": s.name, "answer": text, "instructor_grade": grade, "peer_grades": []})
            episodes.append({
                "id": f"{course['course']}/{q['id']}", "course": course["course"], "course_kind": course.get("kind", ""),
                "question_id": q["id"], "question": q["question"], "reference_answer": q["reference_answer"],
                "rubric": rubric_text(q["rubric"]), "max_points": max_points, "answers": answers,
            })  # fmt: skip
    return episodes


# ---- instructor-graded answers from a CSV -----------------------------------------------------


def _error(file: Path, message: str) -> ConfigError:
    return ConfigError(message, key="scenario.data.path", file=str(file))


def _grade(value: str | None, *, scale: float, file: Path, where: str, required: bool) -> float | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise _error(file, f"{where}: empty (a grade from 0 to {scale:g} is required)")
        return None
    try:
        grade = float(text)
    except ValueError:
        raise _error(file, f"{where}: {text!r} is not a number") from None
    if not 0 <= grade <= scale:
        raise _error(file, f"{where}: grade {grade:g} is outside the scale 0-{scale:g}")
    return grade


def load_csv(path: Path, *, max_points: float) -> list[dict[str, Any]]:
    """One episode per (course, question), its answers in file order."""
    text = DataFiles().text(path)
    if not text.strip():
        raise _error(path, f"empty file (expected a header row: {', '.join(REQUIRED)}, peer_grade_1, ...)")
    with csv_errors(path):
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h for h in reader.fieldnames or [] if h]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise _error(path, f"row 1 (header): missing column(s) {', '.join(missing)}")
        peers = sorted((c for c in header if _PEER.match(c)), key=lambda c: int(_PEER.match(c).group(1)))  # type: ignore[union-attr]
        episodes: dict[tuple[str, str], dict[str, Any]] = {}
        first_row: dict[tuple[str, str], int] = {}
        for row_number, row in enumerate(reader, 2):
            where = f"row {row_number} (line {reader.line_num})"
            for col in ("course", "question", "student_answer"):
                if not (row.get(col) or "").strip():
                    raise _error(path, f"{where}, column '{col}': empty")
            scale = _grade(row.get("max_points") or str(max_points), scale=float("inf"), file=path,
                           where=f"{where}, column 'max_points'", required=True)  # fmt: skip
            assert scale is not None
            key = (row["course"].strip(), row["question"].strip())
            if key not in episodes:
                first_row[key] = row_number
                qid = f"q{sum(k[0] == key[0] for k in episodes) + 1}"
                episodes[key] = {
                    "id": f"{key[0]}/{qid}", "course": key[0], "course_kind": "", "question_id": qid, "question": key[1],
                    "reference_answer": row["reference_answer"], "rubric": row["rubric"], "max_points": scale, "answers": [],
                }  # fmt: skip
            ep = episodes[key]
            for col in ("reference_answer", "rubric", "max_points"):
                value = scale if col == "max_points" else row[col]
                if value != ep[col]:
                    raise _error(
                        path, f"{where}, column '{col}': differs from row {first_row[key]} of the same question"
                    )
            grade = _grade(
                row["instructor_grade"],
                scale=scale,
                file=path,
                where=f"{where}, column 'instructor_grade'",
                required=True,
            )
            peer_grades = [
                g for c in peers
                if (g := _grade(row.get(c), scale=scale, file=path, where=f"{where}, column '{c}'", required=False)) is not None
            ]  # fmt: skip
            student = (row.get("student") or "").strip() or f"row{row_number}"
            if any(a["student"] == student for a in ep["answers"]):
                raise _error(path, f"{where}, column 'student': '{student}' answers this question twice")
            ep["answers"].append(
                {
                    "student": student,
                    "answer": row["student_answer"],
                    "instructor_grade": grade,
                    "peer_grades": peer_grades,
                }
            )
    if not episodes:
        raise _error(path, "no rows")
    return list(episodes.values())


def load(data: MoocData, *, seed: int, source: str | None = None, **_: Any) -> list[dict[str, Any]]:
    if data.path:
        return load_csv(DataFiles(source).path(data.path), max_points=data.max_points)
    return generate(data, seed=seed, source=source)
