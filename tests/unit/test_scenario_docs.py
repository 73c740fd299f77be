"""Each scenario doc states its default sizes and what a run with them took on the embedded model in a block that
docs/measure.py generates from a run (ledger.json, metrics.json): a changed default fails here until the doc is
measured again (arte's doc said 3 preference and 3 test items, 128 calls, while the shipped config had 2 and 2)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
_spec = importlib.util.spec_from_file_location("measure", ROOT / "docs" / "measure.py")
assert _spec and _spec.loader
measure = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(measure)
NAMES = sorted(p.stem for p in (ROOT / "conf" / "scenario").glob("*.yaml"))


@pytest.mark.parametrize("name", NAMES)
def test_a_scenario_doc_states_the_shipped_configs_sizes_in_its_generated_block(name: str) -> None:
    doc = (ROOT / "docs" / "scenarios" / f"{name}.md").read_text()
    found = measure.BLOCK.findall(doc)
    assert len(found) == 1, f"docs/scenarios/{name}.md: no measured block; write it with python docs/measure.py {name}"
    sizes = measure.SIZES.search(found[0])
    assert sizes is not None and sizes.group(1) == measure.shipped_sizes(name), (
        f"docs/scenarios/{name}.md states sizes the shipped config does not have: python docs/measure.py {name}"
    )


def test_arte_states_no_typed_sizes_or_counts_outside_the_block() -> None:
    doc = measure.BLOCK.sub("", (ROOT / "docs" / "scenarios" / "arte.md").read_text())
    assert not re.search(r"\d+ (preference|test items|model calls)|\d+k tokens|\d+ minutes", doc)


def test_the_block_is_written_from_a_runs_ledger_and_metrics(tmp_path: Path) -> None:
    import json

    import yaml

    data = yaml.safe_load((ROOT / "conf" / "scenario" / "arte.yaml").read_text())["data"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"scenario": {"data": data}, "run": {"episodes": None}}))
    total = {"requests": 96, "tokens": 18512, "prompt_tokens": 15000, "completion_tokens": 3512}
    (tmp_path / "ledger.json").write_text(json.dumps({"total": total, "wall_s": 600.0}))
    (tmp_path / "metrics.json").write_text(json.dumps({"episodes": {"finished": 8, "failed": 0}, "status": "finished"}))
    text = measure.block("arte", tmp_path)
    assert "96 model calls, 18,512 tokens (15,000 prompt, 3,512 completion), 10.0 minutes" in text
    assert measure.SIZES.search(text).group(1) == measure.shipped_sizes("arte")  # type: ignore[union-attr]
    data["test"] = 3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"scenario": {"data": data}, "run": {"episodes": None}}))
    with pytest.raises(SystemExit, match="default sizes"):
        measure.block("arte", tmp_path)


def test_the_readme_compares_the_trained_teacher_with_the_untrained_one_like_for_like() -> None:
    """The README's before/after ran the untrained model on `embedded` (Q4, llama.cpp) and the checkpoint on
    `transformers` (fp32), and put the checkpoint in every role, the students' too: before and after are now
    both on transformers, and only the teacher (whom DPO on lbt's pairs trains) is the checkpoint."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Teach to train") :]
    section = section[: section.index("\n## ", 1)]
    runs = re.findall(r"^schola run (.*?(?:\\\n.*?)*)$", section, re.M)
    compared = {m.group(1): r for r in runs if (m := re.search(r"hydra\.run\.dir=\S*/(before|after)\b", r))}
    assert compared.keys() == {"before", "after"}, runs
    assert all("backend=transformers " in r and "backend.model=" not in r for r in compared.values())
    assert (
        "out/teacher/checkpoint" in compared["after"] and "scenario.roles.teacher.backend=trained" in compared["after"]
    )
    assert "students" not in compared["after"] and "checkpoint" not in compared["before"]
