"""Every headline row of every built-in scenario has its 95% CI, as the README promises for every table.

The headline rows are the estimates each scenario's caption names (ranks and counts, such as curriculum's
designer_rank or arte's pairs, are positions and tallies of the run, not estimates). SIGHT's human_model_kappa and
krippendorff_alpha and lbt M3's test_accuracy had none. Each built-in scenario runs on the scripted backend, at
small sizes where its defaults take long."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

HEADLINES: dict[str, tuple[list[str], set[str]]] = {  # (overrides, headline metric names)
    "arte": ([], {"test_accuracy", "test_accuracy.difference"}),
    "comd": ([], {"win_rate"}),
    "curriculum": (["scenario.data.orders=4"], {"A", "delta", "spearman_rho", "top_quarter_overlap"}),
    "instruct_mtl": ([], {"rouge_l", "token_f1", "exact_match", "rouge_l_difference", "token_f1_difference"}),
    "lbt": ([], {"accuracy"}),
    "lbt_m3": (["scenario=lbt", "scenario.variant=m3"], {"test_accuracy"}),
    "mooc_grading": ([], {"llm.mae", "peers.mae", "llm_vs_peers.mae_difference"}),
    "sight": (
        ["scenario.data.per_category=1"],
        {"irr.cohen_kappa", "human_model_kappa", "krippendorff_alpha", "irr_vs_model.spearman_rho"},
    ),
    "spp": ([], {"score", "parse_rate"}),
    "tom_teaching": ([], {"accuracy"}),
}


@pytest.mark.parametrize("name", sorted(HEADLINES))
def test_every_headline_row_has_its_confidence_interval(cli: Any, tmp_path: Path, name: str) -> None:
    overrides, headlines = HEADLINES[name]
    scenario = [] if any(o.startswith("scenario=") for o in overrides) else [f"scenario={name}"]
    if name == "curriculum":
        pytest.importorskip("torch")
    code, out = cli("run", "backend=scripted", *scenario, *overrides, f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    rows = json.loads((tmp_path / "r" / "metrics.json").read_text())["metrics"]
    found = {r["name"] for r in rows}
    assert headlines <= found, f"{name}: no {sorted(headlines - found)} rows"
    missing = [
        f"{r['name']}{r['labels']} = {r['value']}"
        for r in rows
        if r["name"] in headlines and r["value"] is not None and (r["ci_low"] is None or r["ci_high"] is None)
    ]
    assert not missing, f"{name}: headline rows without a CI: {missing}"
