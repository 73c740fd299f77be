"""Every language-model scenario through the path a vLLM server takes: the `openai` backend against a real
OpenAI-compatible server (python -m llama_cpp.server) on 127.0.0.1, at tiny sizes. Select with -m server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import read_jsonl

pytestmark = pytest.mark.server

TINY = {
    "spp": ["scenario.variant=standard", "scenario.data.items=1"],
    "tom_teaching": ["scenario.data.test=2", "scenario.data.train=3", "scenario.params.demos=1"],
    "mooc_grading": ["scenario.data.courses=[astronomy]", "scenario.data.questions_per_course=1"],
    "sight": ["scenario.data.per_category=1", "scenario.params.categories=[gratitude]"],
    "instruct_mtl": ["scenario.data.instances=1", "scenario.data.tasks=[biomedical_yesno]"],
    "lbt": ["scenario.data.problems=1", "scenario.roles.teacher.samples=2"],
}


@pytest.mark.parametrize("scenario", sorted(TINY))
def test_a_scenario_runs_against_a_local_openai_compatible_server(
    cli: Any, tmp_path: Path, llama_server: str, scenario: str
) -> None:
    run = tmp_path / "r"
    code, out = cli(
        "run", f"scenario={scenario}", "backend=openai", f"backend.base_url={llama_server}", "backend.model=smollm2",
        "backend.max_tokens=24", *TINY[scenario], f"hydra.run.dir={run}",
    )  # fmt: skip
    assert code == 0, out
    transcript = read_jsonl(run / "transcript.jsonl")
    assert transcript and all(not t["cached"] for t in transcript)  # every reply came from the server
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["metrics"]
    assert metrics["usage"]["total"]["requests"] >= 1
    if scenario == "tom_teaching":  # option probabilities reached the rows, labelled with how they were found
        labels = {r["labels"].get("probs") for r in metrics["metrics"] if r["name"] == "accuracy"}
        assert labels and labels <= {"logprobs", "samples"}
