"""What the viewer shows, read from run directories: one JSON-able payload per run (status, redacted config, usage,
metrics, plots, graph) whose episodes travel as gzip+base64 blocks, decoded lazily in the browser."""

from __future__ import annotations

import base64
import gzip
import json
import math
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from schola.errors import ConfigError
from schola.report import find_runs, plot, read_run, sweep_rows, wall_s
from schola.secrets import env_secrets, redact, redact_config
from schola.store import STAGE_EPISODE, RunStore
from schola.view.layout import node_stats, scenario_graphs

CHUNK = 100  # episodes per compressed block: opening one episode decodes at most this many
MAX_PLOT_BYTES = 8_000_000


def finite(obj: Any) -> Any:
    """`obj` with NaN and infinities as None (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:  # a NaN somewhere: the slow path
        return json.dumps(finite(obj), ensure_ascii=False, separators=(",", ":"), default=str)


def packed(obj: Any) -> str:
    """gzip+base64 of `obj` as JSON (mtime 0: the same run gives the same bytes)."""
    return base64.b64encode(gzip.compress(to_json(obj).encode("utf-8"), compresslevel=6, mtime=0)).decode("ascii")


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def roles_of(scenario: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Agent name (`teacher`, `students.0` or a member's own name) -> role kind, persona and backend."""
    out = {}
    for key, spec in (scenario.get("roles") or {}).items():
        members = [(key, spec)] if isinstance(spec, dict) else [
            (m.get("name") or f"{key}.{i}", m) for i, m in enumerate(spec or []) if isinstance(m, dict)
        ]  # fmt: skip
        for name, m in members:
            out[str(name)] = {
                "role": m.get("role"),
                "persona": m.get("persona") or "",
                "backend": m.get("backend", "default"),
            }
    return out


def _clean(value: Any, secrets: list[str]) -> Any:
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _clean(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, secrets) for v in value]
    return value


class Transcript:
    """A run's transcript, read in one pass that keeps only where each episode's lines are (byte offsets), so a
    run of a million replies costs megabytes here, not gigabytes; an episode's lines are read back when needed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets: dict[str, list[int]] = {}

    def scan(self) -> Iterator[dict[str, Any]]:
        """Every line, once (damaged ones dropped), noting each episode's offsets."""
        if not self.path.is_file():
            return
        with self.path.open("rb") as f:
            pos = 0
            for raw in f:
                start, pos = pos, pos + len(raw)
                try:
                    line = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue
                if isinstance(line, dict):
                    self.offsets.setdefault(str(line.get("episode")), []).append(start)
                    yield line

    def lines(self, episode: str) -> list[dict[str, Any]]:
        """An episode's lines, read back by their offsets."""
        out = []
        with self.path.open("rb") as f:
            for start in self.offsets.get(episode, []):
                f.seek(start)
                out.append(json.loads(f.readline().decode("utf-8")))
        return out


def episodes(run_dir: Path, transcript: Transcript, secrets: list[str]) -> dict[str, Any]:
    """The episode index (one small row per episode) and the compressed blocks of their conversations."""

    class _Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, eid: str) -> list[dict[str, Any]]:
            return transcript.lines(eid)

    by_episode: dict[str, list[dict[str, Any]]] = _Lazy()
    results = RunStore(run_dir).results()
    finished = {r["episode"] for r in results}
    records = [(r, "finished") for r in results] + [
        ({"episode": e, "round": transcript.lines(e)[0].get("round")}, "stage" if e == STAGE_EPISODE else "unfinished")
        for e in transcript.offsets if e not in finished
    ]  # fmt: skip
    index: list[dict[str, Any]] = []
    chunks: list[str] = []
    chunk: dict[str, Any] = {}
    score_keys: dict[str, None] = {}
    for i, (r, status) in enumerate(records):
        eid = str(r["episode"])
        steps = by_episode[eid]
        scores = r.get("scores") if isinstance(r.get("scores"), dict) else {}
        score_keys.update(dict.fromkeys(scores))
        tokens = sum(int(s.get("prompt_tokens") or 0) + int(s.get("completion_tokens") or 0) for s in steps)
        latency = sum(float(s.get("latency_s") or 0) for s in steps)
        index.append({"id": eid, "round": r.get("round"), "status": status, "scores": scores, "tokens": tokens,
                      "steps": len(steps), "latency_s": round(latency, 6), "cached": sum(bool(s.get("cached")) for s in steps),
                      "chunk": len(chunks)})  # fmt: skip
        chunk[eid] = _clean(
            {"inputs": r.get("inputs"), "outputs": r.get("outputs"),
             "steps": [{k: v for k, v in s.items() if k not in ("episode", "round")} for s in steps]},
            secrets,
        )  # fmt: skip
        if len(chunk) == CHUNK or i == len(records) - 1:
            chunks.append(packed(chunk))
            chunk = {}
    return {
        "index": packed(_clean(index, secrets)),
        "count": len(index),
        "score_keys": list(score_keys),
        "chunks": chunks,
    }


def plots(paths: Iterable[Path]) -> list[dict[str, str]]:
    out = []
    for p in sorted(paths):
        size = p.stat().st_size
        if size > MAX_PLOT_BYTES:
            out.append({"name": p.name, "note": f"{size / 1e6:.1f} MB: too large to inline; open the file itself"})
        else:
            out.append({"name": p.name, "uri": data_uri(p)})
    return out


def run_payload(run_dir: Path, *, name: str = ".") -> dict[str, Any]:
    """Everything the viewer shows of one run directory; a damaged file is a ConfigError naming it."""
    metrics = read_run(run_dir)
    store = RunStore(run_dir)
    try:
        config = store.read_config()
    except ConfigError:
        if (run_dir / "config.yaml").exists():
            raise
        config = {}
    secrets = env_secrets(config)
    config = redact_config(config, secrets)
    status = store.read_json("status.json") or {"status": metrics.get("status", "?")}
    transcript = Transcript(run_dir / "transcript.jsonl")
    stats = node_stats(transcript.scan())
    scenario = config.get("scenario") if isinstance(config.get("scenario"), dict) else {}
    return {
        "name": name,
        "dir": str(run_dir),
        "scenario": str(metrics.get("scenario") or scenario.get("name") or "?"),
        "variant": scenario.get("variant"),
        "description": scenario.get("description") or "",
        "status": _clean(status, secrets),
        "episode_counts": metrics.get("episodes") or {},
        "wall_s": wall_s(run_dir),
        "metrics": metrics["metrics"],
        "caption": str(metrics.get("caption") or ""),
        "usage": metrics.get("usage") or {},
        "exports": metrics.get("exports") or [],
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True) if config else "",
        "roles": roles_of(scenario),
        "plots": plots(run_dir.glob("*.png")),
        "graphs": scenario_graphs(scenario, stats),
        "episodes": episodes(run_dir, transcript, secrets),
    }


def sweep_payload(root: Path) -> dict[str, Any]:
    """Every run below `root` and their comparison (the config keys that differ, metrics with CIs, the plot)."""
    varying, rows = sweep_rows(root)
    with tempfile.TemporaryDirectory() as tmp:
        uri = data_uri(plot(rows, varying, Path(tmp) / "report.png"))
    runs = [run_payload(r, name=str(r.relative_to(root)) if r != root else ".") for r in find_runs(root)]
    return {"root": str(root), "varying": varying, "rows": finite(redact_config(rows)), "plot": uri, "runs": runs}
