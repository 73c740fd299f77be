"""The run directory (Hydra's output directory): config.yaml, transcript.jsonl, results.jsonl, metrics.json and
status.json. Transcript and results are append-only; resume drops the lines of unfinished episodes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from schola.backends.base import redact
from schola.errors import ConfigError

SECRET_KEY = re.compile(r"(api_?key|token|secret|password)$", re.I)


def redact_config(obj: Any, secrets: list[str]) -> Any:
    """A copy with every secret-looking key and every known secret value replaced by '***'."""
    if isinstance(obj, dict):
        return {k: "***" if SECRET_KEY.search(str(k)) and v else redact_config(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_config(v, secrets) for v in obj]
    return redact(obj, secrets) if isinstance(obj, str) else obj


def env_secrets(config: dict[str, Any]) -> list[str]:
    """The values of every environment variable a config names through `api_key_env`."""
    names: set[str] = set()

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "api_key_env" and isinstance(v, str):
                    names.add(v)
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(config)
    return [v for n in names if len(v := os.environ.get(n, "")) >= 4]


class RunStore:
    """Files of one run.

    Args:
        directory: the run directory (created).
    """

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._transcript = None
        self._results = None

    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    def write_config(self, config: dict[str, Any]) -> None:
        safe = redact_config(config, env_secrets(config))
        self.config_path.write_text(yaml.safe_dump(safe, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            raise ConfigError(f"{self.dir} is not a run directory (no config.yaml)", key="resume")
        return yaml.safe_load(self.config_path.read_text()) or {}

    def open(self) -> None:
        self._transcript = open(self.dir / "transcript.jsonl", "a", encoding="utf-8")
        self._results = open(self.dir / "results.jsonl", "a", encoding="utf-8")

    def close(self) -> None:
        for f in (self._transcript, self._results):
            if f is not None:
                f.close()
        self._transcript = self._results = None

    def transcript(self, record: dict[str, Any]) -> None:
        self._transcript.write(json.dumps(record, ensure_ascii=False) + "\n")  # type: ignore[union-attr]

    def result(self, record: dict[str, Any]) -> None:
        """Append a finished episode; the transcript is flushed first so a finished episode is whole on disk."""
        self._transcript.flush()  # type: ignore[union-attr]
        self._results.write(json.dumps(record, ensure_ascii=False) + "\n")  # type: ignore[union-attr]
        self._results.flush()  # type: ignore[union-attr]

    def results(self) -> list[dict[str, Any]]:
        return read_jsonl(self.dir / "results.jsonl")

    def prepare_resume(self) -> list[dict[str, Any]]:
        """Keep finished episodes; drop transcript lines of the others (and any torn last line)."""
        done = self.results()
        self._rewrite("results.jsonl", done)
        keep = {r["episode"] for r in done}
        self._rewrite("transcript.jsonl", [r for r in read_jsonl(self.dir / "transcript.jsonl") if r.get("episode") in keep])
        return done

    def _rewrite(self, name: str, records: list[dict[str, Any]]) -> None:
        tmp = self.dir / (name + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        tmp.replace(self.dir / name)

    def write_metrics(self, scenario: str, rows: list[dict[str, Any]], **extra: Any) -> None:
        payload = {"scenario": scenario, "metrics": rows, **extra}
        (self.dir / "metrics.json").write_text(json.dumps(payload, indent=2))

    def write_status(self, **status: Any) -> None:
        (self.dir / "status.json").write_text(json.dumps(status, indent=2))

    def read_json(self, name: str) -> dict[str, Any] | None:
        path = self.dir / name
        return json.loads(path.read_text()) if path.exists() else None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (a crash mid-write) is dropped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
