"""Findings: a scenario's declared claims are checked before a run, measured at its end with a paired interval and
a verdict, and run.until=decided stops a run once every claim is decided while keeping its error rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from schola import findings
from schola.findings import FindingConfig, log_capital, measure, n_for_power, sequential_decision, terms
from schola.metrics import MetricRow

ECHO = ["backend=scripted", "cache.enabled=false"]


def two_arms(
    n: int, *, a_hits: set[int], b_hits: set[int], findings_: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Episodes whose score hit{arm=a} is 1 on `a_hits` and hit{arm=b} on `b_hits` (the scripted backend echoes the
    prompt; each score looks for its arm's word in it): a known effect per episode."""
    rows = [
        {"id": f"e{i:03d}", "text": ("alpha " if i in a_hits else "") + ("beta" if i in b_hits else "")}
        for i in range(n)
    ]
    return {
        "name": "arms",
        "data": {"records": rows},
        "roles": {"student": {"role": "student"}},
        "graph": [
            {"id": "say", "kind": "agent", "role": "student", "prompt": "say {{ text }}", "output": "reply"},
            {"id": "a", "kind": "score", "scorer": "contains", "inputs": {"text": "reply", "target": "'alpha'"},
             "output": "hit", "labels": {"arm": "a"}},
            {"id": "b", "kind": "score", "scorer": "contains", "inputs": {"text": "reply", "target": "'beta'"},
             "output": "hit", "labels": {"arm": "b"}},
        ],
        "findings": findings_ if findings_ is not None else [
            {"name": "a_beats_b", "claim": "Arm a beats arm b.", "source": "a test", "effect": "hit{arm=a} - hit{arm=b}",
             "direction": "positive", "paper_effect": 0.2},
        ],
    }  # fmt: skip


def write(tmp_path: Path, scenario: dict[str, Any]) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def metrics(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "metrics.json").read_text()))


def finding(effect: str = "hit{arm=a} - hit{arm=b}", **kw: Any) -> FindingConfig:
    return FindingConfig(name="f", claim="c", effect=effect, **kw)


def results(a: list[float], b: list[float]) -> list[dict[str, Any]]:
    return [
        {"episode": f"e{i}", "round": 0, "scores": {"hit{arm=a}": x, "hit{arm=b}": y}}
        for i, (x, y) in enumerate(zip(a, b))
    ]


# ---- declared ----


def test_an_effect_is_one_row_or_a_difference_of_two_and_a_minus_inside_labels_is_part_of_a_label() -> None:
    assert terms("accuracy{rule=SUM} - accuracy{rule=MAJ}") == [
        ("accuracy", {"rule": "SUM"}),
        ("accuracy", {"rule": "MAJ"}),
    ]
    assert terms("test_accuracy.difference{examples=regenerated - drafted}") == [
        ("test_accuracy.difference", {"examples": "regenerated - drafted"})
    ]
    for bad in ("a - b - c", "a{x=1", " - b", "a b"):
        with pytest.raises(ValueError):
            terms(bad)


def test_check_refuses_a_finding_naming_a_metric_the_scenario_does_not_make(tmp_path: Path, cli: Any) -> None:
    scenario = two_arms(
        4, a_hits=set(), b_hits=set(), findings_=[{"name": "f", "claim": "c", "effect": "hits{arm=a} - hit{arm=b}"}]
    )
    path = write(tmp_path, scenario)
    code, out = cli("check", str(path), *ECHO)
    assert code == 2, out
    assert "scenario.findings[0].effect" in out and "did you mean hit?" in out and "s.yaml" in out
    scenario["findings"] = [{"name": "f", "claim": "c", "effect": "hit{arm=a} -"}]
    code, out = cli("check", str(write(tmp_path, scenario)), *ECHO)
    assert code == 2 and "scenario.findings[0].effect" in out, out
    scenario["findings"] = [{"name": "f", "claim": "c", "effect": "hit{arm=a}", "direction": "up"}]
    code, out = cli("check", str(write(tmp_path, scenario)), *ECHO)
    assert code == 2 and "scenario.findings[0].direction" in out, out


def test_until_decided_needs_findings_over_episode_scores(tmp_path: Path, cli: Any) -> None:
    scenario = two_arms(4, a_hits=set(), b_hits=set(), findings_=[])
    code, out = cli("check", str(write(tmp_path, scenario)), *ECHO, "run.until=decided")
    assert code == 2 and "run.until" in out and "findings" in out, out
    scenario["stages"] = [{"fn": "correlation", "x": "scores.hit{arm=a}", "y": "scores.hit{arm=b}"}]
    scenario["findings"] = [{"name": "f", "claim": "c", "effect": "spearman_rho"}]
    assert cli("check", str(write(tmp_path, scenario)), *ECHO)[0] == 0  # a generic stage's row is known
    code, out = cli("check", str(write(tmp_path, scenario)), *ECHO, "run.until=decided")
    assert code == 2 and "episode score" in out and "scenario.findings[0].effect" in out, out


# ---- measured ----


def test_a_paired_effect_gets_a_bootstrap_interval_and_the_verdict_its_sign_says() -> None:
    a, b = [1.0] * 30 + [0.0] * 10, [0.0] * 30 + [0.0] * 10
    m = measure(finding(), results(a, b), [])
    assert m.verdict == "supported" and m.value == pytest.approx(0.75) and m.n == 40
    assert m.ci_low is not None and m.ci_low > 0 and "paired" in m.method
    assert measure(finding(direction="negative"), results(a, b), []).verdict == "contradicted"


def test_an_inconclusive_finding_says_how_many_episodes_would_decide_it_at_80_percent_power() -> None:
    a, b = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]  # differences 1, -1, 1, -1, 0, 1
    m = measure(finding(paper_effect=0.1), results(a, b), [])
    diff = np.array(a) - np.array(b)
    sd = float(np.std(diff, ddof=1))
    assert m.verdict == "inconclusive" and m.sd == pytest.approx(sd)
    assert m.n_needed == int(np.ceil(((1.959964 + 0.841621) * sd / diff.mean()) ** 2))
    assert m.n_needed_paper == n_for_power(sd, 0.1) and m.n_needed_paper is not None and m.n_needed_paper > m.n_needed


def test_rows_without_episode_values_use_their_own_intervals_and_a_missing_row_is_unmeasured() -> None:
    rho = MetricRow("spearman_rho", 0.6, {"x": "a", "y": "b"}, ci_low=0.2, ci_high=0.9, n=9)
    by_group = MetricRow("spearman_rho", 0.1, {"x": "a", "y": "b", "course": "c1"}, ci_low=-0.5, ci_high=0.6, n=3)
    m = measure(finding("spearman_rho"), [], [by_group, rho])
    assert (m.verdict, m.value, m.n) == ("supported", 0.6, 9)  # the pooled row, not a group's
    low = MetricRow("accuracy", 0.2, {"rule": "MAJ"}, ci_low=0.1, ci_high=0.3, n=50)
    high = MetricRow("accuracy", 0.6, {"rule": "SUM"}, ci_low=0.5, ci_high=0.7, n=50)
    m = measure(finding("accuracy{rule=SUM} - accuracy{rule=MAJ}"), [], [low, high])
    assert m.verdict == "supported" and m.value == pytest.approx(0.4) and "independent" in m.method
    high.items, low.items = {"p1": 1.0, "p2": 1.0, "p3": 0.0}, {"p1": 0.0, "p2": 1.0, "p3": 0.0}  # a stage kept them
    assert "paired" in measure(finding("accuracy{rule=SUM} - accuracy{rule=MAJ}"), [], [low, high]).method
    missing = measure(finding("accuracy{rule=MAX} - accuracy{rule=MAJ}"), [], [low, high])
    assert missing.verdict == "unmeasured" and "accuracy{rule=MAX}" in missing.reason


def test_a_run_ends_with_its_findings_in_metrics_json_and_the_terminal(tmp_path: Path, cli: Any) -> None:
    run = tmp_path / "r"
    path = write(tmp_path, two_arms(12, a_hits=set(range(12)), b_hits={0, 1}))
    code, out = cli("run", str(path), *ECHO, f"hydra.run.dir={run}")
    assert code == 0, out
    [f] = metrics(run)["findings"]
    assert (f["name"], f["verdict"], f["n"]) == ("a_beats_b", "supported", 12)
    assert f["value"] == pytest.approx(10 / 12)
    assert "a_beats_b: supported at n=12" in out
    code, shown = cli("show", str(run))
    assert code == 0 and "a_beats_b: supported at n=12" in shown


def test_the_lbt_demo_pairs_its_rules_by_teaching_problem(tmp_path: Path, cli: Any) -> None:
    run = tmp_path / "lbt"
    code, out = cli("run", "scenario=lbt", *ECHO, f"hydra.run.dir={run}")
    assert code == 0, out
    found = {f["name"]: f for f in metrics(run)["findings"]}
    assert set(found) == {"lbt_sum_beats_majority", "lbt_max_beats_majority"}
    assert all(f["verdict"] != "unmeasured" and f["n"] == 4 and "paired" in f["method"] for f in found.values())
    ends = out.index("lbt_max_beats_majority: inconclusive at n=4")  # the demo ends with its findings, after the table
    assert ends > out.index("LbT helps when they beat MAJ") and "run directory" in out[ends:]


# ---- run.until=decided ----


def test_until_decided_stops_once_decided_exits_0_and_a_resume_continues_the_sequence(tmp_path: Path, cli: Any) -> None:
    run = tmp_path / "r"
    path = write(tmp_path, two_arms(80, a_hits=set(range(80)), b_hits=set()))
    args = [str(path), *ECHO, "run.until=decided", "run.concurrency=4"]
    code, out = cli("run", *args, f"hydra.run.dir={run}")
    assert code == 0, out
    m = metrics(run)
    assert m["status"] == "decided" and 4 <= m["episodes"]["finished"] < 80
    assert m["findings"][0]["verdict"] == "supported" and "confidence sequence" in m["findings"][0]["method"]
    finished = m["episodes"]["finished"]
    code, out = cli("run", f"resume={run}", *ECHO)
    assert code == 0, out
    assert metrics(run)["status"] == "decided" and metrics(run)["episodes"]["finished"] == finished  # not restarted


def test_sequential_test_keeps_its_error_rate_at_effect_0_over_200_peeking_runs() -> None:
    """300 runs of 200 paired 0/1 episodes at true effect 0, tested after every episode: the share that ever
    declares supported or contradicted stays within 0.05 plus two Monte-Carlo standard errors."""
    rng = np.random.default_rng(7)
    runs, n = 300, 200
    a, b = rng.integers(0, 2, (runs, n)), rng.integers(0, 2, (runs, n))
    x = ((a - b) + 1) / 2.0  # a contrast of two 0/1 values, mapped to [0, 1]; effect 0 lands at 0.5
    up, down = log_capital(x, np.array([0.5]))
    threshold = np.log(2 / findings.ALPHA)
    decided = ((up[..., 0] >= threshold) | (down[..., 0] >= threshold)).any(axis=1)
    bound = 0.05 + 2 * np.sqrt(0.05 * 0.95 / runs)
    assert decided.mean() <= bound
    assert [sequential_decision((a[i] - b[i]).tolist()) != 0 for i in range(20)] == list(decided[:20])


def test_sequential_test_decides_a_true_effect_of_0_2() -> None:
    rng = np.random.default_rng(3)
    stops = []
    for _ in range(40):
        a, b = rng.random(1500) < 0.6, rng.random(1500) < 0.4
        d = a.astype(float) - b.astype(float)
        x = (d + 1) / 2
        up, _ = log_capital(x, np.array([0.5]))
        hit = np.nonzero(up[:, 0] >= np.log(2 / findings.ALPHA))[0]
        stops.append(hit[0] + 1 if len(hit) else np.inf)
    assert np.mean(np.isfinite(stops)) >= 0.95 and np.median(stops) < 1500
