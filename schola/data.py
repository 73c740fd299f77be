"""Data files, and the generic data loader.

Every data file a loader reads goes through `DataFiles` (or the functions under it): resolved beside the
scenario YAML, read only from a regular file of at most MAX_DATA_BYTES, decoded as UTF-8, parsed by one of the
format readers (JSONL, JSON, CSV, TSV, YAML) with lone surrogates replaced; a problem is a ConfigError naming the
file, its line and the config key.

The generic loader: records from such a file (or inline in the YAML), then column types, field mapping (with
nested paths), episode ids, a filter, a seeded shuffle and a seeded sample, in that order. Bad data is a
ConfigError naming the file, the row (its line) and the column; inline records are bounded too (large data
belongs in a file)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import os
import random
import re
import stat
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import zip_longest
from pathlib import Path
from typing import Any, BinaryIO, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schola import templates
from schola.compose import load_yaml
from schola.errors import ConfigError
from schola.store import read_bounded
from schola.templates import lookup  # the one dotted-path lookup; `schola.data.lookup` for loaders

#: Largest data file the generic loader reads (bytes); a larger one is refused before reading.
MAX_DATA_BYTES = 256 * 2**20
#: Most records `data.records` may hold inline in a YAML file.
MAX_INLINE_RECORDS = 10_000
#: Largest size of `data.records` written as JSON (bytes).
MAX_INLINE_BYTES = 5_000_000

Row = tuple[str, dict[str, Any]]  # (where the record is, for messages: "file:line", "file: item 3"; the record)
KEY = "scenario.data.path"  # the config key a data file's errors name unless told another
_SURROGATE = re.compile("[\ud800-\udfff]")
_TRUE, _FALSE = {"true", "yes", "y", "t", "1"}, {"false", "no", "n", "f", "0"}


class DataConfig(BaseModel):
    """`scenario.data` of a scenario that uses the generic loader."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(
        None,
        description="a UTF-8 .jsonl (one object per line), .json (a list of objects) or .csv (a header row, then one "
        "record per row; an empty cell is missing, null) or .tsv (the same, tab-separated) file; relative to the cwd or the scenario YAML's folder; "
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
            return replace_surrogates(value)
        return value


def resolve_path(path: str, *, base: str | None, key: str = KEY) -> Path:
    """`path` as given, else relative to the scenario YAML's folder; ConfigError if neither exists."""
    candidates = [Path(path).expanduser()]
    if base and not Path(path).is_absolute():
        candidates.append(Path(base).parent / path)
    for c in candidates:
        if c.exists():
            return c
    raise ConfigError(f"data file not found: {path} (looked in {', '.join(str(c) for c in candidates)})", key=key)


def read_bytes(path: Path, *, key: str = KEY) -> bytes:
    """A data file's bytes: only a regular file of at most MAX_DATA_BYTES; a ConfigError naming the file otherwise.

    The file is opened first (non-blocking, so a FIFO cannot hang it) and the open file is checked, so what is
    checked is what is read."""
    too_large = ConfigError(
        f"{path} is larger than {MAX_DATA_BYTES:,} bytes, the limit of a data file (schola.data.MAX_DATA_BYTES): "
        "split it, or sample it into a smaller file",
        key=key,
    )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise ConfigError(f"{path} is a directory; expected a data file", key=key)
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(
                    f"{path} is not a regular file (a device, FIFO or socket); expected a data file", key=key
                )
            if info.st_size > MAX_DATA_BYTES:
                raise too_large
            raw = read_bounded(f, MAX_DATA_BYTES)  # the size a file reports may be wrong (/proc)
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; expected a data file", key=key) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})", key=key) from None
    if len(raw) > MAX_DATA_BYTES:
        raise too_large
    return raw


def read_text(path: Path, *, key: str = KEY) -> str:
    """A data file's text (see `read_bytes`), decoded as UTF-8 (a BOM is dropped); a byte that is not UTF-8 is a
    ConfigError naming the file and its line."""
    raw = read_bytes(path, key=key)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"{path}:{line}: byte 0x{raw[e.start]:02x} is not UTF-8 text; save the file as UTF-8", key=key
        ) from None


def replace_surrogates(value: Any) -> Any:
    """`value` with every lone surrogate (U+D800-U+DFFF) in its strings and keys replaced by U+FFFD.

    UTF-8 text cannot hold a surrogate (`read_text` refuses its bytes), but a JSON escape (`"\\ud800"`) or a YAML one
    decodes to one, and such a string can never be written as UTF-8 (a transcript, report.html). Every parsed data
    value goes through here, so a broken character (half an emoji pair, cut by a scraper) reads as U+FFFD in every
    loader, as a browser's TextEncoder writes it, instead of failing the run's last write."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {replace_surrogates(k): replace_surrogates(v) for k, v in value.items()}
    return value


def read_document(path: Path, *, key: str = KEY) -> Any:
    """The value of a JSON file, or a YAML one (`.yaml`, `.yml`; parsed with the config's bounds), lone
    surrogates replaced; a syntax error names the file and its line."""
    text = read_text(path, key=key)
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            try:
                value = load_yaml(text, file=str(path))
            except ConfigError as e:
                raise ConfigError(f"{path}: {e.detail}", key=key) from None
            return replace_surrogates(value) if "\\" in text else value
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}: invalid JSON ({e.msg})", key=key) from None
        return replace_surrogates(value) if "\\u" in text else value
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply", key=key) from None


@contextmanager
def csv_errors(path: Path, *, key: str = KEY) -> Iterator[None]:
    """Around a loader's own CSV reading: a `csv.Error` (a quote left open runs to the end of the file, past the
    csv module's field limit) as a ConfigError naming the file."""
    try:
        yield
    except csv.Error as e:
        raise ConfigError(f"{path}: not readable as CSV ({e}); is a quote left open?", key=key) from None


class DataFiles:
    """The one way a scenario's loader reads a data file: resolve a name (as given, else beside the scenario
    YAML), then a bounded read of a regular file, UTF-8 text, and the format readers, each failure a ConfigError
    naming the file (and its line) and the config key. A loader builds one from its `source` and never opens a
    data path itself.

    Args:
        source: the scenario YAML the data paths are relative to (the loader's `source`); None: the cwd only.
    """

    def __init__(self, source: str | None = None) -> None:
        self.source = source

    def path(self, name: str | Path, *, key: str = KEY) -> Path:
        """Where `name` is: as given, else beside the scenario YAML; ConfigError if neither exists."""
        return resolve_path(str(name), base=self.source, key=key)

    def bytes(self, name: str | Path, *, key: str = KEY) -> bytes:
        """The file's bytes (a binary format such as NPZ), bounded."""
        return read_bytes(self.path(name, key=key), key=key)

    def text(self, name: str | Path, *, key: str = KEY) -> str:
        """The file's UTF-8 text, bounded."""
        return read_text(self.path(name, key=key), key=key)

    def rows(self, name: str | Path, *, key: str = KEY) -> list[Row]:
        """The records of a JSONL, JSON, CSV or TSV file, each with where it is (see `read_rows`); a file without
        any is a ConfigError naming it (a file named on purpose that holds nothing is a mistake)."""
        path = self.path(name, key=key)
        if not (rows := read_rows(path, key=key)):
            raise ConfigError(f"{path}: no records (the file is empty, or a CSV/TSV has only its header)", key=key)
        return rows

    def document(self, name: str | Path, *, key: str = KEY) -> Any:
        """The value of a JSON or YAML file (see `read_document`)."""
        return read_document(self.path(name, key=key), key=key)


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _record(value: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a JSON object (a record), found {_kind(value)}", key=key)
    return value


def read_rows(path: Path, *, key: str = KEY) -> list[Row]:
    """The records of a JSONL, JSON, CSV or TSV file (by its suffix; JSONL if none of these), each with where it
    is (`file:line`, `file: item i`); lone surrogates in JSON text are replaced (`replace_surrogates`)."""
    text = read_text(path, key=key)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, text, key, delimiter="\t" if suffix == ".tsv" else ",")
    rows = _json_rows(path, text, key)
    return [(where, replace_surrogates(record)) for where, record in rows] if "\\u" in text else rows


def _json_rows(path: Path, text: str, key: str) -> list[Row]:
    try:
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


def _csv_rows(path: Path, text: str, key: str, *, delimiter: str) -> list[Row]:
    """Rows under a header; quoted cells keep their newlines; an empty cell is missing (None)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
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


def read_records(path: Path, *, key: str = KEY) -> list[dict[str, Any]]:
    """Records of a JSONL, JSON (a list of objects), CSV or TSV file; a bad row is a ConfigError naming its line."""
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


def check_size(asked: int | None, have: int, *, key: str, what: str) -> None:
    """A size that asks for more than the data has runs what there is and says so (a warning naming the key):
    the one place for `run.episodes` and the loaders' own sizes, so no size is cut silently."""
    if asked is not None and asked > have:
        logging.getLogger("schola").warning("%s=%d, but there are only %d %s: running %d", key, asked, have, what, have)


def load_records(data: DataConfig, *, source: str | None = None, seed: int = 0, **_: Any) -> Sequence[dict[str, Any]]:
    """Episodes of the generic loader, each with a string `id`: from `id_field`, else the record's own `id`, else
    its row index. A JSONL file's episodes are a `FileRecords` (read again as they are used, never held); the
    other formats' a list."""
    if data.records is not None:
        rows: list[Row] = [(f"scenario.data.records[{i}]", dict(r)) for i, r in enumerate(data.records)]
        where = "scenario.data.records"
    elif data.path:
        path = DataFiles(source).path(data.path)
        if path.suffix.lower() not in (".csv", ".tsv", ".json"):
            return FileRecords.load(path, data, seed=seed)
        rows, where = DataFiles().rows(path), str(path)
    else:
        raise ConfigError("expected data.path (a JSONL/JSON/CSV file) or data.records", key="scenario.data")
    for column in data.types:
        if rows and not any(column in record for _, record in rows):
            _no_column(where, column, {c for _, record in rows for c in record})
    episodes = [(at, _episode(row, at, i, data)) for i, (at, row) in enumerate(rows)]
    return [episode for _, episode in _select(episodes, data, seed=seed, source=where)]


def _no_column(where: str, column: str, have: set[str]) -> None:
    raise ConfigError(
        f"{where}: types names column '{column}', which no record has (columns: {', '.join(sorted(have))})",
        key="scenario.data.types",
    )


def _episode(row: dict[str, Any], at: str, i: int, data: DataConfig) -> dict[str, Any]:
    """A record as an episode: `types` converted, `fields` added, its `id` (`id_field`, its own, else row `i`)."""
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
    return episode


def _jsonl_lines(f: BinaryIO, path: Path, key: str) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(byte offset, line number, record) of each non-blank line of an open JSONL data file, checked as
    `read_rows` checks a whole one (UTF-8, one JSON object a line, lone surrogates replaced), in one pass."""
    pos, size = 0, 0
    for number, raw in enumerate(f, 1):  # lines end at b"\n" alone: JSON strings may hold U+2028
        start, pos = pos, pos + len(raw)
        if pos > MAX_DATA_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_DATA_BYTES:,} bytes, the limit of a data file "
                              "(schola.data.MAX_DATA_BYTES): split it, or sample it into a smaller file", key=key)  # fmt: skip
        try:
            line = raw.decode("utf-8-sig" if start == 0 else "utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{path}:{number}: byte 0x{raw[e.start]:02x} is not UTF-8 text; save the file as UTF-8", key=key
            ) from None
        if not line.strip():  # as `blank` says of the bytes
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{path}:{number}: invalid JSON line ({e.msg}); expected one object per line", key=key
            ) from None
        except RecursionError:
            raise ConfigError(f"{path}: values nested too deeply", key=key) from None
        record = _record(value, f"{path}:{number}", key)
        size += 1
        yield start, number, replace_surrogates(record) if "\\u" in line else record
    if not size:
        raise ConfigError(f"{path}: no records (the file is empty, or a CSV/TSV has only its header)", key=key)


def take(episodes: Sequence[dict[str, Any]], positions: Any) -> Sequence[dict[str, Any]]:
    """The episodes at these positions (a numpy array), in this order: a `FileRecords` stays one (still unread)."""
    if isinstance(episodes, FileRecords):
        return episodes.take(positions)
    return [episodes[i] for i in positions.tolist()]


def blank(raw: bytes, *, first: bool) -> bool:
    """A line of a JSONL data file that every reader skips: whitespace only as `str.strip` sees it (a no-break
    space too), after the BOM that may open the file; undecodable bytes are not blank (the row reader names them)."""
    if raw.isascii():
        return not raw.strip()
    try:
        return not raw.decode("utf-8-sig" if first else "utf-8").strip()
    except UnicodeDecodeError:
        return False


def _open_data(path: Path, key: str = KEY) -> BinaryIO:
    """A data file opened to read: only a regular file (non-blocking open: a FIFO cannot hang it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})", key=key) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise ConfigError(f"{path} is {what}; expected a data file", key=key)
    return os.fdopen(fd, "rb")


def id_hashes(episodes: Sequence[dict[str, Any]]) -> array[int]:
    """`hash(id)` of each episode, in order (8 bytes each; a `FileRecords` is read for them)."""
    return array("q", (hash(str(e["id"])) for e in episodes))


class FileRecords(Sequence[dict[str, Any]]):
    """The episodes of a JSONL data file, never held: read again, and made episodes as the loader made them, each
    time the sequence is iterated; a file changed meanwhile is a ConfigError. Nothing per episode is kept for a
    whole file or a slice of one (`size` records from byte `start`, the first being row `first_row` of the file);
    after `filter`, `shuffle` or `sample`, where each one's line starts and its row (16 bytes an episode; its dict
    is ~0.3-1 KB).

    Made by `load` in one pass over the file that checks every line (as `read_rows` does) and applies `filter`;
    `shuffle` and `sample` then permute and pick offsets, as they would the records."""

    def __init__(
        self, path: Path, data: DataConfig, *, count: int, start: int = 0, first_row: int = 0,
        offsets: array[int] | None = None, rows: array[int] | None = None,
    ) -> None:  # fmt: skip
        self.path, self.data = path, data
        self.size, self.start, self.first_row = count, start, first_row
        self.offsets, self.rows = offsets, rows  # picked records: each one's line and its index in the file

    @classmethod
    def load(cls, path: Path, data: DataConfig, *, seed: int = 0) -> FileRecords:
        key = "scenario.data.filter"
        if data.filter:
            templates.check(data.filter, is_expression=True, key=key)
        offsets, rows = array("q"), array("q")
        columns: set[str] = set()
        count = 0
        with _open_data(path) as f:
            if os.fstat(f.fileno()).st_size > MAX_DATA_BYTES:
                read_bytes(path)  # its error: too large
            for i, (start, number, row) in enumerate(_jsonl_lines(f, path, KEY)):
                if data.types:
                    columns.update(row)
                at = f"{path}:{number}"
                episode = _episode(row, at, i, data)
                count += 1
                if data.filter:
                    try:
                        if not templates.evaluate(data.filter, episode, key=key):
                            continue
                    except ConfigError as e:
                        raise ConfigError(f"{at}: {e.detail}", key=key) from None
                    offsets.append(start)
                    rows.append(i)
        for column in data.types:
            if column not in columns:
                _no_column(str(path), column, columns)
        if data.filter and not offsets:
            raise ConfigError(f"{path}: the filter {data.filter!r} kept none of the {count} records", key=key)
        records = cls(path, data, count=len(offsets), offsets=offsets, rows=rows) if data.filter else None
        records = records or cls(path, data, count=count)
        picked: list[int] | range = range(len(records))
        if data.shuffle:  # the permutation random.shuffle gives the records themselves (it depends on their count)
            picked = list(picked)
            random.Random(f"schola.data.shuffle/{seed}").shuffle(picked)
        if data.sample is not None and data.sample < len(picked):
            chosen = sorted(random.Random(f"schola.data.sample/{seed}").sample(range(len(picked)), data.sample))
            picked = [picked[i] for i in chosen]
        return records if isinstance(picked, range) else records.take(picked)

    def _located(self) -> tuple[array[int], array[int]]:
        """Where each record's line starts and its row: kept for picked records, else found by reading the lines
        (not parsing them)."""
        if self.offsets is not None and self.rows is not None:
            return self.offsets, self.rows
        offsets = array("q", itertools.islice(self._starts(), self.size))
        return offsets, array("q", range(self.first_row, self.first_row + len(offsets)))

    def _starts(self) -> Iterator[int]:
        """Where each non-blank line starts, from `start`."""
        with _open_data(self.path) as f:
            f.seek(self.start)
            pos = self.start
            for raw in f:
                if not blank(raw, first=pos == 0):
                    yield pos
                pos += len(raw)

    def take(self, picked: Iterable[int] | Any) -> FileRecords:
        """The episodes at these positions (a list or a numpy array of them, in this order), still unread."""
        import numpy as np

        at = np.asarray(picked, dtype=np.int64)
        pick = []
        for a in self._located():
            out = array("q")
            out.frombytes(np.frombuffer(a, dtype=np.int64)[at].tobytes())
            pick.append(out)
        return FileRecords(self.path, self.data, count=len(at), offsets=pick[0], rows=pick[1])

    def __len__(self) -> int:
        return self.size

    def _episode(self, raw: bytes, offset: int, row: int) -> dict[str, Any]:
        try:
            line = raw.decode("utf-8-sig" if offset == 0 else "utf-8")
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            record = None
        if not isinstance(record, dict):
            raise ConfigError(f"{self.path} changed while the run used it (the line at byte {offset}); a run "
                              "needs its data file as it was when it started", key=KEY)  # fmt: skip
        return _episode(replace_surrogates(record) if "\\u" in line else record, str(self.path), row, self.data)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with _open_data(self.path) as f:
            if self.offsets is not None and self.rows is not None:
                for offset, row in zip(self.offsets, self.rows):
                    f.seek(offset)
                    yield self._episode(f.readline(MAX_DATA_BYTES), offset, row)
                return
            f.seek(self.start)
            pos, n = self.start, 0
            for raw in f:
                if n == self.size:
                    return
                if not blank(raw, first=pos == 0):
                    yield self._episode(raw, pos, self.first_row + n)
                    n += 1
                pos += len(raw)
        if n < self.size:
            raise ConfigError(f"{self.path} changed while the run used it (it has fewer records); a run needs its "
                              "data file as it was when it started", key=KEY)  # fmt: skip

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> FileRecords: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | FileRecords:
        if isinstance(i, slice):
            a, b, step = i.indices(self.size)
            if self.offsets is not None or step != 1:
                return self.take(range(a, b, step))
            start = next(itertools.islice(self._starts(), a, None), self.start) if a < self.size else self.start
            return FileRecords(self.path, self.data, count=max(0, b - a), start=start, first_row=self.first_row + a)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"episode {i} out of range ({n} episodes)")
        return next(iter(self[i % n : i % n + 1]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FileRecords({self.path}, {len(self)} episodes)"
