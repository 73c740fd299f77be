"""The closed loop at toy size on the real embedded model: simulate -> export -> train -> run the checkpoint in the
same scenario. A few minutes on 2 CPU cores. Select with -m embedded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schola.train import main as train

pytestmark = pytest.mark.embedded
TINY = ["scenario=lbt", "scenario.data.problems=2", "scenario.data.variants=2", "scenario.roles.teacher.samples=3"]


def test_lbt_m2_pairs_train_the_teacher_and_the_checkpoint_answers_in_the_same_scenario(
    cli: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("trl")
    # 1-2. M1 on the embedded model, and M2's DPO pairs from its LbT scores.
    code, out = cli("run", *TINY, "scenario.variant=m2", "backend=embedded", f"hydra.run.dir={tmp_path / 'm2'}")
    assert code == 0, out
    exports = {e["name"]: e for e in json.loads((tmp_path / "m2" / "metrics.json").read_text())["exports"]}
    assert {"dpo_lbt", "dpo_correctness"} <= exports.keys()
    name = max(("dpo_lbt", "dpo_correctness"), key=lambda n: exports[n]["records"])
    assert exports[name]["records"] > 0, exports

    # 3. Two DPO steps on the embedded model's own weights (its GGUF file, converted once and cached).
    code = train(
        [
            "dpo",
            str(tmp_path / "m2" / f"{name}.jsonl"),
            "--out",
            str(tmp_path / "teacher"),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    checkpoint = tmp_path / "teacher" / "checkpoint"
    assert f"checkpoint: {checkpoint}" in printed and (tmp_path / "teacher" / "loss.png").is_file()

    # 4. Before and after like for like (README): both on the transformers backend at the same precision, the
    # trained checkpoint in the teacher's role only, the students the untrained model in both runs.
    for name, extra in (("before", []), ("after", [f"+backends.trained={{kind: transformers, model: '{checkpoint}'}}",
                                                   "scenario.roles.teacher.backend=trained"])):  # fmt: skip
        code, out = cli("run", *TINY, "scenario.data.problems=1", "backend=transformers", *extra,
                        f"hydra.run.dir={tmp_path / name}")  # fmt: skip
        assert code == 0, out
    lines = {n: [json.loads(x) for x in (tmp_path / n / "transcript.jsonl").read_text().splitlines()]
             for n in ("before", "after")}  # fmt: skip
    assert all(len(v) == 3 * (1 + 2) and all(t["completion_tokens"] > 0 for t in v) for v in lines.values())
    assert all(sum(t["agent"] != "teacher" for t in v) == 6 for v in lines.values())  # the students answered
    config = (tmp_path / "after" / "config.yaml").read_text()
    assert "backend: trained" in config and str(checkpoint) in config
    metrics = json.loads((tmp_path / "after" / "metrics.json").read_text())
    assert {m["labels"].get("rule") for m in metrics["metrics"] if m["name"] == "accuracy"} == {
        "MAJ",
        "MAX",
        "SUM",
        "AVG",
    }
