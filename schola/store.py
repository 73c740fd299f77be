"""The run directory (Hydra's output directory): config.yaml, transcript.jsonl, results.jsonl, metrics.json,
status.json and ledger.json. Transcript and results are append-only; resume drops the lines of unfinished
episodes, and any torn or damaged line, and keeps the rest.

Run directories are shared and downloaded like notebooks, so one may have been prepared against its reader: every
file Schola writes goes through `write_atomic` (a fresh file under a random name, never through a link, then
renamed over the target), and every file it reads from a run directory through `open_run_file` (a regular file,
not a link, FIFO or device; bounded in size). One process writes a run at a time: `RunStore` holds an `fcntl`
lock on `.lock` in the directory from its first write (the kernel drops it when the process dies, even by kill
-9); readers take no lock."""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import itertools
import json
import math
import operator
import os
import stat
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from json.encoder import encode_basestring as _quote
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

import yaml

from schola.compose import load_yaml
from schola.encoding import acyclic_encoder, loads
from schola.errors import ConfigError
from schola.secrets import known_secrets, redact, redact_config

if TYPE_CHECKING:
    import numpy as np

# A lone surrogate (a server's broken decoding of a reply, sent as the JSON escape \ud800) cannot be written as
# UTF-8; written as its escape instead, it is again that escape inside a JSON string, so the line reads back as it was.
LONE_SURROGATES = "backslashreplace"
# Folders a run directory may never be inside (pseudo file systems).
FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")
#: Largest run-directory file read whole (config.yaml, *.json); a larger one is not a file Schola wrote.
MAX_RUN_FILE_BYTES = 256 * 2**20
#: Longest JSONL line read (transcript, results); a longer one is dropped like a damaged line.
MAX_LINE_BYTES = 64 * 2**20
#: The lock file of a run directory: it holds the writing process's id.
LOCK = ".lock"
# Opening a run directory's file: never through a link; a FIFO opens at once (and is then refused by its type)
# instead of waiting for the other end.
_NO_LINK = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def write_atomic(path: Path, data: str | bytes | Iterable[str | bytes]) -> Path:
    """Write a file whole or not at all (a crash never leaves half a file), never through a link. `data` may be
    an iterable of text chunks (the lines of a run's results, written as they are read, never held whole).

    The bytes go to a new file beside `path` under a random name, created exclusively and without following a link
    (a prepared `report.html.tmp -> ~/.bashrc` is never written through), which then replaces `path` itself (a link
    at `path` is replaced, not followed). Text is UTF-8, a lone surrogate written as its escape (LONE_SURROGATES).
    A path that cannot be written is a ConfigError naming it."""
    chunks: Iterable[str | bytes] = [data] if isinstance(data, str | bytes) else data
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            with open(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk.encode("utf-8", LONE_SURROGATES) if isinstance(chunk, str) else chunk)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise ConfigError(f"cannot write it ({e.strerror})", file=str(path)) from None
    return path


def open_run_file(path: Path) -> BinaryIO | None:
    """A file of a run directory opened to read, or None when there is none. Only a regular file is opened: a link
    (`plot.png -> /etc/shadow` would be read out of the directory), a FIFO (the reader would hang), a folder or a
    device is a ConfigError naming it."""
    try:
        fd = os.open(path, os.O_RDONLY | _NO_LINK)
    except FileNotFoundError:
        return None
    except OSError as e:
        why = (
            "a symbolic link: a run directory's files are read only as regular files"
            if e.errno == errno.ELOOP
            else e.strerror
        )
        raise ConfigError(f"cannot read it ({why})", file=str(path)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError("not a regular file (a folder, FIFO or device): not a file Schola wrote", file=str(path))
    return open(fd, "rb")


def read_run_file(path: Path, *, limit: int = MAX_RUN_FILE_BYTES) -> bytes | None:
    """The bytes of a run directory's file (`open_run_file`), or None when there is none; one larger than `limit`
    is a ConfigError naming it (a reader's memory is not the directory's to spend)."""
    f = open_run_file(path)
    if f is None:
        return None
    with f:
        raw = read_bounded(f, limit)
    if len(raw) > limit:
        raise ConfigError(f"larger than {limit:,} bytes: not a file Schola wrote, or too large to read", file=str(path))
    return raw


def read_bounded(f: BinaryIO, limit: int) -> bytes:
    """At most `limit` + 1 bytes of an open file, read a mebibyte at a time: `f.read(limit + 1)` would allocate
    the whole limit (256 MiB) up front for a file of a few bytes."""
    parts, size = [], 0
    while size <= limit and (part := f.read(min(2**20, limit + 1 - size))):
        parts.append(part)
        size += len(part)
    return b"".join(parts)


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


_dump_acyclic = acyclic_encoder(ensure_ascii=False, sort_keys=True, default=str)
# The fields of the engine's transcript line, sorted (as `dumps` writes them); `cost_usd` where the backend prices.
_LINE_KEYS = ("agent", "cached", "completion_tokens", "episode", "iteration", "latency_s", "node", "prompt",
              "prompt_tokens", "queue_s", "round", "sample", "text")  # fmt: skip
_line_fields = operator.itemgetter(*_LINE_KEYS)


def dump_line(record: dict[str, Any]) -> str:
    """A transcript line as `dumps` writes it (lines are built by the engine: no cycles). The engine's own line
    (its fields, of their usual types) is formatted directly, the same bytes at half the encoder's cost (it sorted
    13 keys and looked up each value's type, a tenth of a message's time); any other goes through it."""
    size = len(record)
    if size == len(_LINE_KEYS) or (size == len(_LINE_KEYS) + 1 and "cost_usd" in record):
        try:  # (a field missing: KeyError; a string field that is none: TypeError from _quote, as from json)
            agent, cached, completion, episode, it, latency, node, prompt, prompt_tokens, queue, rnd, sample, text = (
                _line_fields(record)
            )
            cost = record.get("cost_usd")
            if (
                type(cached) is bool and type(latency) is float and type(queue) is float and type(completion) is int
                and type(it) is int and type(prompt_tokens) is int and type(rnd) is int and type(sample) is int
                and latency - latency == 0 == queue - queue  # finite: JSON's repr of a float
                and (cost is None or (type(cost) is float and cost - cost == 0) or type(cost) is int)
            ):  # fmt: skip
                priced = "" if size == len(_LINE_KEYS) else f'"cost_usd": {"null" if cost is None else repr(cost)}, '
                return (
                    f'{{"agent": {_quote(agent)}, "cached": {"true" if cached else "false"}, '
                    f'"completion_tokens": {completion!r}, {priced}"episode": {_quote(episode)}, '
                    f'"iteration": {it!r}, "latency_s": {latency!r}, "node": {_quote(node)}, '
                    f'"prompt": {_quote(prompt)}, "prompt_tokens": {prompt_tokens!r}, "queue_s": {queue!r}, '
                    f'"round": {rnd!r}, "sample": {sample!r}, "text": {_quote(text)}}}'
                )
        except (KeyError, TypeError):
            pass
    return _dump_acyclic(record)


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
    """Files of one run, and its one writer: the first write takes the directory's lock (`lock`), the last one
    (`write_status`) gives it back.

    Args:
        directory: the run directory (created).
    """

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._transcript: BinaryIO | None = None  # lines encoded as they are written (see `transcript`)
        self._results: IO[str] | None = None
        self._lock: BinaryIO | None = None
        self._ledger_written = 0.0
        self._secrets = known_secrets()  # masked in every line written, wherever they appear

    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    def lock(self) -> None:
        """Be the directory's one writer until `release` (or this process ends, kill -9 included: the lock is the
        kernel's, `lockf` on `.lock`). Another process holding it is a ConfigError naming that process.

        The lock is the process's (POSIX record locks are): a store that takes over from an earlier one of the same
        process (a test, a notebook resuming its own run) is not refused; two processes are."""
        if self._lock is not None:
            return
        path = self.dir / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _NO_LINK, 0o666)
        except OSError as e:
            raise ConfigError(f"cannot lock the run directory ({e.strerror})", file=str(path)) from None
        info = os.fstat(fd)  # before open(): a FIFO is not seekable, which open(fd, "r+b") raises for
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:  # a hard link: the pid would overwrite its twin
            os.close(fd)
            raise ConfigError("not a lock file Schola wrote (not a regular file of its own)", file=str(path))
        f = open(fd, "r+b")  # noqa: SIM115  (held open: closing it drops the lock)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = f.read(32).decode("ascii", "replace").strip() or "?"
            f.close()
            raise ConfigError(
                f"{self.dir} is being written by process {holder}; a run directory has one writer at a time: "
                "wait for that run to end (or stop it), then resume"
            ) from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n".encode())
        f.flush()
        self._lock = f

    def release(self) -> None:
        """Stop being the directory's writer (closing the lock file drops this process's lock)."""
        self.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def write_file(self, name: str, data: str | bytes | Iterable[str | bytes]) -> Path:
        """Write the run's file `name` (a plain file name) whole (`write_atomic`), as the run's writer."""
        if not name or name in (".", "..", LOCK) or "/" in name or "\0" in name:
            raise ConfigError(f"{name!r} is not a file name for the run directory")
        self.lock()
        return write_atomic(self.dir / name, data)

    def write_config(self, config: dict[str, Any]) -> None:
        self._secrets = known_secrets(config)
        safe = redact_config(config, self._secrets)
        # whole or not at all: every resume writes it again, and a kill mid-write must not leave a run unresumable
        self.write_file(self.config_path.name, yaml.safe_dump(safe, sort_keys=False, allow_unicode=True))

    def read_config(self) -> dict[str, Any]:
        """The saved config; a missing, damaged or foreign file is a ConfigError naming it."""
        path = self.config_path
        raw = read_run_file(path)
        if raw is None:
            raise ConfigError(f"{self.dir} is not a run directory (no config.yaml)", key="resume")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"not UTF-8 text (byte {e.start})", file=str(path)) from None
        # the scenario file's own loader: aliases and nesting bounded (a deep file was a RecursionError in `flatten`)
        saved = no_surrogates(load_yaml(text, file=str(path)), text)
        if not isinstance(saved, dict):
            raise ConfigError("expected a run's saved config (a mapping with scenario:, backend:, ...)", file=str(path))
        missing = [k for k in ("scenario", "backend") if not isinstance(saved.get(k), dict)]
        if missing:
            raise ConfigError(f"not a run's saved config: no {' and no '.join(missing)} section", file=str(path))
        return saved

    def has_run(self) -> bool:
        return any(os.path.lexists(self.dir / n) for n in ("results.jsonl", "transcript.jsonl", "metrics.json"))

    def open(self) -> None:
        self.lock()
        self._transcript = open(self._append_fd("transcript.jsonl"), "ab", buffering=1 << 16)  # noqa: SIM115
        self._results = self._append("results.jsonl")

    def _append(self, name: str) -> IO[str]:
        return open(self._append_fd(name), "a", encoding="utf-8", errors=LONE_SURROGATES)

    def _append_fd(self, name: str) -> int:
        path = self.dir / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NO_LINK, 0o666)
        except OSError as e:
            raise ConfigError(f"cannot append to it ({e.strerror})", file=str(path)) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError("not a regular file; this run directory is damaged", file=str(path))
        return fd

    def close(self) -> None:
        for f in (self._transcript, self._results):
            if f is not None:
                f.close()
        self._transcript = self._results = None

    @property
    def masks(self) -> bool:
        """Whether a line written may differ from its record's JSON (known secrets are masked in every line)."""
        return bool(self._secrets)

    def _masked(self, line: str) -> str:
        """A line with every known secret masked wherever it appears (a model may echo a key it was shown)."""
        secrets = self._secrets
        return redact(line, secrets) if secrets and any(s in line for s in secrets) else line

    def transcript(self, record: dict[str, Any]) -> bytes:
        """Append a transcript line; returns its bytes (the report's blocks are built from them as the run goes)."""
        assert self._transcript is not None, "RunStore.open() first"
        # As a text file in UTF-8 with LONE_SURROGATES writes it, without its layer over the buffer (half the cost)
        raw = (self._masked(dump_line(record)) + "\n").encode("utf-8", LONE_SURROGATES)
        self._transcript.write(raw)
        return raw

    def result(self, record: dict[str, Any]) -> str:
        """Append a finished episode; the transcript is flushed first so a finished episode is whole on disk.
        Returns the line written."""
        assert self._transcript is not None and self._results is not None, "RunStore.open() first"
        self._transcript.flush()
        line = self._masked(dumps(record)) + "\n"
        self._results.write(line)
        self._results.flush()
        return line

    def results_size(self) -> int:
        """Where results.jsonl ends now (its lines after this offset are those written since: `results(since=)`)."""
        try:
            return os.stat(self.dir / "results.jsonl", follow_symlinks=False).st_size
        except FileNotFoundError:
            return 0

    def results(self, *, once: bool = True, since: int = 0) -> Iterator[dict[str, Any]]:
        """Finished (and failed) episodes as they are read, each once (a duplicated line counts once; damaged
        lines are dropped), in one pass that never holds the records: the ids met are remembered as `SeenIds`,
        16 bytes a line (`once=False`: not remembered, for the file of a run this store is writing, which has
        each episode once). `since`: only the lines after this offset (`results_size`)."""
        f = open_run_file(self.dir / "results.jsonl")
        if f is None:
            return
        with f:
            f.seek(since)
            seen = SeenIds(f) if once else None
            for start, _, r in jsonl_lines(f):
                if episode_record(r) and (seen is None or seen.first(r["episode"], start)):
                    yield r

    def prepare_resume(self, keep: Callable[[dict[str, Any]], None] | None = None) -> np.ndarray[Any, Any]:
        """Keep finished episodes, handing each to `keep` (the driver's counts and sums) in the one pass that
        rewrites results.jsonl; drop transcript lines of the others (and any torn or damaged line). Returns the
        kept ids' hashes, sorted (`hash(id)`, 8 bytes an episode: `kept_among`); no record is held."""
        import numpy as np

        self.lock()  # before reading: what is kept is what no other writer is appending to
        hashes = array("q")

        def done() -> Iterator[dict[str, Any]]:
            for r in self.results():
                if "error" not in r:  # a failed episode runs again, like an unfinished one
                    hashes.append(hash(r["episode"]))
                    if keep is not None:
                        keep(r)
                    yield r

        self.write_jsonl("results.jsonl", done())
        kept = np.sort(np.frombuffer(hashes, dtype=np.int64))
        hashes = array("q")  # the unsorted copy, given back

        def lines() -> Iterator[dict[str, Any]]:  # stages run again on resume and log their calls again
            batch: list[dict[str, Any]] = []
            for r in itertools.chain(iter_jsonl(self.dir / "transcript.jsonl"), [None]):
                if r is not None:
                    batch.append(r)
                if len(batch) == 512 or (r is None and batch):
                    ids = [e if isinstance(e := b.get("episode"), str) else None for b in batch]
                    found = kept_among(kept, [hash(e) for e in ids])
                    yield from (b for b, e, f in zip(batch, ids, found) if f and e is not None)
                    batch = []

        self.write_jsonl("transcript.jsonl", lines())
        return kept

    def sort_results(self, rank: Callable[[Any], Any]) -> np.ndarray[Any, Any] | None:
        """Rewrite results.jsonl with its lines in the order `rank` gives (stable), so readers see the episodes in
        the order they were asked for whatever order they finished in. `rank` maps a numpy array of the lines'
        episode ids, as `hash(id)`, to their ranks. One pass reads where each line starts and its id's hash,
        one writes the lines in order (read back by offset): 8 bytes a line each, never a record. A file already
        in order is left as it is. Returns the order given to the lines read (damaged ones are dropped), or None
        when nothing moved."""
        import numpy as np

        path = self.dir / "results.jsonl"
        f = open_run_file(path)
        if f is None:
            return None
        with f:
            hashes, starts = array("q"), array("q")
            for start, r in jsonl_records(f):
                hashes.append(hash(str(r.get("episode"))))
                starts.append(start)
            order = np.argsort(rank(np.frombuffer(hashes, dtype=np.int64)), kind="stable")
            del hashes
            if np.array_equal(order, np.arange(len(order))):
                return None

            def lines() -> Iterator[bytes]:
                for i in order:
                    f.seek(starts[i])
                    yield f.readline(MAX_LINE_BYTES + 1)

            appending = self._results is not None
            if self._results is not None:  # the append handle would go on writing to the replaced file
                self._results.close()
                self._results = None
            self.write_file(path.name, lines())
            if appending:
                self._results = self._append(path.name)
        return order

    def write_jsonl(self, name: str, records: Iterable[dict[str, Any]]) -> Path:
        """Write `name` as JSON lines, whole (a crash never leaves half a file), each line as it comes."""
        return self.write_file(name, (dumps(r) + "\n" for r in records))

    def write_json(self, name: str, payload: dict[str, Any]) -> None:
        """Write `name` atomically (a crash never leaves half a file), keys sorted."""
        self.write_file(name, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, default=str))

    def write_metrics(self, scenario: str, rows: list[dict[str, Any]], **extra: Any) -> None:
        self.write_json("metrics.json", {"scenario": scenario, "metrics": rows, **extra})

    def write_status(self, **status: Any) -> None:
        """How this invocation ended: the last file a run writes, so it also ends its hold on the directory."""
        self.write_json("status.json", redact_config(status, self._secrets))
        self.release()

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
        return read_json_file(self.dir / name)

    def read_ledger(self) -> dict[str, Any]:
        """ledger.json, which a resumed run's usage and budget continue from ({} if absent): every count a number
        >= 0, else a ConfigError naming the key (a NaN or negative spend would lift the budget; a string was a
        TypeError mid-run)."""
        path = self.dir / "ledger.json"
        saved = read_json_file(path) or {}
        by_role = saved.get("by_role", {})
        sections = [(f"by_role.{r}", u) for r, u in by_role.items()] if isinstance(by_role, dict) else [("by_role", 0)]
        sections += [(k, saved[k]) for k in ("spent", "total") if saved.get(k) is not None]
        for key, counts in [*sections, ("wall_s", {"wall_s": saved.get("wall_s", 0.0)})]:
            if not isinstance(counts, dict) or not all(_count(v) for v in counts.values()):
                raise ConfigError("damaged: expected counts (numbers >= 0)", file=str(path), key=key)
        return saved


def _count(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf


def episode_record(r: dict[str, Any]) -> bool:
    """Whether a results line is an episode as Schola writes it (an id, its inputs, a round, scores that are
    numbers): any other line is damaged, and dropped like a torn one (it was a TypeError in the score sums)."""
    scores, rnd = r.get("scores") or {}, r.get("round")
    return (
        isinstance(r.get("episode"), str)
        and isinstance(r.get("inputs"), dict)
        and (rnd is None or (isinstance(rnd, int) and not isinstance(rnd, bool)))
        and isinstance(scores, dict)
        and all(v is None or isinstance(v, (int, float)) for v in scores.values())
    )


def read_json_file(path: Path) -> dict[str, Any] | None:
    """A JSON object from a run directory (`read_run_file`), or None if absent; a damaged one is a ConfigError
    naming it."""
    raw = read_run_file(path)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
        payload = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"damaged ({type(e).__name__}); not a file Schola wrote", file=str(path)) from None
    if not isinstance(payload, dict):
        raise ConfigError("damaged: expected a JSON object", file=str(path))
    return no_surrogates(payload, text)  # type: ignore[no-any-return]


def no_surrogates(value: Any, text: str) -> Any:
    """`value`, parsed from `text`, with lone surrogates (only an escape in the text, `\\ud800`, makes one) as U+FFFD:
    such a string cannot be printed to a UTF-8 terminal, drawn in a plot or written to a file."""
    if "\\u" not in text and "\\U" not in text:
        return value
    from schola.data import replace_surrogates  # pydantic: only for a file that has escapes

    return replace_surrogates(value)


STAGE_EPISODE = "-stage-"  # transcript lines of roles asked by run-level stages


def jsonl_records(f: BinaryIO) -> Iterator[tuple[int, dict[str, Any]]]:
    """(byte offset, object) of each line of an open JSONL file, from where it is. A line that is torn (a crash,
    or a writer mid-line), not UTF-8, not a JSON object, or longer than MAX_LINE_BYTES is skipped."""
    for start, _, record in jsonl_lines(f):
        yield start, record


def jsonl_lines(f: BinaryIO) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(byte offset, the line's text without its newline, object) of each line `jsonl_records` reads."""
    pos = f.tell()
    while raw := f.readline(MAX_LINE_BYTES + 1):
        start, pos = pos, pos + len(raw)
        if len(raw) > MAX_LINE_BYTES:
            while raw and not raw.endswith(b"\n"):  # the rest of the long line
                raw = f.readline(MAX_LINE_BYTES)
                pos += len(raw)
            continue
        if parsed := parse_line(raw):
            yield start, *parsed


def parse_line(raw: bytes) -> tuple[str, dict[str, Any]] | None:
    """(the text without its newline, object) of one JSONL line as `jsonl_lines` reads it, or None when it is damaged
    (not UTF-8, not JSON, not an object; the caller drops one longer than MAX_LINE_BYTES)."""
    try:
        text = raw.decode("utf-8")
        record = loads(text)  # (json.loads without its layers: a third of its cost on a short line)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return (text.rstrip("\r\n"), record) if isinstance(record, dict) else None


class SeenIds:
    """The episode ids met so far in an open results file, as each one's hash and where its line starts (16 bytes
    an id, never the id): sorted arrays, the latest few in a dict until they are a sixteenth of the arrays. A hash
    met again is a repeat only when the line it was first met on has the same id (read back: two ids that share
    a hash are both kept, and such an id is remembered by itself)."""

    def __init__(self, f: BinaryIO) -> None:
        import numpy as np

        self.f = f
        self.hashes = self.starts = np.empty(0, dtype=np.int64)
        self.recent: dict[int, int] = {}
        self.shared: set[str] = set()  # ids met whose hash an earlier, other id has

    def first(self, eid: str, start: int) -> bool:
        """Whether `eid`, on the line at `start`, is met here for the first time (it is remembered)."""
        h = hash(eid)
        at = self.recent.get(h)
        if at is None and len(self.hashes):
            i = int(self.hashes.searchsorted(h))
            at = int(self.starts[i]) if i < len(self.hashes) and self.hashes[i] == h else None
        if at is None:
            self.recent[h] = start
            if len(self.recent) >= max(4096, len(self.hashes) >> 4):
                self._merge()
            return True
        if eid in self.shared or self._id_at(at) == eid:
            return False
        self.shared.add(eid)
        return True

    def _id_at(self, start: int) -> Any:
        """The episode id of the line at `start` (read back, then the file is where it was)."""
        here = self.f.tell()
        self.f.seek(start)
        found = next(jsonl_lines(self.f), None)
        self.f.seek(here)
        return found[2].get("episode") if found else None

    def _merge(self) -> None:
        import numpy as np

        h = np.fromiter(self.recent, dtype=np.int64, count=len(self.recent))
        s = np.fromiter(self.recent.values(), dtype=np.int64, count=len(self.recent))
        self.recent = {}
        order = np.argsort(h)
        at = self.hashes.searchsorted(h[order])
        self.hashes = np.insert(self.hashes, at, h[order])  # one array at a time: the old one goes before the next
        self.starts = np.insert(self.starts, at, s[order])


def kept_among(kept: np.ndarray[Any, Any], hashes: Iterable[int]) -> np.ndarray[Any, Any]:
    """Which of `hashes` are in `kept` (sorted hashes, as `prepare_resume` returns them): a bool array."""
    import numpy as np

    h = np.fromiter(hashes, dtype=np.int64)
    if not len(kept):
        return np.zeros(len(h), dtype=bool)
    at = np.searchsorted(kept, h).clip(0, len(kept) - 1)
    found: np.ndarray[Any, Any] = kept[at] == h
    return found


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a run directory's JSONL file as a list (`iter_jsonl`)."""
    return list(iter_jsonl(path))


def iter_jsonl(path: Path, *, since: int = 0) -> Iterator[dict[str, Any]]:
    """The objects of a run directory's JSONL file as they are read (`open_run_file`; none when it is absent),
    damaged lines dropped (`jsonl_records`); `since`: from this byte offset (a line's start) on."""
    f = open_run_file(path)
    if f is None:
        return
    with f:
        f.seek(since)
        for _, _, record in jsonl_lines(f):
            yield record
