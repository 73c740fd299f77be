"""Content-keyed response cache shared by every backend: SQLite in WAL mode, so several processes can share it."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    return Path(os.environ.get("SCHOLA_CACHE_DIR") or Path.home() / ".cache" / "schola")


def cache_key(identity: str, messages: list[dict[str, Any]], sampling: dict[str, Any], seed: int, sample: int) -> str:
    """The key of one reply: model identity, messages, sampling options, run seed and sample index."""
    h = hashlib.sha256()
    h.update(f"{identity}\x00{seed}\x00{sample}\x00{sorted(sampling.items())!r}\x00".encode())
    for m in messages:  # length-prefixed, so no two message lists share a byte stream
        role, content = m["role"].encode(), m["content"].encode()
        h.update(b"%d:%s%d:%s" % (len(role), role, len(content), content))
    return h.hexdigest()


class Cache:
    """A key/value store of replies; writes are batched (one SQLite write per reply would cap throughput).

    Args:
        directory: where `cache.sqlite` lives; created if missing.
        batch: pending writes kept in memory before one transaction writes them all.
        preload_keys: up to this many stored replies, their keys are read at open so a miss needs no query.
    """

    def __init__(self, directory: str | Path, *, batch: int = 256, preload_keys: int = 200_000) -> None:
        path = Path(directory).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / "cache.sqlite"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._pending: dict[str, str] = {}
        self._batch = batch
        self._lock = threading.Lock()
        # Misses are most lookups of a new run; knowing the keys up front answers them without a query.
        # Keys another process writes later are then not reused by this one (a lost saving, never a wrong reply).
        count = self._db.execute("SELECT count(*) FROM replies").fetchone()[0]
        self._keys: set[str] | None = None
        if count <= preload_keys:
            self._keys = {k for (k,) in self._db.execute("SELECT key FROM replies")}

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            raw = self._pending.get(key)
            if raw is None and self._keys is not None and key not in self._keys:
                return None
            if raw is None:
                row = self._db.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
                raw = row[0] if row else None
        return json.loads(raw) if raw is not None else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._pending[key] = json.dumps(value)
            if self._keys is not None:
                self._keys.add(key)
            full = len(self._pending) >= self._batch
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._pending:
                return
            rows, self._pending = list(self._pending.items()), {}
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO replies (key, value) VALUES (?, ?)", rows)
            self._db.execute("COMMIT")

    def close(self) -> None:
        self.flush()
        self._db.close()
