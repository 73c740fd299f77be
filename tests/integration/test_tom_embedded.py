"""tom_teaching end to end on the real embedded model (SmolLM2-135M), at the smallest size. Select with -m embedded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.embedded


def argmax(probs: dict[str, Any], options: list[str]) -> str:
    p = probs["p"]
    return max(options, key=lambda o: (p.get(o, 0.0), -options.index(o)))


def test_tom_teaching_runs_on_the_embedded_model_and_budget_ends_are_pre_and_post(cli: Any, tmp_path: Path) -> None:
    run = tmp_path / "r"
    code, out = cli(
        "run", "scenario=tom_teaching", "backend=embedded", "scenario.data.test=2", "scenario.data.train=3",
        "scenario.params.demos=1", "scenario.params.budgets=[0.0,0.5,1.0]", "scenario.params.intervention=[random,eu]",
        "scenario.roles.student.sampling.max_tokens=16", "scenario.roles.teacher.sampling.max_tokens=16",
        f"hydra.run.dir={run}",
    )  # fmt: skip
    assert code == 0, out
    rows = json.loads((run / "metrics.json").read_text())["metrics"]
    acc = {(r["labels"]["intervention"], r["labels"]["budget"]): r for r in rows if r["name"] == "accuracy"}
    assert len(acc) == 6 and all(r["n"] == 2 and r["labels"]["probs"] == "logprobs" for r in acc.values())
    results = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    own = sorted((r["episode"], r) for r in results if not r["round"] and r["inputs"]["split"] == "test")
    told = sorted((r["inputs"]["id"], r) for r in results if r["episode"].startswith("unpersonalized/test/"))
    pre = [argmax(r["outputs"]["student_pre"], r["inputs"]["options"]) == r["inputs"]["answer"] for _, r in own]
    post = [argmax(r["outputs"]["student_post"], r["inputs"]["options"]) == r["inputs"]["answer"] for _, r in told]
    for fn in ("random", "eu"):  # no explanation at B=0, every item explained at B=1
        assert acc[(fn, 0.0)]["value"] == pytest.approx(sum(pre) / 2)
        assert acc[(fn, 1.0)]["value"] == pytest.approx(sum(post) / 2)
    assert (run / "accuracy_vs_budget.png").read_bytes()[:4] == b"\x89PNG"
