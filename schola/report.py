"""Tables of finished runs: `schola show <run>` (one run) and `schola report <dir>` (every run below a folder,
e.g. a sweep's jobs), with tokens, wall time and cost beside the metrics; CSV and PNG for the report."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from schola.errors import ConfigError
from schola.resume import bookkeeping, flatten
from schola.store import RunStore, iter_jsonl, read_json_file, write_atomic


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def label_text(labels: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items())


def wall_s(run_dir: Path) -> float | None:
    """A run's wall time over every invocation (ledger.json); None when unknown."""
    try:
        value = (read_json_file(run_dir / "ledger.json") or {}).get("wall_s")
    except ConfigError:
        return None
    return float(value) if isinstance(value, (int, float)) else None


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run's metrics.json; a missing or damaged one is a ConfigError naming it."""
    path = run_dir / "metrics.json"
    m = read_json_file(path)
    if m is None:
        raise ConfigError(f"{run_dir} has no metrics.json (not a run directory, or the run never started)")
    if not isinstance(m.get("metrics"), list):
        raise ConfigError('damaged: expected {"scenario", "metrics": [...]}', file=str(path))
    m["metrics"] = [r for r in m["metrics"] if isinstance(r, dict) and "name" in r]
    check_shape(m, path)
    return m


_NUMBER = ((int, float, type(None)), "a number or null")
#: metrics.json's fields, where present, as the tables, the plot and the viewer take them: (type, what it is).
FIELDS: dict[str, tuple[Any, str]] = {
    "scenario": (str, "text"), "status": (str, "text"), "caption": (str, "text"), "episodes": (dict, "a mapping"),
    "usage": (dict, "a mapping"), "exports": (list, "a list"), "findings": (list, "a list"),
}  # fmt: skip
ROW: dict[str, tuple[Any, str]] = {
    "name": (str, "text"), "labels": (dict, "a mapping"), "value": _NUMBER, "ci_low": _NUMBER, "ci_high": _NUMBER,
    "n": ((int, type(None)), "a whole number or null"),
}  # fmt: skip


def check_shape(m: dict[str, Any], path: Path) -> None:
    """Each field of a run's metrics.json has the type Schola writes: a damaged or prepared file is a ConfigError
    naming the key, not a TypeError in a table, the plot or the viewer."""

    def expect(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"damaged: expected {what}; not a file Schola wrote", file=str(path), key=key)

    for key, (kind, what) in FIELDS.items():
        expect(key not in m or isinstance(m[key], kind), key, what)
    for key, counts in (("episodes", m.get("episodes", {})), ("usage.total", m.get("usage", {}).get("total", {}))):
        numbers = isinstance(counts, dict) and all(isinstance(v, (int, float)) for v in counts.values())
        expect(numbers, key, "a mapping of numbers")
    for i, row in enumerate(m["metrics"]):
        for key, (kind, what) in ROW.items():
            expect(key not in row or isinstance(row[key], kind), f"metrics[{i}].{key}", what)


def metrics_table(run_dir: Path) -> Table:
    """The metrics of one run as a rich table."""
    m = read_run(run_dir)
    eps = m.get("episodes", {})
    usage = m.get("usage", {}).get("total", {})
    failed = f"{eps['failed']} failed, " if eps.get("failed") else ""
    title = (
        f"{m.get('scenario', '?')} — {m.get('status', '?')}: {eps.get('finished', '?')}/{eps.get('total', '?')} episodes, "
        f"{failed}{usage.get('tokens', 0)} tokens, {usage.get('cache_hits', 0)} cache hits, "
        f"${usage.get('cost_usd', 0):.4f}, {wall_s(run_dir) or 0:.1f}s"
    )
    caption = m.get("caption") if isinstance(m.get("caption"), str) else ""
    caption = "\n".join(c for c in (caption, failed_text(run_dir) if failed else "") if c)
    t = Table(title=escape(title), caption=escape(caption) if caption else None)
    for col in ("metric", "labels", "value", "95% CI", "n"):
        t.add_column(col, justify="right" if col in ("value", "n") else "left")
    for r in m["metrics"]:
        ci = f"[{fmt(r.get('ci_low'))}, {fmt(r.get('ci_high'))}]" if r.get("ci_low") is not None else "-"
        t.add_row(
            escape(r["name"]), escape(label_text(r.get("labels", {}))), fmt(r.get("value")), ci, str(r.get("n", ""))
        )
    return t


def findings_of(run_dir: Path) -> list[dict[str, Any]]:
    """The findings a run measured (metrics.json `findings`), each with its sentence (`line`)."""
    return findings_in(read_run(run_dir))


def findings_in(m: dict[str, Any]) -> list[dict[str, Any]]:
    """`findings_of` a run's metrics.json as `read_run` gives it."""
    found = m.get("findings")
    rows = [f for f in found if isinstance(f, dict) and "name" in f] if isinstance(found, list) else []
    return [{**f, "line": finding_line(f)} for f in rows]


def finding_line(f: dict[str, Any]) -> str:
    """One finding in a sentence: the verdict, the measured effect with its interval and n, and, when
    inconclusive, about how many episodes would decide it."""
    verdict, n = f.get("verdict", "?"), f.get("n", 0)
    if verdict == "unmeasured":
        return f"{f['name']}: not measured — {f.get('reason') or 'no value'}"
    effect = f"{f.get('effect')} = {_signed(f.get('value'))} [{_signed(f.get('ci_low'))}, {_signed(f.get('ci_high'))}]"
    line = f"{f['name']}: {verdict} at n={n} ({effect}; the paper: {_paper(f)})"
    if verdict == "inconclusive":
        need = [f"about {f['n_needed']} episodes would decide an effect of this size"] if f.get("n_needed") else []
        if f.get("n_needed_paper"):
            need.append(f"about {f['n_needed_paper']} one of the paper's size")
        line += "; " + ", ".join(need) if need else "; no spread or no effect observed: more episodes will tell"
    return line


def _paper(f: dict[str, Any]) -> str:
    """The paper's effect: its size where it gives one, else its direction."""
    return _signed(f["paper_effect"]) if isinstance(f.get("paper_effect"), int | float) else str(f.get("direction"))


def _signed(v: Any) -> str:
    return "-" if not isinstance(v, int | float) else f"{v:+.3f}"


def findings_table(run_dir: Path) -> Table | None:
    """The findings of one run as a rich table (None when its scenario declares none)."""
    found = findings_of(run_dir)
    if not found:
        return None
    methods = sorted({str(f.get("method")) for f in found if f.get("method")})
    t = Table(title="findings", caption=escape("intervals: " + "; ".join(methods)) if methods else None)
    for col in ("finding", "effect", "paper", "measured", "95% interval", "n", "verdict", "n to decide"):
        t.add_column(col, justify="right" if col in ("measured", "n", "n to decide") else "left")
    for f in found:
        ci = f"[{_signed(f.get('ci_low'))}, {_signed(f.get('ci_high'))}]" if f.get("ci_low") is not None else "-"
        t.add_row(
            escape(str(f["name"])), escape(str(f.get("effect"))), escape(_paper(f)), _signed(f.get("value")), ci,
            str(f.get("n", "")), escape(str(f.get("verdict"))), fmt(f.get("n_needed")),
        )  # fmt: skip
    return t


def failed_text(run_dir: Path, most: int = 10) -> str:
    """The episodes that failed, each with its step and error (results.jsonl), the first `most` of them."""
    lines, count = [], 0
    for r in iter_jsonl(run_dir / "results.jsonl"):  # one pass, keeping the first `most`
        if isinstance(r.get("error"), dict):
            count += 1
            if count <= most:
                lines.append(f"failed: episode '{r.get('episode')}' at step '{r['error'].get('step')}': "
                             f"{r['error'].get('message')}")  # fmt: skip
    return "\n".join(lines + ([f"... and {count - most} more (results.jsonl)"] if count > most else []))


def find_runs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("metrics.json"))


@dataclass
class Sweep:
    """The runs below a folder, read once for all of `schola report`'s tables: each run's metrics.json and saved
    config, and the config keys whose values differ."""

    root: Path
    runs: list[Path]
    metrics: dict[Path, dict[str, Any]]
    configs: dict[Path, dict[str, Any]]
    varying: list[str]

    @classmethod
    def read(cls, root: Path | Sweep) -> Sweep:
        if isinstance(root, Sweep):
            return root
        runs = find_runs(root)
        if not runs:
            raise ConfigError(f"no runs (metrics.json) under {root}")
        configs, varying = run_configs(runs)
        return cls(root, runs, {r: read_run(r) for r in runs}, configs, varying)


def sweep_rows(root: Path | Sweep) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per (run, metric): the config keys that differ between runs, then metric, CI, n, tokens, cost, time."""
    sweep = Sweep.read(root)
    root, configs, varying = sweep.root, sweep.configs, sweep.varying
    rows = []
    for r in sweep.runs:
        m = sweep.metrics[r]
        total = m.get("usage", {}).get("total", {})
        for row in m["metrics"]:
            rows.append(
                {
                    "run": str(r.relative_to(root)) if r != root else ".",
                    **{k: configs[r].get(k) for k in varying},
                    "metric": row["name"], "labels": label_text(row.get("labels", {})), "value": row.get("value"),
                    "ci_low": row.get("ci_low"), "ci_high": row.get("ci_high"), "n": row.get("n"),
                    "tokens": total.get("tokens", 0), "cost_usd": total.get("cost_usd", 0.0),
                    "wall_s": wall_s(r), "status": m.get("status"),
                }
            )  # fmt: skip
    return varying, rows + pooled_over_seeds(varying, rows)


def run_configs(runs: list[Path]) -> tuple[dict[Path, dict[str, Any]], list[str]]:
    """Each run's saved config as {dotted.key: value} (bookkeeping left out), and the keys whose values differ."""
    configs = {}
    for r in runs:
        try:  # the run's own reader: nesting bounded (a deep file was a RecursionError here)
            cfg = RunStore(r).read_config()
        except ConfigError:  # none, or damaged: the run is still shown, without its settings
            cfg = {}
        configs[r] = {k: v for k, v in flatten(cfg).items() if not bookkeeping(k)}
    keys = sorted({k for c in configs.values() for k in c})
    varying = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs.values()}) > 1]
    return configs, varying


def pooled_over_seeds(varying: list[str], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where runs differ in `seed` (a `-m seed=0,1,2` sweep), one more row per metric and setting: the mean over
    the seeds' values with a bootstrap CI over seeds (n = seeds), so the comparison does not rest on one seed."""
    if "seed" not in varying:
        return []
    from schola.metrics import mean_row  # numpy: only when there is something to pool

    others = [k for k in varying if k != "seed"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key = (*(json.dumps(row.get(k), sort_keys=True) for k in others), row["metric"], row["labels"])
        groups.setdefault(key, []).append(row)
    pooled = []
    for members in groups.values():
        if len({m["seed"] for m in members}) < 2:
            continue
        first = members[0]
        stat = mean_row(first["metric"], [m["value"] for m in members])
        pooled.append({
            "run": f"pooled over {len(members)} seeds", **{k: first.get(k) for k in others}, "seed": "pooled",
            "metric": first["metric"], "labels": first["labels"], "value": stat.value, "ci_low": stat.ci_low,
            "ci_high": stat.ci_high, "n": stat.n, "tokens": sum(m["tokens"] or 0 for m in members),
            "cost_usd": sum(m["cost_usd"] or 0.0 for m in members),
            "wall_s": sum(m["wall_s"] or 0.0 for m in members), "status": "pooled",
        })  # fmt: skip
    return pooled


MAX_VALUE = 24  # a config value longer than this is abbreviated in labels and headers, and listed in full below


def short_keys(varying: list[str]) -> dict[str, str]:
    """Each differing config key by its shortest dotted tail that no other differing key shares
    (`scenario.graph.0.prompt` -> `prompt`, unless another key also ends in `prompt`)."""
    out = {}
    for key in varying:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(k != key and (k == tail or k.endswith("." + tail)) for k in varying):
                break
        out[key] = tail
    return out


class ArmLabels:
    """Short names for a sweep's arms: the differing keys (`short_keys`) and their values, a long value cut to
    `MAX_VALUE` characters with a note number, its full text in `notes` (a stage prompt made a one-line legend
    wider than the plot, and a table whose every header was cut to 'bac…')."""

    def __init__(self, varying: list[str]) -> None:
        self.keys = short_keys(varying)
        self.notes: list[str] = []
        self._numbered: dict[tuple[str, str], int] = {}

    def value(self, key: str, value: Any) -> str:
        text = fmt(value)
        if len(text) <= MAX_VALUE:
            return text
        if (key, text) not in self._numbered:
            self.notes.append(f"[{len(self.notes) + 1}] {self.keys[key]} = {text}")
            self._numbered[(key, text)] = len(self.notes)
        return f"{text[: MAX_VALUE - 6].rstrip()}… [{self._numbered[(key, text)]}]"

    def arm(self, row: dict[str, Any]) -> str:
        """One arm's label: `key=value, ...` over the differing keys, else its run's folder."""
        return ", ".join(f"{short}={self.value(k, row.get(k))}" for k, short in self.keys.items()) or str(row["run"])


def report(root: Path | Sweep) -> tuple[Table, Path, Path]:
    """Write report.csv (every key and value in full) and report.png under `root`; return the terminal table (short
    headers and values, long ones listed in its caption) and both paths."""
    sweep = Sweep.read(root)
    root, (varying, rows) = sweep.root, sweep_rows(sweep)
    columns = list(rows[0])
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=columns)
    w.writeheader()
    w.writerows(rows)
    csv_path = write_atomic(root / "report.csv", text.getvalue())
    return report_table(root, varying, rows), csv_path, write_atomic(root / "report.png", plot(rows, varying))


def report_table(root: Path, varying: list[str], rows: list[dict[str, Any]]) -> Table:
    """The sweep's rows for a terminal: runs counted without the pooled rows (a mean over runs is not a run)."""
    runs = {r["run"] for r in rows if r.get("status") != "pooled"}
    labels = ArmLabels(varying)
    cells = [[r["run"], *(labels.value(k, r.get(k)) for k in varying), r["metric"], r["labels"], fmt(r["value"]),
              f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]" if r["ci_low"] is not None else "-", fmt(r["n"]),
              fmt(r["tokens"]), f"${r['cost_usd'] or 0:.4f}", fmt(r["wall_s"]), fmt(r["status"])] for r in rows]  # fmt: skip
    caption = "\n".join(labels.notes) if labels.notes else None
    t = Table(title=escape(f"{len(runs)} runs under {root}"), caption=escape(caption) if caption else None)
    headers = ["run", *labels.keys.values(), "metric", "labels", "value", "95% CI", "n", "tokens", "cost", "wall s",
               "status"]  # fmt: skip
    for h in headers:  # a header is never cut ('bac…'); a cell wraps instead
        t.add_column(escape(h), min_width=len(h), justify="right" if h in ("value", "n", "tokens", "cost") else "left")
    for c in cells:
        t.add_row(*(escape(str(v)) for v in c))
    return t


# ---- findings over a sweep: each run's, across arms, pooled over seeds ----

FINDING_FIELDS = ("name", "effect", "direction", "paper_effect", "value", "ci_low", "ci_high", "n", "verdict",
                  "n_needed", "n_needed_paper", "method", "reason")  # fmt: skip


def sweep_findings(root: Path | Sweep) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per finding and run (what its metrics.json says); a finding whose rows name a differing config key
    (`score{variant=spp} - score{variant=standard}` in a sweep of scenario.variant) instead gets one row per
    setting of the other keys, measured across the arms (`findings.measure_arms`: paired by episode id); and
    where runs differ by seed, one row per finding and setting pooled over the seeds."""
    from schola import findings as fnd
    from schola.metrics import MetricRow

    sweep = Sweep.read(root)
    root, runs, configs, varying = sweep.root, sweep.runs, sweep.configs, sweep.varying
    own = {r: {str(f["name"]): f for f in findings_in(sweep.metrics[r])} for r in runs}
    arms: dict[Path, fnd.Arm] = {}

    def arm(r: Path) -> fnd.Arm:  # results.jsonl is read only for a finding measured across runs
        if r not in arms:
            rows = [MetricRow(str(m["name"]), m.get("value"), m.get("labels") or {}, m.get("ci_low"),
                                  m.get("ci_high"), m.get("n") or 0) for m in sweep.metrics[r]["metrics"]]  # fmt: skip
            arms[r] = fnd.Arm(configs[r], list(RunStore(r).results()), rows)
        return arms[r]

    def row(group: list[Path], keys: list[str], m: dict[str, Any], **shown: Any) -> dict[str, Any]:
        if arm_keys:  # the runs the finding's rows read
            read = {
                id(a)
                for _, labels in fnd.terms(m["effect"])
                for a in fnd.arms_of([arm(r) for r in group], labels, arm_keys)
            }
            group = [r for r in group if id(arm(r)) in read] or group
        names = [str(r.relative_to(root)) if r != root else "." for r in group]
        return {"run": ", ".join(names), **{k: configs[group[0]].get(k) for k in keys}, **shown,
                **{"finding" if k == "name" else k: m.get(k) for k in FINDING_FIELDS}}  # fmt: skip

    out: list[dict[str, Any]] = []
    arm_keys: dict[str, str] = {}
    for finding in _declared(own):
        keys = arm_keys = fnd.arm_keys(finding, varying)
        compared = {k: " - ".join(labels[label] for _, labels in fnd.terms(finding.effect) if label in labels)
                    for label, k in keys.items()}  # fmt: skip
        setting = _setting(runs, configs, varying, list(keys.values()))
        made: list[tuple[list[Path], dict[str, Any]]] = []
        if keys:  # across the arms of each setting of the other keys
            for group in _groups(runs, configs, setting):
                across = fnd.measure_arms(finding, [arm(r) for r in group], keys).to_dict()
                made.append((group, row(group, setting, across, **compared)))
        else:
            made += [([r], row([r], varying, own[r][finding.name])) for r in runs if finding.name in own[r]]
        out += [x for _, x in made]
        if "seed" in setting:
            others = [k for k in setting if k != "seed"]
            for group in _groups(runs, configs, others):
                seeds = {json.dumps(configs[r].get("seed")) for r in group}
                if len(seeds) < 2:
                    continue
                m = fnd.measure_arms(finding, [arm(r) for r in group], keys)
                per_seed = [x["value"] for g, x in made if set(g) <= set(group) and isinstance(x["value"], int | float)]
                if m.verdict == "unmeasured" and len(per_seed) > 1:  # rows without per-episode values
                    m = fnd.over_runs(finding, per_seed)
                out.append({**row(group, others, m.to_dict(), **compared), "seed": "pooled",
                            "run": f"pooled over {len(seeds)} seeds"})  # fmt: skip
    return varying, out


def _declared(own: dict[Path, dict[str, dict[str, Any]]]) -> list[Any]:
    """The findings the runs declare (metrics.json `findings`), each once, in the order first seen; one a damaged
    file holds in another shape is left out."""
    from pydantic import ValidationError

    from schola.findings import FindingConfig

    found: dict[str, FindingConfig] = {}
    for measured in own.values():
        for name, f in measured.items():
            fields = ("name", "claim", "source", "effect", "direction", "paper_effect")
            try:
                found.setdefault(name, FindingConfig(**{k: f[k] for k in fields if f.get(k) is not None}))
            except (ValidationError, TypeError):
                continue
    return list(found.values())


def _setting(runs: list[Path], configs: dict[Path, dict[str, Any]], varying: list[str], arm: list[str]) -> list[str]:
    """The differing keys that are not the arm's own (`arm`) nor follow from them: a variant also changes the graph
    and prompts it selects, and those keys must not split its arms apart; seeds and the other swept keys stay."""
    if not arm:
        return varying
    values: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for r in runs:
        seen = values.setdefault(tuple(json.dumps(configs[r].get(k), sort_keys=True) for k in arm), {})
        for k in varying:
            seen.setdefault(k, set()).add(json.dumps(configs[r].get(k), sort_keys=True))
    return [k for k in varying if k not in arm and any(len(v[k]) > 1 for v in values.values())]


def _groups(runs: list[Path], configs: dict[Path, dict[str, Any]], keys: list[str]) -> list[list[Path]]:
    """The runs grouped by their values of `keys`, in the runs' order."""
    groups: dict[tuple[str, ...], list[Path]] = {}
    for r in runs:
        groups.setdefault(tuple(json.dumps(configs[r].get(k), sort_keys=True) for k in keys), []).append(r)
    return list(groups.values())


def findings_report(root: Path | Sweep) -> tuple[Table, list[str], Path] | None:
    """`schola report`'s findings: write report_findings.csv (every field in full) under `root`; return the
    terminal table, one line per finding saying which arms support it, and the CSV's path (None: no findings)."""
    sweep = Sweep.read(root)
    root, (varying, rows) = sweep.root, sweep_findings(sweep)
    if not rows:
        return None
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    path = write_atomic(root / "report_findings.csv", text.getvalue())
    shown = [k for k in varying if any(r.get(k) is not None for r in rows)]  # not the keys a variant sets
    labels = ArmLabels(shown)
    methods = sorted({str(r["method"]) for r in rows if r.get("method")})
    caption = [*(["intervals: " + "; ".join(methods)] if methods else []), *labels.notes]
    t = Table(title="findings", caption=escape("\n".join(caption)) if caption else None)
    headers = ["run", *labels.keys.values(), "finding", "measured", "95% interval", "n", "verdict", "n to decide"]
    for h in headers:
        t.add_column(escape(h), min_width=len(h), justify="right" if h in ("measured", "n", "n to decide") else "left")
    for r in rows:
        ci = f"[{_signed(r['ci_low'])}, {_signed(r['ci_high'])}]" if r["ci_low"] is not None else "-"
        cells = [r["run"], *(labels.value(k, r.get(k)) for k in shown), r["finding"], _signed(r["value"]), ci,
                 fmt(r["n"]), r["verdict"], fmt(r["n_needed"])]  # fmt: skip
        t.add_row(*(escape(str(c)) for c in cells))
    return t, verdict_lines(rows, labels), path


def verdict_lines(rows: list[dict[str, Any]], labels: ArmLabels) -> list[str]:
    """Per finding, which arms support it, contradict it, leave it open or cannot measure it."""
    lines = []
    for name in dict.fromkeys(r["finding"] for r in rows):
        by_verdict: dict[str, list[str]] = {}
        for r in rows:
            if r["finding"] == name:
                by_verdict.setdefault(str(r["verdict"]), []).append(labels.arm(r))
        order = ("supported", "contradicted", "inconclusive", "unmeasured")
        parts = [f"{v} in {len(by_verdict[v])} ({'; '.join(by_verdict[v])})" for v in order if v in by_verdict]
        why = dict.fromkeys(str(r["reason"]) for r in rows if r["finding"] == name and r["verdict"] == "unmeasured")
        parts += [f"not measured: {'; '.join(why)}"] if why else []
        lines.append(f"{name}: " + ", ".join(parts))
    return lines


def plot(rows: list[dict[str, Any]], varying: list[str]) -> bytes:
    """A bar per run and metric with its CI, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"text.parse_math": False}):  # labels are config values: `$x$` is text, not TeX
        return _plot(plt, rows, varying)


def _plot(plt: Any, rows: list[dict[str, Any]], varying: list[str]) -> bytes:
    series = sorted({(r["metric"], r["labels"]) for r in rows})
    configs = sorted({r["run"] for r in rows})
    names = ArmLabels(varying)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(series) * max(1, len(configs)) / 2), 4))
    width = 0.8 / max(1, len(configs))
    for j, run in enumerate(configs):
        xs, ys, lo, hi = [], [], [], []
        for i, s in enumerate(series):
            match = [r for r in rows if r["run"] == run and (r["metric"], r["labels"]) == s and r["value"] is not None]
            if match:
                r = match[0]
                xs.append(i + j * width)
                ys.append(r["value"])
                lo.append(r["value"] - (r["ci_low"] if r["ci_low"] is not None else r["value"]))
                hi.append((r["ci_high"] if r["ci_high"] is not None else r["value"]) - r["value"])
        first = next(r for r in rows if r["run"] == run)
        label = names.arm(first) + (f" ({run})" if first.get("status") == "pooled" else "")
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=label)
    ax.set_xticks([i + width * (len(configs) - 1) / 2 for i in range(len(series))])
    ax.set_xticklabels([f"{m}\n{lab}" for m, lab in series], fontsize=7)
    ax.set_ylabel("value (95% CI)")
    ax.legend(fontsize=7)
    if names.notes:  # long values in full under the plot, wrapped to its width
        wrapped = [textwrap.fill(n, 110, max_lines=4, placeholder=" …") for n in names.notes]
        fig.text(0.0, -0.08, "\n".join(wrapped), fontsize=7, va="top", ha="left", transform=ax.transAxes)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight")  # long labels: the figure grows to hold them
    plt.close(fig)
    return png.getvalue()
