"""The run directory (Hydra's output directory): config.yaml, transcript.jsonl, results.jsonl, metrics.json,
status.json and ledger.json. Transcript and results are append-only; resume drops the lines of unfinished
episodes, and any torn or damaged line, and keeps the rest."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml

from schola.errors import ConfigError
from schola.secrets import env_secrets, redact_config

# A lone surrogate (a server's broken decoding of a reply, sent as the JSON escape \ud800) cannot be written as
# UTF-8; written as its escape instead, it is again that escape inside a JSON string, so the line reads back as it was.
LONE_SURROGATES = "backslashreplace"
# Folders a run directory may never be inside (pseudo file systems).
FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file whole or not at all (a crash never leaves half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", errors=LONE_SURROGATES)
    tmp.replace(path)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV text (columns from the first row; None as an empty cell; floats to 4 decimals)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else [], lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(
        {k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows
    )
    return out.getvalue()


def dumps(record: Any) -> str:
    """One JSON line, keys sorted: identical runs write identical bytes."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=str)


def check_run_dir(path: str | Path | None) -> Path:
    """The run directory a user asked for, checked before anything is written: not empty, not a file, not under
    a file, not in a pseudo file system, and creatable."""
    if path is None or not str(path).strip():
        raise ConfigError("the run directory is empty; give a folder (hydra.run.dir=runs/my-run)", key="hydra.run.dir")
    p = Path(path).expanduser()
    try:  # a name too long, a loop of links, a folder without permission: OSError anywhere below
        resolved = p.resolve()
        if any(str(resolved) == r or str(resolved).startswith(r + "/") for r in FORBIDDEN_ROOTS):
            raise ConfigError(f"{p} is inside {resolved.parts[1]!r}, not a place for a run", key="hydra.run.dir")
        for parent in [resolved, *resolved.parents]:
            if parent.exists() and not parent.is_dir():
                what = "is a file" if parent == resolved else f"is under the file {parent}"
                raise ConfigError(f"the run directory {p} {what}", key="hydra.run.dir")
        resolved.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the run directory {p}: {e.strerror}", key="hydra.run.dir") from None
    return p


class RunStore:
    """Files of one run.

    Args:
        directory: the run directory (created).
    """

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._transcript: IO[str] | None = None
        self._results: IO[str] | None = None
        self._ledger_written = 0.0

    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    def write_config(self, config: dict[str, Any]) -> None:
        safe = redact_config(config, env_secrets(config))
        # whole or not at all: every resume writes it again, and a kill mid-write must not leave a run unresumable
        write_text_atomic(self.config_path, yaml.safe_dump(safe, sort_keys=False, allow_unicode=True))

    def read_config(self) -> dict[str, Any]:
        """The saved config; a missing, damaged or foreign file is a ConfigError naming it."""
        path = self.config_path
        if not path.is_file():
            raise ConfigError(f"{self.dir} is not a run directory (no config.yaml)", key="resume")
        try:
            saved = yaml.load(path.read_bytes().decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except UnicodeDecodeError as e:
            raise ConfigError(f"not UTF-8 text (byte {e.start})", file=str(path)) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"malformed YAML: {str(e).splitlines()[0]}", file=str(path)) from None
        if not isinstance(saved, dict):
            raise ConfigError("expected a run's saved config (a mapping with scenario:, backend:, ...)", file=str(path))
        missing = [k for k in ("scenario", "backend") if not isinstance(saved.get(k), dict)]
        if missing:
            raise ConfigError(f"not a run's saved config: no {' and no '.join(missing)} section", file=str(path))
        return saved

    def has_run(self) -> bool:
        return any((self.dir / n).exists() for n in ("results.jsonl", "transcript.jsonl", "metrics.json"))

    def open(self) -> None:
        self._transcript = open(self.dir / "transcript.jsonl", "a", encoding="utf-8", errors=LONE_SURROGATES)  # noqa: SIM115
        self._results = open(self.dir / "results.jsonl", "a", encoding="utf-8", errors=LONE_SURROGATES)  # noqa: SIM115

    def close(self) -> None:
        for f in (self._transcript, self._results):
            if f is not None:
                f.close()
        self._transcript = self._results = None

    def transcript(self, record: dict[str, Any]) -> None:
        assert self._transcript is not None, "RunStore.open() first"
        self._transcript.write(dumps(record) + "\n")

    def result(self, record: dict[str, Any]) -> None:
        """Append a finished episode; the transcript is flushed first so a finished episode is whole on disk."""
        assert self._transcript is not None and self._results is not None, "RunStore.open() first"
        self._transcript.flush()
        self._results.write(dumps(record) + "\n")
        self._results.flush()

    def results(self) -> list[dict[str, Any]]:
        """Finished episodes, each once (a duplicated line counts once; damaged lines are dropped)."""
        seen: set[str] = set()
        out = []
        for r in read_jsonl(self.dir / "results.jsonl"):
            eid = r.get("episode")
            if isinstance(eid, str) and isinstance(r.get("inputs"), dict) and eid not in seen:
                seen.add(eid)
                out.append(r)
        return out

    def prepare_resume(self) -> list[dict[str, Any]]:
        """Keep finished episodes; drop transcript lines of the others (and any torn or damaged line)."""
        for name in ("results.jsonl", "transcript.jsonl", "ledger.json"):
            path = self.dir / name
            if path.exists() and not path.is_file():
                raise ConfigError(f"{path} is not a file; this run directory is damaged", key="resume")
        done = self.results()
        self._rewrite("results.jsonl", done)
        keep = {r["episode"] for r in done}  # stages run again on resume and log their calls again
        lines = [r for r in read_jsonl(self.dir / "transcript.jsonl") if r.get("episode") in keep]
        self._rewrite("transcript.jsonl", lines)
        return done

    def _rewrite(self, name: str, records: list[dict[str, Any]]) -> None:
        write_text_atomic(self.dir / name, "".join(dumps(r) + "\n" for r in records))

    def write_json(self, name: str, payload: dict[str, Any]) -> None:
        """Write `name` atomically (a crash never leaves half a file), keys sorted."""
        write_text_atomic(self.dir / name, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, default=str))

    def write_metrics(self, scenario: str, rows: list[dict[str, Any]], **extra: Any) -> None:
        self.write_json("metrics.json", {"scenario": scenario, "metrics": rows, **extra})

    def write_status(self, **status: Any) -> None:
        self.write_json("status.json", redact_config(status))

    def write_ledger(self, ledger: Callable[[], dict[str, Any]], *, wall_s: float, every_s: float = 0.0) -> None:
        """Save the run's usage (seeded again on resume); at most once per `every_s` seconds (`ledger` is only
        called when it is written)."""
        now = time.monotonic()
        if every_s and now - self._ledger_written < every_s:
            return
        self._ledger_written = now
        self.write_json("ledger.json", {**ledger(), "wall_s": round(wall_s, 3)})

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON file of the run, or None if absent; a damaged one is a ConfigError naming it."""
        path = self.dir / name
        if not path.exists():
            return None
        try:
            payload = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, IsADirectoryError) as e:
            raise ConfigError(f"damaged ({type(e).__name__}); not a file Schola wrote", file=str(path)) from None
        if not isinstance(payload, dict):
            raise ConfigError("damaged: expected a JSON object", file=str(path))
        return payload


STAGE_EPISODE = "-stage-"  # transcript lines of roles asked by run-level stages


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file; a torn last line (a crash mid-write), a line that is not UTF-8 or not a JSON
    object is dropped."""
    if not path.is_file():
        return []
    out = []
    with path.open("rb") as f:
        for raw in f:
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(record, dict):
                out.append(record)
    return out

