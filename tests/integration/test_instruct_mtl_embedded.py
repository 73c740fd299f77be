"""instruct_mtl on the real embedded model (SmolLM2-135M), at the smallest size. Select with -m embedded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.embedded


def test_instruct_mtl_runs_every_arm_on_the_embedded_model(cli: Any, tmp_path: Path) -> None:
    code, out = cli(
        "run", "scenario=instruct_mtl", "backend=embedded", "scenario.data.tasks=[biomedical_yesno]",
        "scenario.data.instances=1", "scenario.params.shots=[0,1]", "scenario.roles.student.sampling.max_tokens=8",
        f"hydra.run.dir={tmp_path / 'r'}",
    )  # fmt: skip
    assert code == 0, out
    run = tmp_path / "r"
    lines = [json.loads(x) for x in (run / "transcript.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(
        t["completion_tokens"] > 0 for t in lines
    )  # instruction 0 and 1, single-task, input only
    assert any(
        t["prompt"].startswith("Instruction: Definition: ") and "Positive Examples: [[" in t["prompt"] for t in lines
    )
    metrics = json.loads((run / "metrics.json").read_text())
    arms = {
        (m["labels"]["arm"], m["labels"]["shots"])
        for m in metrics["metrics"]
        if m["name"] == "rouge_l" and "task" not in m["labels"]
    }
    assert arms == {("instruction", "0"), ("instruction", "1"), ("single_task", "1"), ("no_instruction", "0")}
    assert all(0.0 <= m["value"] <= 1.0 for m in metrics["metrics"] if m["name"] == "rouge_l")
    assert {e["name"] for e in metrics["exports"]} == {"sft_instructions", "sft_no_instructions"}
