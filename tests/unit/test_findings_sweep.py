"""Findings over a sweep: `schola report` measures a finding that compares variants across the sweep's arms (paired
by episode id), pools every finding over seeds, and says which arms support which finding."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import yaml

from schola.findings import Arm, FindingConfig, arm_keys, measure_arms, over_runs

ECHO = ["backend=scripted", "cache.enabled=false"]
N = 12


def variants(b_hits: set[int]) -> dict[str, Any]:
    """Variant a's prompt always says 'alpha', variant b's only on `b_hits` (the scripted backend echoes it): the
    score hit is 1 in every episode of a and on `b_hits` in b, so a - b is 1 on the other episodes, 0 on these."""
    rows = [{"id": f"e{i:03d}", "text": "alpha" if i in b_hits else "gamma"} for i in range(N)]
    return {
        "name": "arms",
        "variant": "a",
        "variants": {"a": {"params": {"word": "alpha"}}, "b": {"params": {"word": "beta"}}},
        "params": {"word": "alpha"},
        "data": {"records": rows},
        "roles": {"student": {"role": "student"}},
        "graph": [
            {"id": "say", "kind": "agent", "role": "student", "prompt": "say {{ text }} {{ params.word }}",
             "output": "reply"},
            {"id": "hit", "kind": "score", "scorer": "contains", "inputs": {"text": "reply", "target": "'alpha'"},
             "output": "hit"},
        ],
        "findings": [
            {"name": "a_beats_b", "claim": "Variant a beats variant b.", "effect": "hit{variant=a} - hit{variant=b}",
             "direction": "positive", "paper_effect": 0.2},
        ],
    }  # fmt: skip


def sweep(tmp_path: Path, cli: Any, scenario: dict[str, Any], *overrides: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    root = tmp_path / "sweep"
    code, out = cli("run", "-m", str(path), *ECHO, *overrides, f"hydra.sweep.dir={root}")
    assert code == 0, out
    return root


def findings_csv(root: Path) -> list[dict[str, str]]:
    with (root / "report_findings.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_finding_comparing_variants_is_measured_across_the_arms_per_seed_and_pooled(tmp_path: Path, cli: Any) -> None:
    root = sweep(tmp_path, cli, variants(b_hits={0, 1, 2}), "scenario.variant=a,b", "seed=0,1")
    code, out = cli("report", str(root))
    assert code == 0, out
    assert "a_beats_b: supported in 3" in out and "report_findings.csv" in out, out
    rows = findings_csv(root)
    assert [(r["seed"], r["scenario.variant"], r["verdict"], r["n"]) for r in rows] == [
        ("0", "a - b", "supported", str(N)),
        ("1", "a - b", "supported", str(N)),
        ("pooled", "a - b", "supported", str(N)),  # n counts episodes: a seed reruns the same ones
    ]
    assert all(float(r["value"]) == pytest.approx(9 / 12) and "paired" in r["method"] for r in rows)
    assert rows[2]["run"] == "pooled over 2 seeds"


def test_a_within_run_finding_is_listed_per_run_and_pooled_over_seeds(tmp_path: Path, cli: Any) -> None:
    scenario = variants(b_hits=set())
    scenario["findings"] = [{"name": "always_alpha", "claim": "It says alpha.", "effect": "hit"}]
    root = sweep(tmp_path, cli, scenario, "seed=0,1")
    code, out = cli("report", str(root))
    assert code == 0, out
    rows = findings_csv(root)
    assert [(r["run"], r["seed"], r["n"]) for r in rows] == [("0", "0", "12"), ("1", "1", "12"),
                                                             ("pooled over 2 seeds", "pooled", "12")]  # fmt: skip
    assert "always_alpha: supported in 3 (seed=0; seed=1; seed=pooled)" in out, out  # every hit is 1


def arm(variant: str, values: dict[str, float], seed: int = 0) -> Arm:
    return Arm(
        {"scenario.variant": variant, "seed": seed},
        [{"episode": e, "scores": {"hit": v}} for e, v in values.items()],
        [],
    )


def test_arms_pair_by_episode_id_and_fall_back_to_two_samples_when_they_ran_different_episodes() -> None:
    finding = FindingConfig(name="f", claim="c", effect="hit{variant=a} - hit{variant=b}")
    keys = arm_keys(finding, ["scenario.variant", "seed"])
    assert keys == {"variant": "scenario.variant"}
    a = arm("a", {f"e{i}": 1.0 for i in range(10)})
    b = arm("b", {f"e{i}": float(i < 2) for i in range(10)})
    m = measure_arms(finding, [a, b], keys)
    assert (m.verdict, m.n, m.value) == ("supported", 10, pytest.approx(0.8)) and "paired" in m.method
    other = arm("b", {f"x{i}": float(i < 2) for i in range(10)})
    assert "two-sample" in measure_arms(finding, [a, other], keys).method
    missing = measure_arms(finding, [a], keys)
    assert missing.verdict == "unmeasured" and "scenario.variant=b" in missing.reason
    pooled = measure_arms(finding, [a, b, arm("a", {"e0": 0.0}, seed=1)], keys)  # e0's value in a: mean of 1 and 0
    assert pooled.n == 10 and pooled.value == pytest.approx(0.75)


def test_runs_without_per_episode_values_pool_their_measured_effects_over_runs() -> None:
    finding = FindingConfig(name="f", claim="c", effect="spearman_rho")
    m = over_runs(finding, [0.5, 0.6, 0.7])
    assert (m.n, m.verdict) == (3, "supported") and "over runs" in m.method
    assert over_runs(finding, [0.5]).verdict == "unmeasured"
