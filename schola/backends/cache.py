"""Content-keyed response cache shared by every backend: SQLite in WAL mode, so several processes can share it."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sqlite3
import threading
import time
from json.encoder import encode_basestring_ascii as _quote_ascii
from pathlib import Path
from typing import Any

from schola.encoding import acyclic_encoder
from schola.errors import ConfigError


def default_cache_dir() -> Path:
    return Path(os.environ.get("SCHOLA_CACHE_DIR") or Path.home() / ".cache" / "schola")


def sampling_text(sampling: dict[str, Any]) -> str:
    """Sampling options as a cache key holds them."""
    return repr(sorted(sampling.items()))


def cache_key(
    identity: str, messages: list[dict[str, Any]], sampling: dict[str, Any], seed: int, sample: int,
    options: str | None = None,
) -> str:  # fmt: skip
    """The key of one reply: model identity, messages, sampling options, run seed and sample index. `options`:
    `sampling_text(sampling)`, where the caller has it already (a backend's own options: found once, not per call)."""
    if options is None:
        options = sampling_text(sampling)
    text = f"{identity}\x00{seed}\x00{sample}\x00{options}\x00"
    for m in messages:  # length-prefixed (in bytes), so no two message lists share a byte stream
        role, content = m["role"], m["content"]
        if not (role.isascii() and content.isascii()):  # lengths in bytes differ from lengths in characters
            return _utf8_key(text, messages)
        text += f"{len(role)}:{role}{len(content)}:{content}"
    return hashlib.sha256(text.encode()).hexdigest()


def _utf8_key(prefix: str, messages: list[dict[str, Any]]) -> str:
    h = hashlib.sha256(prefix.encode())
    for m in messages:
        role, content = m["role"].encode(), m["content"].encode("utf-8", "surrogatepass")  # data may hold \ud800
        h.update(b"%d:%s%d:%s" % (len(role), role, len(content), content))
    return h.hexdigest()


def open_readonly(path: Path) -> sqlite3.Connection:
    """A connection that never writes. SQLite reads a WAL database through a -shm file it must be able to create;
    in a folder this user cannot write, the file is read as immutable instead (a reply another process is writing
    at that moment may be missed: a count, not a correctness matter)."""
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        db.close()
        db = sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
    return db


# A reply's fields as a backend's Completion holds them (`put` is given its __dict__).
_REPLY_KEYS = ("text", "prompt_tokens", "completion_tokens", "finish_reason", "cost_usd", "top_logprobs")


def reply_json(value: dict[str, Any], encode: Any) -> str:
    """`encode(value)` (JSON, ASCII, keys in their order): a reply of the usual types, without logprobs, is formatted
    directly, the same text at half the encoder's cost; anything else goes through `encode`."""
    if tuple(value) == _REPLY_KEYS:
        text, prompt, completion, finish, cost, top = value.values()
        if (
            type(text) is str and type(finish) is str and type(prompt) is int and type(completion) is int
            and top is None and (cost is None or type(cost) is int or (type(cost) is float and cost - cost == 0))
        ):  # fmt: skip
            return (
                f'{{"text": {_quote_ascii(text)}, "prompt_tokens": {prompt!r}, "completion_tokens": {completion!r}, '
                f'"finish_reason": {_quote_ascii(finish)}, "cost_usd": {"null" if cost is None else repr(cost)}, '
                '"top_logprobs": null}'
            )
    return encode(value)  # type: ignore[no-any-return]


READ_SNAPSHOT_S = 1.0  # the longest a cache's lookups keep one read transaction (see Cache._select)


def _insert(db: sqlite3.Connection, rows: dict[str, str]) -> None:
    now = time.time()
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(
            "INSERT OR REPLACE INTO replies (key, value, created) VALUES (?, ?, ?)",
            [(k, v, now) for k, v in rows.items()],
        )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


# Keys written by this process that the set of known keys takes in before it is given up (a miss then asks SQLite):
# a run of a million replies must not hold a million keys (~200 bytes each).
NEW_KEYS = 20_000
MAX_QUEUED = 4  # batches on their way to the writer thread before put() waits for it (what is held stays bounded)


class Cache:
    """A key/value store of replies; writes are batched (one SQLite write per reply would cap throughput) and made
    by a thread of the cache's own (a commit waits on the disk, which the event loop must not).

    Args:
        directory: where `cache.sqlite` lives; created if missing.
        batch: pending writes kept in memory before one transaction writes them all.
        preload_keys: up to this many stored replies, their keys are read at open so a miss needs no query.
        readonly: only read (`schola cache info`): nothing is created or written, so a read-only cache opens.
    """

    def __init__(
        self, directory: str | Path, *, batch: int = 1024, preload_keys: int = 200_000, readonly: bool = False
    ) -> None:
        path = Path(directory).expanduser()
        self.path = path / "cache.sqlite"
        try:
            if readonly:
                self._db = open_readonly(self.path)
            else:
                path.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
                self._setup()
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(
                f"cannot use the response cache at {path}: {e} (set cache.dir to a writable folder, or "
                "cache.enabled=false)",
                key="cache.dir",
            ) from None
        self._encode = acyclic_encoder()  # a reply's fields: strings, numbers, a list of pairs
        self._pending: dict[str, str] = {}
        self._writing: dict[str, str] = {}  # handed to the writer thread, not yet committed: still answered here
        self._queue: queue.SimpleQueue[dict[str, str] | None] = queue.SimpleQueue()
        self._queued = 0  # batches handed over and not yet written
        self._written = threading.Condition()
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
        self._reading, self._read_since, self._stale = False, 0.0, False  # the lookups' read transaction
        self._quiet_at = 0.0  # no snapshot held before then
        # changes when another connection commits (`_select`)
        self._version = self._db.execute("PRAGMA data_version").fetchone()[0]
        self._batch = batch
        self._lock = threading.Lock()
        # Misses are most lookups of a new run; knowing the keys up front answers them without a query.
        # Keys another process writes later are then not reused by this one (a lost saving, never a wrong reply).
        count = self._db.execute("SELECT count(*) FROM replies").fetchone()[0]
        self._keys: set[str] | None = None
        self._keys_bound = count + NEW_KEYS  # the set never grows by more than NEW_KEYS replies of this process
        if count <= preload_keys:
            self._keys = {k for (k,) in self._db.execute("SELECT key FROM replies")}

    def _setup(self) -> None:
        # Switching a new file to WAL takes an exclusive lock that SQLite's busy timeout does not wait for, so two
        # processes opening a fresh cache at once can see "database is locked": that case is retried for a while.
        deadline = time.monotonic() + 30
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS replies "
                    "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL DEFAULT 0)"
                )
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(replies)")}
                if "created" not in columns:  # a cache written before replies were dated
                    self._db.execute("ALTER TABLE replies ADD COLUMN created REAL DEFAULT 0")
                return
            except sqlite3.OperationalError as e:
                if "duplicate column" in str(e):  # another process added it first
                    return
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def get(self, key: str) -> dict[str, Any] | None:
        keys = self._keys
        if keys is not None and key not in keys:  # every key this cache holds is in `keys`: no lock for a miss
            return None
        with self._lock:
            raw = self._pending.get(key) or self._writing.get(key)
            if raw is None and self._keys is not None and key not in self._keys:
                return None
            if raw is None:
                raw = self._select(key)
        return json.loads(raw) if raw is not None else None

    def _select(self, key: str) -> str | None:
        """A stored reply, read in a read transaction kept open across lookups (caller holds the lock): a lookup in
        a transaction of its own took 10 us, 6 of them taking and dropping SQLite's read lock. The snapshot is
        taken again at least every READ_SNAPSHOT_S (another process's replies are found as soon as before: keys read
        at open are all it can hold, and a large cache's lookups see what was committed a second ago).

        Not while the cache is being written (by this cache's writer, `_stale`, or another process, `data_version`):
        a snapshot held then is older than the commit the writer checkpoints after, so SQLite never starts the
        write-ahead log over, and it grew without bound (284 MB over 100,000 replies). Lookups then read in a
        transaction of their own, until READ_SNAPSHOT_S has passed without a commit seen."""
        now = time.monotonic()
        if self._stale:  # this cache's writer committed: what it wrote leaves `_writing` only then
            self._stale = False
            self._end_read()
            self._quiet_at = now + READ_SNAPSHOT_S
        elif self._reading and now - self._read_since > READ_SNAPSHOT_S:
            self._end_read()
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:  # another connection committed since the last look
                self._version, self._quiet_at = version, now + READ_SNAPSHOT_S
        if not self._reading and now >= self._quiet_at:
            self._db.execute("BEGIN")
            self._reading, self._read_since = True, now
        row = self._db.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _end_read(self) -> None:
        if self._reading:
            self._reading = False
            self._db.execute("COMMIT")

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Keep a reply; every `batch` of them is written in one transaction by a thread of the cache's own, so the
        caller (the event loop) does not wait on SQLite (its commits and checkpoints wait on the disk), unless the
        writer is MAX_QUEUED batches behind: then it waits for it, so what is held stays bounded. A write that failed
        there is raised by the next put, flush or close."""
        if self._error is not None:
            self._raise_failed()
        with self._lock:
            self._pending[key] = reply_json(value, self._encode)
            if self._keys is not None:
                self._keys.add(key)
                if len(self._keys) > self._keys_bound:  # a set of every key grew with the run (~200 MB a
                    self._keys = None  # million replies): past the bound, a miss asks SQLite, as for a large cache
            if len(self._pending) < self._batch:
                return
            rows, self._pending = self._pending, {}
            self._writing.update(rows)
            with self._written:  # (the writer counts down under it: `+=` is not atomic across threads)
                self._queued += 1
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_behind, name="schola-cache", daemon=True)
            self._writer.start()
        self._queue.put(rows)
        if self._queued >= MAX_QUEUED:  # the disk keeps the writer behind: wait for it rather than hold every reply
            with self._written:
                self._written.wait_for(lambda: self._queued < MAX_QUEUED)

    def _write_behind(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        # synchronous is a connection's own setting, not the file's: without it this one committed with FULL, an
        # fsync of the WAL per batch (NORMAL syncs at checkpoints; a power cut may lose the last replies, not the file)
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            while (rows := self._queue.get()) is not None:
                try:
                    _insert(db, rows)
                except BaseException as e:  # raised in the caller's thread by its next put, flush or close
                    self._error = e
                with self._lock:
                    for k, v in rows.items():
                        if self._writing.get(k) is v:  # (a newer reply for the key is still on its way)
                            del self._writing[k]
                    self._stale = True  # the lookups' snapshot does not have them: taken again at the next
                with self._written:
                    self._queued -= 1
                    self._written.notify_all()
        finally:
            db.close()

    def _raise_failed(self) -> None:
        if (error := self._error) is not None:
            self._error = None
            raise error

    def flush(self) -> None:
        """Write every reply kept so far, now: the batches handed to the writer first (so a newer reply for a key
        wins), then the rest."""
        with self._written:
            self._written.wait_for(lambda: self._queued == 0)
        self._raise_failed()
        with self._lock:
            self._end_read()  # (a write, a count or a prune sees the file as it is now)
            if not self._pending:
                return
            rows, self._pending = self._pending, {}
            _insert(self._db, rows)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._queue.put(None)
                self._writer.join()
                self._writer = None
            self._db.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open_existing(cls, directory: str | Path, *, readonly: bool = False) -> Cache:
        """The cache in `directory` (for `schola cache`); a ConfigError when there is none."""
        if not (Path(directory).expanduser() / "cache.sqlite").is_file():
            raise ConfigError(f"no response cache in {directory}", key="cache.dir")
        return cls(directory, preload_keys=0, readonly=readonly)

    def info(self) -> dict[str, Any]:
        """How many replies the cache holds and how much disk it takes."""
        self.flush()
        dated = any(row[1] == "created" for row in self._db.execute("PRAGMA table_info(replies)"))
        query = "SELECT count(*), min(created) FROM replies" if dated else "SELECT count(*), NULL FROM replies"
        replies, oldest = self._db.execute(query).fetchone()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {"replies": replies, "bytes": size, "oldest": oldest}

    def prune(self, *, older_than_days: float | None = None, max_mb: float | None = None) -> int:
        """Remove replies older than `older_than_days`, then the oldest until the store fits `max_mb`; returns
        how many were removed. The file shrinks (VACUUM) afterwards."""
        self.flush()
        before = self._db.execute("SELECT count(*) FROM replies").fetchone()[0]
        if older_than_days is not None:
            self._db.execute("DELETE FROM replies WHERE created < ?", (time.time() - older_than_days * 86400,))
        if max_mb is not None:
            budget = max_mb * 1e6
            total = self._db.execute("SELECT coalesce(sum(length(key) + length(value)), 0) FROM replies").fetchone()[0]
            if total > budget:
                rows = self._db.execute(
                    "SELECT key, length(key) + length(value) FROM replies ORDER BY created"
                ).fetchall()
                drop = []
                for key, size in rows:
                    if total <= budget:
                        break
                    drop.append((key,))
                    total -= size
                self._db.executemany("DELETE FROM replies WHERE key = ?", drop)
        removed = int(before - self._db.execute("SELECT count(*) FROM replies").fetchone()[0])
        self._db.execute("VACUUM")
        if self._keys is not None:
            self._keys = {k for (k,) in self._db.execute("SELECT key FROM replies")}
        return removed
