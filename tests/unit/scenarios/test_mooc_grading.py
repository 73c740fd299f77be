from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from schola.scenarios.mooc_grading import grade, median
from schola.scenarios.mooc_grading.data import MoocData, generate, load_course, load_csv, write_answer
from schola.scenarios.mooc_grading.report import course_table
from schola.scenarios.mooc_grading.roles import PeerConfig, SimulatedPeer, peer_grade

from schola.errors import ConfigError
from schola.roles import ActRequest

# ---- reading a grade, aggregating peers ----


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("The answer names the tilt. Grade: 7", 7.0),
        ("Grade: 3. After a second look... Grade: 8.5", 8.5),  # the last one counts
        ("**Score:** 4/5", 8.0),  # rescaled to the 10-point scale
        ("I give it a grade of 6 out of 10.", 6.0),
        ("Grade: 12", None),  # off the scale
        ("Grade: -1", None),
        ("It is a good answer.", None),
        (9, 9.0),  # a simulated peer's number
        (None, None),
    ],
)
def test_grade_is_the_last_stated_grade_on_the_scale(reply: Any, expected: float | None) -> None:
    assert grade(reply, max_points=10) == expected


def test_peer_grade_is_the_median_of_the_peers_or_of_the_recorded_grades() -> None:
    assert median([3.0, 9.0, 7.0]) == 7.0
    assert median([3.0, None, 6.0]) == 4.5
    assert median([3.0, 9.0, 7.0], recorded=[2.0, 2.0, 10.0, 1.0]) == 2.0
    assert median([], recorded=[]) is None and median([None]) is None


def test_simulated_peer_grades_by_care_and_leniency() -> None:
    rng = random.Random(0)
    assert [peer_grade(6, 10, care=1, leniency=0, noise=0, rng=rng) for _ in range(5)] == [6.0] * 5
    assert peer_grade(9, 10, care=1, leniency=2, noise=0, rng=rng) == 10.0  # kept on the scale
    assert peer_grade(1, 10, care=1, leniency=-3, noise=0, rng=rng) == 0.0
    skims = [peer_grade(0, 10, care=0, leniency=0, noise=0, rng=rng) for _ in range(200)]
    assert min(skims) >= 5 and max(skims) <= 10  # a generous guess whatever the answer


async def test_peer_role_reads_the_instructor_grade_from_the_episode() -> None:
    peer = SimulatedPeer("careful", PeerConfig(role="mooc_peer", care=1.0, noise=0.0, leniency=1.0), None)
    reply = await peer.act(
        ActRequest(prompt="-", state={"instructor_grade": 4.0, "max_points": 10.0, "episode_id": "q/s"})
    )
    assert reply.data == 5.0 and grade(reply.text, max_points=10) == 5.0
    assert (await peer.act(ActRequest(prompt="-", state={"episode_id": "q/s"}))).data is None


# ---- generated answers with known grades ----


def test_answer_grade_is_the_points_of_the_rubric_items_it_covers() -> None:
    rubric = load_course("astronomy", source=None)["questions"][0]["rubric"]
    full, top = write_answer(rubric, 1.0, random.Random(0))
    assert top == 10.0 and all(item["hit"] in full for item in rubric)
    for seed in range(20):
        text, points = write_answer(rubric, 0.5, random.Random(seed))
        assert points == sum(item["points"] for item in rubric if item["hit"] in text)
        assert not any(item.get("miss") and item["miss"] in text and item["hit"] in text for item in rubric)
    empty, zero = write_answer(rubric, 0.0, random.Random(1))
    assert zero == 0.0 and not any(item["hit"] in empty for item in rubric)


def test_bundled_courses_are_three_kinds_and_generation_is_seeded() -> None:
    kinds = {load_course(c, source=None)["kind"] for c in MoocData().courses}
    assert kinds == {"fact-heavy", "argument-heavy", "humanities"}
    eps = generate(MoocData(), seed=0, source=None)
    assert eps == generate(MoocData(), seed=0, source=None) != generate(MoocData(), seed=1, source=None)
    assert len(eps) == 6 and all(e["max_points"] == 10 and len(e["answers"]) == 3 for e in eps)
    assert all(e["rubric"].startswith("- (") for e in eps)
    strong = [a["instructor_grade"] for e in eps for a in e["answers"] if a["student"] == "strong"]
    weak = [a["instructor_grade"] for e in eps for a in e["answers"] if a["student"] == "weak"]
    assert sum(strong) > sum(weak)
    assert len(generate(MoocData(questions_per_course=1, courses=["astronomy"]), seed=0, source=None)) == 1


# ---- instructor-graded answers from a CSV ----

GOOD = (
    "course,question,reference_answer,rubric,student_answer,instructor_grade,peer_grade_1,peer_grade_2,student\n"
    'astro,Why seasons?,Axial tilt.,"- (5 points) tilt\n- (5 points) sunlight","The tilt, mostly.",8,7,9,ana\n'
    'astro,Why seasons?,Axial tilt.,"- (5 points) tilt\n- (5 points) sunlight",Distance.,2,6,,ben\n'
    "astro,What is a light-year?,A distance.,- (10 points) distance,A time.,0,3,1,ana\n"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "graded.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_of_one_question_make_one_episode(tmp_path: Path) -> None:
    eps = load_csv(write(tmp_path, GOOD), max_points=10)
    assert [e["id"] for e in eps] == ["astro/q1", "astro/q2"]
    assert eps[0]["rubric"] == "- (5 points) tilt\n- (5 points) sunlight"
    assert eps[0]["answers"] == [
        {"student": "ana", "answer": "The tilt, mostly.", "instructor_grade": 8.0, "peer_grades": [7.0, 9.0]},
        {"student": "ben", "answer": "Distance.", "instructor_grade": 2.0, "peer_grades": [6.0]},  # empty: missing
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "empty file"),
        (GOOD.replace("instructor_grade,", "grade,", 1), r"row 1 \(header\): missing column\(s\) instructor_grade"),
        (
            GOOD.replace(",8,7,9,", ",11,7,9,"),
            r"row 2 \(line 3\), column 'instructor_grade': grade 11 is outside the scale 0-10",
        ),
        (
            GOOD.replace(",0,3,1,", ",0,3,-1,"),
            r"row 4 \(line 6\), column 'peer_grade_2': grade -1 is outside the scale",
        ),
        (GOOD.replace(",2,6,,", ",two,6,,"), r"row 3 \(line 5\), column 'instructor_grade': 'two' is not a number"),
        (
            GOOD.replace(
                'Axial tilt.,"- (5 points) tilt\n- (5 points) sunlight",Distance.',
                'Tilt.,"- (5 points) tilt\n- (5 points) sunlight",Distance.',
            ),
            r"row 3 \(line 5\), column 'reference_answer': differs from row 2",
        ),
        (GOOD.replace(",ben\n", ",ana\n"), r"row 3 \(line 5\), column 'student': 'ana' answers this question twice"),
        (GOOD.split("\n")[0] + "\n", "no rows"),
    ],
)
def test_bad_csv_is_one_error_naming_file_row_and_column(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=where) as e:
        load_csv(path, max_points=10)
    assert e.value.file == str(path)


def test_a_max_points_column_sets_each_questions_scale(tmp_path: Path) -> None:
    text = (
        GOOD.replace(",student\n", ",student,max_points\n")
        .replace(",ana\n", ",ana,20\n")
        .replace(",ben\n", ",ben,20\n")
    )
    eps = load_csv(write(tmp_path, text.replace(",8,7,9,", ",18,7,9,")), max_points=10)
    assert eps[0]["max_points"] == 20 and eps[0]["answers"][0]["instructor_grade"] == 18


# ---- the statistics, on hand-computed cases ----


def answer(course: str, gold: float, llm: float | None, peer: float | None) -> dict[str, Any]:
    return {"inputs": {"course": course, "instructor_grade": gold}, "outputs": {"llm_grade": llm, "peer_grade": peer}}


def test_course_table_on_hand_computed_grades() -> None:
    results = [
        answer("a", 5, 5, 6),
        answer("a", 8, 8, 10),
        answer("a", 2, 2, 5),
        answer("b", 4, 6, 4),
        answer("b", 6, None, 9),
    ]
    table = {r["course"]: r for r in course_table(SimpleNamespace(results=results, seed=0), ["a", "b"])}
    a = table["a"]
    assert a["answers"] == 3 and a["llm_mae"] == 0.0 and a["peer_mae"] == pytest.approx(2.0)  # |1|, |2|, |3|
    assert a["llm_within_1"] == 1.0 and a["peer_within_1"] == pytest.approx(1 / 3)
    assert a["mae_difference"] == pytest.approx(-2.0)
    # paired bootstrap test: differences (-1, -2, -3), mean -2; a resample's mean lies in [-3, -1], so shifted to
    # the null none is 2 or more from zero: p = 1 / (1 + 10,000)
    assert a["p_value"] == pytest.approx(1 / 10_001)
    assert a["llm_pearson"] == pytest.approx(1.0)
    b = table["b"]
    assert b["llm_mae"] == 2.0 and b["llm_parsed"] == 0.5  # the unparsed answer is left out of the LLM's MAE
    assert b["peer_mae"] == pytest.approx(1.5)  # |0|, |3|
    pooled = table["all"]
    assert pooled["answers"] == 5 and pooled["llm_mae"] == pytest.approx(0.5)  # (0 + 0 + 0 + 2) / 4


# ---- the scenario on the scripted backend ----


def transcript(run: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run / "transcript.jsonl").read_text(encoding="utf-8").splitlines()]


def graded(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "grades.csv").open(encoding="utf-8")))


@pytest.mark.parametrize(
    ("variant", "llm_grade", "in_prompt", "not_in_prompt"),
    [
        ("answer", 6.0, "comparing it with the instructor's answer", "Rubric ("),
        ("answer_rubric", 7.0, "- (3 points) Names the tilt of Earth's axis", "comparing it with"),
        ("answer_llm_rubric", 7.0, "- (5 points) States the main idea.", "Names the tilt"),
    ],
)
def test_each_grader_prompt_grades_every_answer(
    cli: Any, tmp_path: Path, variant: str, llm_grade: float, in_prompt: str, not_in_prompt: str
) -> None:
    run = tmp_path / "r"
    code, out = cli(
        "run", "backend=scripted", "scenario=mooc_grading", f"scenario.variant={variant}", f"hydra.run.dir={run}"
    )
    assert code == 0, out
    lines = transcript(run)
    grader = [x for x in lines if x["agent"] == "grader"]
    assert len(grader) == 18  # 6 questions x 3 students
    astronomy = [x for x in grader if "Why does Earth have seasons?" in x["prompt"]]
    assert astronomy and all(in_prompt in x["prompt"] and not_in_prompt not in x["prompt"] for x in astronomy)
    writer = [x for x in lines if x["agent"] == "rubric_writer"]
    assert len(writer) == (6 if variant == "answer_llm_rubric" else 0)  # once per question, before the grading
    rubrics = [json.loads(x) for x in (run / "rubrics.jsonl").read_text().splitlines()]
    assert len(rubrics) == 6
    assert {r["written_by"] for r in rubrics} == {"rubric_writer" if variant == "answer_llm_rubric" else "instructor"}
    rows = graded(run)
    assert len(rows) == 18 and all(float(r["llm_grade"]) == llm_grade for r in rows)
    assert all(float(r["peer_grade"]) == sorted(float(g) for g in r["peer_grades"].split())[1] for r in rows)
    table = {r["course"]: r for r in csv.DictReader((run / "grading.csv").open(encoding="utf-8"))}
    assert set(table) == {"astronomy", "astrobiology", "history_philosophy_astronomy", "all"}
    assert table["all"]["prompt"] == variant
    expected = sum(abs(llm_grade - float(r["instructor_grade"])) for r in rows) / 18
    assert float(table["all"]["llm_mae"]) == pytest.approx(expected, abs=1e-4)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    mae = [m for m in metrics if m["name"] == "llm.mae" and m["labels"].get("course") is None]
    assert mae and mae[0]["value"] == pytest.approx(expected) and mae[0]["n"] == 18
    assert any(m["name"] == "llm_vs_peers.mae_difference_p_value" for m in metrics)
    assert (run / "grading.png").stat().st_size > 1000


def test_a_files_peer_grades_replace_the_simulated_peers(cli: Any, tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    run = tmp_path / "r"
    code, out = cli(
        "run", "backend=scripted", "scenario=mooc_grading", "scenario.data.path=graded.csv", f"hydra.run.dir={run}"
    )
    assert code == 0, out
    assert not [x for x in transcript(run) if x["agent"].endswith("_peer")]
    medians = {(r["question"], r["student"]): float(r["peer_grade"]) for r in graded(run)}
    assert medians == {("q1", "ana"): 8.0, ("q1", "ben"): 6.0, ("q2", "ana"): 2.0}  # of (7, 9), (6), (3, 1)


def test_bad_grades_stop_the_run_before_it_starts(cli: Any, tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace(",8,7,9,", ",8,7,19,"))
    code, out = cli(
        "run",
        "backend=scripted",
        "scenario=mooc_grading",
        "scenario.data.path=graded.csv",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert code == 2
    assert "graded.csv" in out and "row 2" in out and "peer_grade_2" in out
    assert not (tmp_path / "r" / "results.jsonl").exists()


def test_a_grade_that_cannot_be_read_is_left_out_of_the_mae_and_the_caption_says_so(cli: Any, tmp_path: Path) -> None:
    """The embedded model wrote "Grade: n" in 3 of 18 replies, so llm.mae rested on 3 values: n says how many
    grades it rests on, llm_parse_rate their share, and the caption line says both."""
    run = tmp_path / "r"
    rules = "[{match: seasons, reply: 'The student covers the tilt.'}, {match: 'Grade the student', reply: 'Grade: 7'}]"
    code, out = cli("run", "backend=scripted", "scenario=mooc_grading", f"scenario.scripted={rules}",
                    f"hydra.run.dir={run}")  # fmt: skip
    assert code == 0, out
    saved = json.loads((run / "metrics.json").read_text())
    overall = {m["name"]: m for m in saved["metrics"] if m["labels"].get("course") is None}
    unread = sum("seasons" in x["prompt"] for x in transcript(run) if x["agent"] == "grader")
    assert unread == 3 and overall["llm.mae"]["n"] == 18 - unread
    assert overall["llm_parse_rate"]["value"] == pytest.approx(15 / 18)
    assert "n counts them" in saved["caption"] and "llm_parse_rate" in saved["caption"]


def test_a_run_stopped_mid_grading_shows_what_the_finished_answers_say(
    cli: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The budget runs out in the grading stage after 8 of 18 answers: the table is computed over those 8 (it was
    empty: the stages were rerun with the next stage round, and the finished episodes were refused as 'already
    run with other inputs', which was false), and a resume with a larger budget grades the other 10."""
    caplog.set_level(logging.INFO, logger="schola")
    run = tmp_path / "r"
    common = ("backend=scripted", "scenario=mooc_grading", "run.concurrency=1")
    code, out = cli("run", *common, "budget.max_requests=8", f"hydra.run.dir={run}")
    assert code == 4, out
    results = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    graded = [r for r in results if "student" in r["inputs"]]
    assert len(graded) == 8
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["status"] == "budget"
    overall = {m["name"]: m for m in saved["metrics"] if m["labels"].get("course") is None}
    assert "already run" not in caplog.text + out, caplog.text
    assert overall["llm.mae"]["n"] == overall["peers.mae"]["n"] == 8 and overall["llm.mae"]["ci_low"] is not None
    code, out = cli("run", f"resume={run}", "budget.max_requests=100")
    assert code == 0, out
    saved = json.loads((run / "metrics.json").read_text())
    overall = {m["name"]: m for m in saved["metrics"] if m["labels"].get("course") is None}
    assert overall["llm.mae"]["n"] == 18
