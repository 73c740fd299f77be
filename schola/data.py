"""The generic data loader: records from a JSONL, JSON or CSV file (or inline in the YAML), then column types,
field mapping (with nested paths), episode ids, a filter, a seeded shuffle and a seeded sample, in that order.

Bad data is a ConfigError naming the file, the row (its line) and the column. Nothing is read from a path that
is not a regular file, or that is larger than MAX_DATA_BYTES; inline records are bounded too (large data
belongs in a file)."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import stat
from itertools import zip_longest
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schola import templates
from schola.errors import ConfigError

#: Largest data file the generic loader reads (bytes); a larger one is refused before reading.
MAX_DATA_BYTES = 256 * 2**20
#: Most records `data.records` may hold inline in a YAML file.
MAX_INLINE_RECORDS = 10_000
#: Largest size of `data.records` written as JSON (bytes).
MAX_INLINE_BYTES = 5_000_000

Row = tuple[str, dict[str, Any]]  # (where the record is, for messages: "file:line", "file: item 3"; the record)
_INDEX = re.compile(r"-?\d+")
_TRUE, _FALSE = {"true", "yes", "y", "t", "1"}, {"false", "no", "n", "f", "0"}


class DataConfig(BaseModel):
    """`scenario.data` of a scenario that uses the generic loader."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(
        None,
        description="a UTF-8 .jsonl (one object per line), .json (a list of objects) or .csv (a header row, then one "
        "record per row; an empty cell is missing, null) file; relative to the cwd or the scenario YAML's folder; "
        f"at most MAX_DATA_BYTES ({MAX_DATA_BYTES // 2**20} MiB)",
    )
    records: list[dict[str, Any]] | None = Field(
        None,
        description=f"records written inline; at most MAX_INLINE_RECORDS ({MAX_INLINE_RECORDS:,}) records and "
        f"MAX_INLINE_BYTES ({MAX_INLINE_BYTES // 10**6} MB) as JSON: more belongs in a file named by data.path",
    )
    types: dict[str, Literal["int", "float", "bool", "str"]] = Field(
        default_factory=dict,
        description="column -> int, float, bool (true/false, yes/no, 1/0) or str: converts that column of every "
        "record (CSV cells are text); a missing value stays null; a bad value names file, row and column",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="episode field <- record column, added to the record; the column may be a dotted path into "
        "nested objects and lists: `answer: targets.0`, `facts: meta.facts`",
    )
    id_field: str | None = Field(
        None,
        description="column (or dotted path) holding each record's episode id; default: the record's own `id`, "
        "else its row index (0-based, in the file before filter, shuffle and sample)",
    )
    filter: str | None = Field(
        None,
        description="a sandboxed expression over a record's fields (after `fields`); only records for which it is "
        "true are kept, e.g. `split == 'test' and len(question) < 200`",
    )
    shuffle: bool = Field(False, description="shuffle the records (after `filter`), seeded by the run's `seed`")
    sample: int | None = Field(
        None,
        ge=1,
        description="keep a random subset of this many records (after `filter` and `shuffle`), seeded by the run's "
        "`seed`; without `shuffle` they stay in file order",
    )

    @field_validator("records", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(value) > MAX_INLINE_RECORDS:
                raise ValueError(
                    f"{len(value):,} inline records, over the limit of {MAX_INLINE_RECORDS:,} "
                    "(MAX_INLINE_RECORDS): put them in a .jsonl file and set data.path"
                )
            try:
                size = len(json.dumps(value, default=str))
            except (ValueError, RecursionError):
                size = MAX_INLINE_BYTES + 1
            if size > MAX_INLINE_BYTES:
                raise ValueError(
                    f"inline records of {size:,} bytes, over the limit of {MAX_INLINE_BYTES:,} (MAX_INLINE_BYTES): "
                    "put them in a .jsonl file and set data.path"
                )
        return value


def resolve_path(path: str, *, base: str | None, key: str = "scenario.data.path") -> Path:
    """`path` as given, else relative to the scenario YAML's folder; ConfigError if neither exists."""
    candidates = [Path(path).expanduser()]
    if base and not Path(path).is_absolute():
        candidates.append(Path(base).parent / path)
    for c in candidates:
        if c.exists():
            return c
    raise ConfigError(f"data file not found: {path} (looked in {', '.join(str(c) for c in candidates)})", key=key)


def read_text(path: Path, *, key: str = "scenario.data.path") -> str:
    """A data file's text: only a regular file of at most MAX_DATA_BYTES, decoded as UTF-8 (a BOM is dropped);
    a ConfigError naming the file (and the line of a byte that is not UTF-8) otherwise."""
    too_large = ConfigError(
        f"{path} is larger than {MAX_DATA_BYTES:,} bytes, the generic loader's limit (schola.data.MAX_DATA_BYTES): "
        "split it, or read it with a scenario's own loader",
        key=key,
    )
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{path} is a directory; expected a .jsonl, .json or .csv file", key=key)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path} is not a regular file (a device, FIFO or socket); expected a data file", key=key)
        if info.st_size > MAX_DATA_BYTES:
            raise too_large
        with path.open("rb") as f:
            raw = f.read(MAX_DATA_BYTES + 1)  # the size a file reports may be wrong (/proc)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})", key=key) from None
    if len(raw) > MAX_DATA_BYTES:
        raise too_large
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"{path}:{line}: byte 0x{raw[e.start]:02x} is not UTF-8 text; save the file as UTF-8", key=key
        ) from None


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _record(value: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a JSON object (a record), found {_kind(value)}", key=key)
    return value


def read_rows(path: Path, *, key: str = "scenario.data.path") -> list[Row]:
    """The records of a JSONL, JSON or CSV file, each with where it is (`file:line`, `file: item i`)."""
    text = read_text(path, key=key)
    try:
        if path.suffix.lower() == ".csv":
            return _csv_rows(path, text, key)
        if path.suffix.lower() == ".json":
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{e.lineno}: invalid JSON ({e.msg})", key=key) from None
            if not isinstance(value, list):
                raise ConfigError(f"{path}: expected a JSON list of objects, found {_kind(value)}", key=key)
            return [(f"{path}: item {i}", _record(v, f"{path}: item {i}", key)) for i, v in enumerate(value)]
        rows: list[Row] = []
        for i, line in enumerate(text.split("\n"), 1):  # not splitlines(): JSON strings may hold U+2028
            if line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(
                        f"{path}:{i}: invalid JSON line ({e.msg}); expected one object per line", key=key
                    ) from None
                rows.append((f"{path}:{i}", _record(value, f"{path}:{i}", key)))
        return rows
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply", key=key) from None


def _csv_rows(path: Path, text: str, key: str) -> list[Row]:
    """Rows under a header; quoted cells keep their newlines; an empty cell is missing (None)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return []
        if repeated := sorted({c for c in header if header.count(c) > 1}):
            raise ConfigError(f"{path}:1: the header repeats column(s) {', '.join(map(repr, repeated))}", key=key)
        rows: list[Row] = []
        line = reader.line_num + 1
        for cells in reader:
            if cells:
                where = f"{path}:{line} (row {len(rows) + 1})"
                if len(cells) > len(header):
                    raise ConfigError(f"{where}: {len(cells)} cells, but the header has {len(header)} columns", key=key)
                rows.append((where, {c: v or None for c, v in zip_longest(header, cells)}))
            line = reader.line_num + 1
    except csv.Error as e:
        raise ConfigError(f"{path}:{reader.line_num}: {e}", key=key) from None
    return rows


def read_records(path: Path, *, key: str = "scenario.data.path") -> list[dict[str, Any]]:
    """Records of a JSONL, JSON (a list of objects) or CSV file; a bad row is a ConfigError naming its line."""
    return [record for _, record in read_rows(path, key=key)]


def _convert(value: Any, kind: str, where: str, column: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "bool" and not isinstance(value, bool):
            text = str(value).strip().lower()
            if text not in _TRUE | _FALSE:
                raise ValueError
            return text in _TRUE
        if kind == "int" and isinstance(value, float):
            if not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(value, (dict, list)) or (kind in ("int", "float") and isinstance(value, bool)):
            raise ValueError
        return {"int": int, "float": float, "bool": bool, "str": str}[kind](value)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"{where}: column '{column}': cannot read {value!r} as {kind}", key="scenario.data.types"
        ) from None


def lookup(record: dict[str, Any], path: str) -> Any:
    """`record[path]`, else the value at a dotted path of keys and list indexes (`targets.0`); KeyError if none."""
    if path in record:
        return record[path]
    value: Any = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and _INDEX.fullmatch(part) and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def _select(rows: list[Row], data: DataConfig, *, seed: int, source: str) -> list[Row]:
    """`filter`, then `shuffle`, then `sample`."""
    if data.filter:
        key = "scenario.data.filter"
        templates.check(data.filter, is_expression=True, key=key)
        kept = []
        for where, record in rows:
            try:
                if templates.evaluate(data.filter, record, key=key):
                    kept.append((where, record))
            except ConfigError as e:
                raise ConfigError(f"{where}: {e.detail}", key=key) from None
        if rows and not kept:
            raise ConfigError(f"{source}: the filter {data.filter!r} kept none of the {len(rows)} records", key=key)
        rows = kept
    if data.shuffle:
        random.Random(f"schola.data.shuffle/{seed}").shuffle(rows)
    if data.sample is not None and data.sample < len(rows):
        picked = sorted(random.Random(f"schola.data.sample/{seed}").sample(range(len(rows)), data.sample))
        rows = [rows[i] for i in picked]
    return rows


def load_records(data: DataConfig, *, source: str | None = None, seed: int = 0, **_: Any) -> list[dict[str, Any]]:
    """Episodes of the generic loader, each with a string `id`: from `id_field`, else the record's own `id`, else
    its row index."""
    if data.records is not None:
        rows: list[Row] = [(f"scenario.data.records[{i}]", dict(r)) for i, r in enumerate(data.records)]
        where = "scenario.data.records"
    elif data.path:
        path = resolve_path(data.path, base=source)
        rows, where = read_rows(path), str(path)
    else:
        raise ConfigError("expected data.path (a JSONL/JSON/CSV file) or data.records", key="scenario.data")
    for column in data.types:
        if rows and not any(column in record for _, record in rows):
            have = sorted({c for _, record in rows for c in record})
            raise ConfigError(
                f"{where}: types names column '{column}', which no record has (columns: {', '.join(have)})",
                key="scenario.data.types",
            )
    episodes: list[Row] = []
    for i, (at, row) in enumerate(rows):
        for column, kind in data.types.items():
            if column in row:
                row[column] = _convert(row[column], kind, at, column)
        try:
            episode = {**row, **{name: lookup(row, col) for name, col in data.fields.items()}}
        except KeyError as e:
            raise ConfigError(
                f"{at}: record has no column '{e.args[0]}' (has: {', '.join(row)})", key="scenario.data.fields"
            ) from None
        if data.id_field:
            try:
                value = lookup(row, data.id_field)
            except KeyError:
                value = None
            if value is None:
                raise ConfigError(f"{at}: no id in column '{data.id_field}' (id_field)", key="scenario.data.id_field")
            episode["id"] = str(value)
        else:
            episode["id"] = str(i if episode.get("id") is None else episode["id"])
        episodes.append((at, episode))
    return [episode for _, episode in _select(episodes, data, seed=seed, source=where)]
