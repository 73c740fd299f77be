"""spp on the real embedded model (SmolLM2-135M), tiny: one logic grid puzzle, short replies (-m embedded)."""

from __future__ import annotations

from pathlib import Path

import pytest

import schola
from schola.store import read_jsonl

pytestmark = pytest.mark.embedded
TINY = ["backend=embedded", "scenario.data.task=logic_grid_puzzle", "scenario.data.items=1", "scenario.data.houses=2",
        "scenario.data.characteristics=1", "scenario.roles.assistant.sampling.max_tokens=32",
        "scenario.roles.persona.sampling.max_tokens=24", "scenario.params.max_turns=2"]  # fmt: skip


@pytest.mark.parametrize(("variant", "fewest", "most"), [("spp", 1, 1), ("spp_multi", 1 + 1 + 1, 1 + 2 + 1)])
def test_spp_runs_on_the_embedded_model(tmp_path: Path, variant: str, fewest: int, most: int) -> None:
    result = schola.run("spp", [*TINY, f"scenario.variant={variant}"], run_dir=tmp_path / "run")
    assert result.ok, result.message
    lines = read_jsonl(result.run_dir / "transcript.jsonl")
    # spp: one reply; spp_multi: the participants, at most two persona turns, the final answer
    assert fewest <= len(lines) <= most and all(t["completion_tokens"] > 0 for t in lines)
    if variant == "spp_multi":
        assert lines[0]["agent"] == "assistant" and lines[-1]["agent"] == "assistant"
        assert {t["agent"] for t in lines[1:-1]} == {"persona"}
    score, rate = result.metric("score"), result.metric("parse_rate")
    assert score is not None and rate is not None and score.n == rate.n == 1
    assert score.value in (0.0, 1.0) and (rate.value == 1.0 or score.value == 0.0)  # unparsed counts as wrong
