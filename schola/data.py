"""The generic data loader: JSONL, JSON or CSV records (or records inline in the YAML), with field mapping."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schola.errors import ConfigError


class DataConfig(BaseModel):
    """`scenario.data` of a scenario that uses the generic loader."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, description="a .jsonl, .json or .csv file; relative to the cwd or the YAML")
    records: list[dict[str, Any]] | None = Field(None, description="records written inline")
    fields: dict[str, str] = Field(default_factory=dict, description="episode field -> record column")
    id_field: str | None = Field(None, description="column with a stable episode id; default: the row index")


def resolve_path(path: str, *, base: str | None, key: str = "scenario.data.path") -> Path:
    """`path` as given, else relative to the scenario YAML's folder; ConfigError if neither exists."""
    candidates = [Path(path).expanduser()]
    if base and not Path(path).is_absolute():
        candidates.append(Path(base).parent / path)
    for c in candidates:
        if c.exists():
            return c
    raise ConfigError(f"data file not found: {path} (looked in {', '.join(str(c) for c in candidates)})", key=key)


def read_records(path: Path, *, key: str = "scenario.data.path") -> list[dict[str, Any]]:
    """Rows of a JSONL, JSON (a list of objects) or CSV file; a bad row is a ConfigError naming its line."""
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".csv":
        return [dict(r) for r in csv.DictReader(text.splitlines())]
    if suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}", key=key) from None
        if not isinstance(rows, list):
            raise ConfigError(f"{path}: expected a JSON list of objects", key=key)
        return rows
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{i}: invalid JSON line ({e.msg}); expected one object per line", key=key) from None
    return rows


def map_fields(rows: list[dict[str, Any]], fields: dict[str, str], *, source: str) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(rows):
        missing = [col for col in fields.values() if col not in row]
        if missing:
            raise ConfigError(
                f"{source}: record {i} has no column(s) {', '.join(missing)} (has: {', '.join(row)})",
                key="scenario.data.fields",
            )
        out.append({**row, **{name: row[col] for name, col in fields.items()}})
    return out


def load_records(data: DataConfig, *, source: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """Episodes of the generic loader, each with an `id`."""
    if data.records is not None:
        rows, where = data.records, "scenario.data.records"
    elif data.path:
        path = resolve_path(data.path, base=source)
        rows, where = read_records(path), str(path)
    else:
        raise ConfigError("expected data.path (a JSONL/JSON/CSV file) or data.records", key="scenario.data")
    rows = map_fields(rows, data.fields, source=where)
    for i, row in enumerate(rows):
        row["id"] = str(row[data.id_field]) if data.id_field else str(row.get("id", i))
    return rows
