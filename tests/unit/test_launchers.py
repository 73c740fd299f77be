"""Sweeps through Hydra's own launchers: submitit's local mode runs each job in a process of its own (as its SLURM
mode runs each on a node), so the job function must pickle, each job writes its own run directory, and the
sweep's exit code comes from the jobs' outcomes; the shipped `hydra/launcher=slurm` config composes."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SCRIPTED, read_jsonl

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs hydra-submitit-launcher (schola[slurm])")

SWEEP = ["run", "-m", *SCRIPTED, "scenario=lbt", "run.episodes=2", "hydra/launcher=submitit_local"]


def jobs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_a_sweep_runs_through_the_submitit_launcher_and_report_compares_its_jobs(cli: Any, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    code, out = cli(*SWEEP, "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert code == 0, out
    assert [p.name for p in jobs(sweep)] == ["0", "1"]
    for job, seed in zip(jobs(sweep), (0, 1), strict=True):
        assert json.loads((job / "status.json").read_text())["status"] == "finished"
        assert yaml.safe_load((job / "config.yaml").read_text())["seed"] == seed
        assert len(read_jsonl(job / "results.jsonl")) == 2
    # each job ran in a process of submitit's, not in this one: its log is in the sweep's .submitit folder
    logs = list((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2 and all("Job completed successfully" in p.read_text() for p in logs)
    code, out = cli("report", str(sweep))
    assert code == 0, out
    rows = list(csv.DictReader((sweep / "report.csv").open()))
    assert {r["seed"] for r in rows} == {"0", "1", "pooled"}
    assert {r["run"] for r in rows} == {"0", "1", "pooled over 2 seeds"} and {r["metric"] for r in rows} >= {
        "accuracy",
        "exam_accuracy",
    }


def test_a_job_that_fails_elsewhere_fails_the_sweep(cli: Any, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    code, out = cli(*SWEEP, "budget.max_requests=1000,5", f"hydra.sweep.dir={sweep}")
    assert code == 4, out  # job 1 stopped at its budget, in another process: the sweep says so
    status = [json.loads((job / "status.json").read_text())["status"] for job in jobs(sweep)]
    assert status == ["finished", "budget"]


def test_the_shipped_slurm_launcher_config_composes_with_submitits_schema() -> None:
    from hydra import compose, initialize_config_module

    with initialize_config_module("schola.conf", version_base=None):
        cfg = compose(
            "config",
            overrides=[
                *SCRIPTED,
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.gpus_per_node=1",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"  # job logs inside the sweep
