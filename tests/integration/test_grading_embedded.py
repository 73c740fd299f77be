"""mooc_grading and sight on the real embedded model (SmolLM2-135M), at the smallest sizes. Select with -m embedded."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.embedded


def model_lines(run: Path, agent: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run / "transcript.jsonl").read_text(encoding="utf-8").splitlines()]
    return [x for x in lines if x["agent"] == agent]


def test_mooc_grading_runs_on_the_embedded_model(cli: Any, tmp_path: Path) -> None:
    run = tmp_path / "r"
    code, out = cli(
        "run", "scenario=mooc_grading", "backend=embedded", "scenario.variant=answer_llm_rubric",
        "scenario.data.courses=[history_philosophy_astronomy]", "scenario.data.questions_per_course=1",
        "scenario.roles.grader.sampling.max_tokens=24", "scenario.roles.rubric_writer.sampling.max_tokens=24",
        f"hydra.run.dir={run}",
    )  # fmt: skip
    assert code == 0, out
    assert len(model_lines(run, "rubric_writer")) == 1
    grader = model_lines(run, "grader")
    assert len(grader) == 3 and all(0 < x["completion_tokens"] <= 24 for x in grader)
    assert all("Rubric (10 points)" in x["prompt"] for x in grader)
    table = list(csv.DictReader((run / "grading.csv").open(encoding="utf-8")))
    assert [r["course"] for r in table] == ["history_philosophy_astronomy", "all"]
    assert float(table[-1]["peer_mae"]) >= 0 and (run / "grading.png").exists()


def test_sight_runs_on_the_embedded_model(cli: Any, tmp_path: Path) -> None:
    run = tmp_path / "r"
    code, out = cli(
        "run", "scenario=sight", "backend=embedded", "scenario.data.per_category=1",
        "scenario.params.categories=[gratitude,setup]", "scenario.roles.models.0.sampling.max_tokens=8",
        f"hydra.run.dir={run}",
    )  # fmt: skip
    assert code == 0, out
    model = model_lines(run, "M")
    assert len(model) == 2 * 2 and all(x["completion_tokens"] > 0 for x in model)
    labels = list(csv.DictReader((run / "labels.csv").open(encoding="utf-8")))
    assert len(labels) == 4 and all(r["H1"] in ("0", "1") for r in labels)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    tokens = [m for m in metrics if m["name"] == "tokens_per_comment"]
    assert tokens and tokens[0]["value"] == pytest.approx(
        sum(x["prompt_tokens"] + x["completion_tokens"] for x in model) / 2
    )
