"""`schola view --serve RUN_OR_SWEEP_DIR [--port N]`: the viewer over HTTP on 127.0.0.1, following a run (or a
sweep's runs) while it goes. The page is `schola view`'s own; it polls `data.json` and renders again when the
run's files changed: episodes appear as they finish, the ledger and the metrics over the finished episodes refresh.

It reads only the run directory's files (a run of another process, or another machine's on a shared disk, is
followed the same way) and builds the payload again only when one of them changed (size or mtime).

The server is the standard library's `http.server` (ThreadingHTTPServer): one reader on this machine needs no
dependency, and it serves two fixed paths only (no file is served by its name). It binds 127.0.0.1, and answers
only requests whose Host is 127.0.0.1 or localhost (a page of another site cannot reach it by DNS rebinding).
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from schola.errors import ConfigError, ScholaError
from schola.view.payload import run_payload, sweep_payload, to_json

HOST = "127.0.0.1"
POLL_MS = 1500
WATCHED = ("config.yaml", "metrics.json", "status.json", "ledger.json", "results.jsonl", "transcript.jsonl")


def is_live_run(path: Path) -> bool:
    return any(os.path.lexists(path / n) for n in ("config.yaml", "metrics.json"))


Listing = tuple[tuple[int, int] | None, list[str], list[str]]  # a folder's (mtime_ns, size), subfolders, files


class Tree:
    """The watched files of a run (or of every folder below a sweep's), for `version`: a folder is listed again only
    when its (mtime_ns, size) changed (adding, removing or renaming an entry changes its folder's), so a request
    for an unchanged run stats its folders and files and lists or reads nothing. A folder changed within
    `RECENT_NS` of its listing is listed again at the next request: a change in the same clock tick as the
    listing leaves its mtime as it was."""

    RECENT_NS = 2_000_000_000

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders: dict[str, Listing] = {}

    def files(self) -> list[str]:
        """The watched files' paths (those that were there when their folder was last listed), in a fixed order."""
        out: list[str] = []
        self._visit(str(self.root), out, recurse=not is_live_run(self.root))
        return out

    def _visit(self, folder: str, out: list[str], recurse: bool) -> None:
        try:
            st = os.stat(folder, follow_symlinks=folder == str(self.root))  # a link to a run may be given
        except OSError:
            self.folders.pop(folder, None)
            return
        key = (st.st_mtime_ns, st.st_size)
        known = self.folders.get(folder)
        if known is None or known[0] != key:
            known = self.folders[folder] = self._list(folder, key, st.st_mode)
        out += (os.path.join(folder, name) for name in known[2])
        for sub in known[1] if recurse else ():
            self._visit(os.path.join(folder, sub), out, recurse)

    def _list(self, folder: str, key: tuple[int, int], mode: int) -> Listing:
        now = time.time_ns()
        if not stat.S_ISDIR(mode):
            return key, [], []
        subs, names = [], []
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    subs.append(e.name)
                elif e.name in WATCHED or e.name.endswith(".png"):
                    names.append(e.name)
        return (key if key[0] < now - self.RECENT_NS else None), sorted(subs), sorted(names)


def version(tree: Tree) -> str:
    """What the payload depends on, as a short digest: each watched file's path, size and mtime."""
    parts = []
    for path in tree.files():
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        parts.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}")
    return hashlib.blake2b("\n".join(parts).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def live_payload(root: Path) -> tuple[dict[str, Any], str]:
    """The viewer's payload of a run or a sweep as it is now, and its title."""
    if is_live_run(root):
        run = run_payload(root, live=True)
        state = run["status"].get("status", "?")
        return {"kind": "run", "runs": [run], "sweep": None}, f"{run['scenario']} · {state} · schola view"
    sweep = sweep_payload(root, live=True)
    runs = sweep.pop("runs")
    return {"kind": "sweep", "runs": runs, "sweep": sweep}, f"sweep of {len(runs)} runs · schola view"


class Live:
    """The payload of `root`, built again when its files changed (one build at a time, whatever the requests)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tree = Tree(root)
        self._lock = threading.Lock()
        self._version = ""
        self._body = b""
        self._title = ""
        self._payload: dict[str, Any] = {}

    def current(self) -> tuple[str, bytes, str, dict[str, Any]]:
        """(version, payload as JSON bytes, title, payload); a damaged file is a ConfigError naming it."""
        with self._lock:
            now = version(self.tree)
            if now != self._version:
                payload, self._title = live_payload(self.root)
                payload["live"] = {"version": now, "poll_ms": POLL_MS}
                self._body = to_json(payload).encode("utf-8", "backslashreplace")
                self._payload, self._version = payload, now
            return self._version, self._body, self._title, self._payload


def handler(live: Live, page: Callable[[dict[str, Any], str], str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "schola-view"
        sys_version = ""

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host not in (HOST, "localhost"):
                return self.send(HTTPStatus.FORBIDDEN, b"only 127.0.0.1 or localhost", "text/plain")
            url = urlsplit(self.path)
            try:
                ver, body, title, payload = live.current()
            except ScholaError as e:
                return self.send(
                    HTTPStatus.INTERNAL_SERVER_ERROR, to_json({"error": str(e)}).encode(), "application/json"
                )
            if url.path == "/data.json":
                if parse_qs(url.query).get("v", [""])[0] == ver:
                    return self.send(HTTPStatus.NO_CONTENT, b"", "application/json")
                return self.send(HTTPStatus.OK, body, "application/json")
            if url.path in ("/", "/index.html"):
                text = page(payload, title)
                return self.send(HTTPStatus.OK, text.encode("utf-8", "backslashreplace"), "text/html; charset=utf-8")
            return self.send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

        def send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a poll every 1.5 s would flood the terminal

    return Handler


def make_server(root: Path, port: int, page: Callable[[dict[str, Any], str], str]) -> ThreadingHTTPServer:
    """The server of `root` on 127.0.0.1:`port` (0: a free port), not yet serving; a port in use is a ConfigError."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder (expected a run directory or a sweep's folder)")
    if not 0 <= port <= 65535:
        raise ConfigError(f"expected a port from 0 to 65535 (0: any free one), got {port}", key="--port")
    try:
        server = ThreadingHTTPServer((HOST, port), handler(Live(root), page))
    except OSError as e:
        raise ConfigError(f"cannot listen on {HOST}:{port} ({e.strerror}); pick another with --port N (0: any free one)",
                          key="--port") from None  # fmt: skip
    server.daemon_threads = True
    return server


def serve(root: Path, port: int, page: Callable[[dict[str, Any], str], str]) -> int:
    """Serve until Ctrl-C; returns the exit code."""
    server = make_server(root, port, page)
    url = f"http://{HOST}:{server.server_address[1]}/"
    print(f"serving {root} live at {url} (bound to {HOST} only: not reachable from other machines); Ctrl-C stops",
          flush=True)  # fmt: skip
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0
