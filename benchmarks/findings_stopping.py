"""run.until=decided against a fixed-n design: episodes (model calls) spent to decide a finding.

A finding compares two 0/1 metrics on the same episodes (accuracy{rule=SUM} - accuracy{rule=MAJ}, say). Each
simulated run draws episodes one by one with P(a)=0.5+effect/2 and P(b)=0.5-effect/2 and tests after each batch
with Schola's anytime-valid test (schola.findings: Waudby-Smith & Ramdas' hedged betting confidence sequence),
stopping when it is decided or at --max-n. Reported, at the true effect 0.2 and 0:
  - the share of runs that decide (power; at effect 0 the false-decision rate), and the median stopping n;
  - the fixed n a paired two-sided 5% test needs for the same power (normal approximation, the observed paired SD),
    and for 80% power, and the saving in episodes: 1 - mean stopping n / fixed n (model calls scale with episodes).

    python benchmarks/findings_stopping.py [--runs 2000] [--max-n 1000] [--batch 8] [--effect 0.2]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats  # type: ignore[import-untyped, unused-ignore]

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from _common import save

from schola.findings import ALPHA, log_capital


def simulate(effect: float, runs: int, max_n: int, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Stopping n of each run (inf: undecided at max_n), the sign it decided, and the paired SD of the differences."""
    rng = np.random.default_rng(seed)
    a = rng.random((runs, max_n)) < 0.5 + effect / 2
    b = rng.random((runs, max_n)) < 0.5 - effect / 2
    d = a.astype(float) - b.astype(float)
    stop = np.full(runs, np.inf)
    sign = np.zeros(runs)
    threshold = math.log(2 / ALPHA)
    for start in range(0, runs, 100):  # 100 runs at a time: (runs, n, 1) capital arrays stay small
        up, down = log_capital((d[start : start + 100] + 1) / 2, np.array([0.5]))
        looks = np.arange(batch - 1, max_n, batch)  # tested only after each batch, as a run does
        hit_up, hit_down = up[:, looks, 0] >= threshold, down[:, looks, 0] >= threshold
        for i in range(up.shape[0]):
            first_up = looks[hit_up[i]][0] if hit_up[i].any() else math.inf
            first_down = looks[hit_down[i]][0] if hit_down[i].any() else math.inf
            first = min(first_up, first_down)
            if math.isfinite(first):
                stop[start + i] = first + 1
                sign[start + i] = 1 if first_up <= first_down else -1
    return stop, sign, float(d.std(ddof=1))


def fixed_n(effect: float, sd: float, power: float) -> int:
    """Episodes a fixed-n paired two-sided 5% z-test needs for `power` (normal approximation)."""
    z = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(power)
    return math.ceil((z * sd / effect) ** 2)


def capped(stop: np.ndarray, effect: float, sd: float, power: float) -> dict[str, float]:
    """The sequential design capped at the n where `power` of the runs have decided (so its power is `power`):
    mean and median episodes it spends, against the fixed n with that power."""
    cap = float(np.quantile(stop, power))
    spent = np.minimum(stop, cap)
    fixed = fixed_n(effect, sd, power)
    return {
        "power": power, "cap": cap, "mean_spent": round(float(spent.mean()), 1), "median_spent": float(np.median(spent)),
        "fixed_n": fixed, "saving_mean": round(1 - float(spent.mean()) / fixed, 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--max-n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8, help="episodes between looks (run.concurrency)")
    parser.add_argument("--effect", type=float, default=0.2)
    args = parser.parse_args()
    started = time.perf_counter()
    stop, sign, sd = simulate(args.effect, args.runs, args.max_n, args.batch, seed=1)
    decided = np.isfinite(stop)
    power = float(decided.mean())
    spent = np.where(decided, stop, args.max_n)  # an undecided run spends max_n
    same_power = fixed_n(args.effect, sd, min(power, 0.999))
    null_stop, _, _ = simulate(0.0, args.runs, args.max_n, args.batch, seed=2)
    false_rate = float(np.isfinite(null_stop).mean())
    save(
        "findings_stopping",
        {
            "method": "Waudby-Smith & Ramdas hedged betting CS (schola.findings), tested after every batch",
            "effect": args.effect,
            "runs": args.runs,
            "max_n": args.max_n,
            "batch": args.batch,
            "paired_sd": round(sd, 4),
            "sequential": {
                "power_within_max_n": round(power, 4),
                "wrong_sign_share": round(float((sign < 0).mean()), 4),
                "median_stopping_n": float(np.median(spent)),
                "mean_episodes_spent": round(float(spent.mean()), 1),
                "p90_stopping_n": float(np.quantile(spent, 0.9)),
            },
            "fixed_n": {"same_power": same_power, "power_80": fixed_n(args.effect, sd, 0.8)},
            "at_equal_power": [capped(stop, args.effect, sd, p) for p in (0.8, 0.9, 0.95)],
            "saving_vs_fixed_n_same_power": round(1 - float(spent.mean()) / same_power, 3),
            "median_saving_vs_fixed_n_same_power": round(1 - float(np.median(spent)) / same_power, 3),
            "effect_0": {
                "false_decision_rate": round(false_rate, 4),
                "mc_se": round(math.sqrt(false_rate * (1 - false_rate) / args.runs), 4),
            },
            "wall_s": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    main()
