"""What the viewer shows, read from run directories: one JSON-able payload per run (status, redacted config, usage,
metrics, plots, graph) whose episodes travel as gzip+base64 blocks, decoded lazily in the browser."""

from __future__ import annotations

import base64
import functools
import gzip
import itertools
import json
import os
import sqlite3
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import yaml

from schola.errors import ConfigError
from schola.metrics import StreamingMean, parse_metric_key
from schola.report import find_runs, findings_of, plot, read_run, sweep_rows, wall_s
from schola.scenario import member_names
from schola.secrets import env_secrets, redact, redact_config
from schola.store import (
    LONE_SURROGATES,
    STAGE_EPISODE,
    RunStore,
    jsonl_lines,
    open_run_file,
    read_run_file,
)
from schola.view.blocks import Entry, EpisodeBlocks, StepStats, entry, finite, number, step_text
from schola.view.blocks import to_json as to_json  # (the viewer's modules import it from here)
from schola.view.layout import scenario_graphs

CHUNK = 100  # episodes per compressed block: opening one episode decodes at most this many
MAX_PLOT_BYTES = 8_000_000
# Score keys shown as columns of the episode table; past this many (a label per episode makes one key per
# episode), keys with labels are listed in each row instead (thousands of columns made a tab take seconds).
MAX_SCORE_COLUMNS = 12


def packed(raw: bytes) -> str:
    """gzip+base64 of JSON text's UTF-8 (mtime 0: the same run gives the same bytes; a lone surrogate travels as its
    JSON escape)."""
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def packed_pieces(raw: Iterable[bytes]) -> Iterator[str]:
    """gzip+base64 of bytes that come in pieces, as base64 text in pieces: the bytes `packed` gives their whole
    (gzip.compress with mtime 0 is zlib's gzip format at wbits 31), never holding them."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
    left = b""

    def b64(data: bytes, final: bool = False) -> str:
        nonlocal left
        data = left + data
        cut = len(data) if final else len(data) - len(data) % 3
        left = data[cut:]
        return base64.b64encode(data[:cut]).decode("ascii")

    for piece in raw:
        if out := deflate.compress(piece):
            yield b64(out)
    yield b64(deflate.flush(), final=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def roles_of(scenario: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Agent name (`teacher`, `students.0` or a member's own name: `member_names`) -> role kind, persona and
    backend."""
    out = {}
    roles = scenario.get("roles")
    for key, spec in roles.items() if isinstance(roles, dict) else ():  # a damaged config.yaml still shows the run
        members = spec if isinstance(spec, list) else [spec]
        for name, m in zip(member_names(str(key), spec), members):
            if not isinstance(m, dict):
                continue
            out[name] = {
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
    """A run's transcript, read in one pass that notes, for each line, its episode, its offset, and what the viewer
    shows of it (the step as JSON, secrets masked, and its counts) in a private SQLite database on disk: memory
    does not grow with the run, and a million replies are parsed once, not again for their episode's block. An
    episode's lines can also be read back whole (`lines`) from the same open file (a resume that replaces the
    file meanwhile does not move them).

    Args:
        path: transcript.jsonl.
        secrets: values masked in the steps (`steps`).
    """

    def __init__(self, path: Path, secrets: list[str] | None = None) -> None:
        self.file = open_run_file(path)
        self.secrets = secrets or []
        self.db = sqlite3.connect("")  # "": a temporary database in a file of its own, deleted when closed
        self.db.execute("CREATE TABLE line (episode TEXT, start INTEGER, step TEXT, tokens REAL, latency REAL, "
                        "queue REAL, cached INTEGER)")  # fmt: skip
        self.db.execute("CREATE TABLE finished (episode TEXT PRIMARY KEY) WITHOUT ROWID")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.db.close()

    def scan(self) -> dict[str, dict[str, float]]:
        """Read every line once (damaged ones dropped), noting each episode's offsets and steps; returns what
        `node_stats` gives of the lines, summed in the same pass."""
        if self.file is None:
            return {}
        self.file.seek(0)
        batch: list[tuple[Any, ...]] = []
        stats = StepStats()
        for start, text, line in jsonl_lines(self.file):  # a step is its line as written, when it can be
            if self.secrets:
                text = to_json(_clean({k: v for k, v in line.items() if k not in ("episode", "round")}, self.secrets))
            else:
                text = step_text(text, line)
            get = line.get
            tokens = number(get("prompt_tokens")) + number(get("completion_tokens"))
            latency, queue = number(get("latency_s")), number(get("queue_s"))
            batch.append((_db(str(get("episode"))), start, _db(text), tokens, latency, queue, bool(get("cached"))))
            stats.add(str(get("node", "-")), latency, queue)
            if len(batch) == 512:
                self.db.executemany("INSERT INTO line VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
                batch = []
        self.db.executemany("INSERT INTO line VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
        self.db.execute("CREATE INDEX by_episode ON line (episode)")
        return stats.means()

    def steps_of(self, episodes: list[str]) -> dict[str, list[Any]]:
        """The steps of a block of episodes, each as the viewer shows them (JSON text, in order), with their sums:
        `[texts, tokens, service time, queue time, cached]` per episode. One query a block: a query per episode
        cost more than the rest of its row."""
        out: dict[str, list[Any]] = {e: [[], 0, 0, 0, 0] for e in episodes}
        marks = ",".join("?" * len(out))
        query = (
            f"SELECT episode, step, tokens, latency, queue, cached FROM line WHERE episode IN ({marks}) ORDER BY rowid"
        )
        for e, step, tokens, latency, queue, cached in self.db.execute(query, [_db(e) for e in out]):
            s = out[_str(e)]
            s[0].append(_str(step))
            s[1] += tokens
            s[2] += latency
            s[3] += queue
            s[4] += cached
        return out

    def lines(self, episode: str) -> list[dict[str, Any]]:
        """An episode's lines, read back by their offsets."""
        out = []
        for (start,) in self.db.execute("SELECT start FROM line WHERE episode = ? ORDER BY rowid", (_db(episode),)):
            assert self.file is not None
            self.file.seek(start)
            out.append(json.loads(self.file.readline().decode("utf-8")))
        return out

    def finish(self, episodes: list[str]) -> list[bool]:
        """Note that `episodes` (a block of results lines, in order) have a results line (`unfinished` leaves them
        out); for each, False when it had one already (a repeated line, which `RunStore.results` would drop in a
        pass of its own)."""
        marks = ",".join("?" * len(episodes))
        keys = [_db(e) for e in episodes]
        seen = {_str(e) for (e,) in self.db.execute(f"SELECT episode FROM finished WHERE episode IN ({marks})", keys)}
        first = []
        for e in episodes:
            first.append(e not in seen)
            seen.add(e)
        self.db.executemany("INSERT OR IGNORE INTO finished VALUES (?)", ((k,) for k in keys))
        return first

    def unfinished(self) -> Iterator[str]:
        """The episodes of the transcript without a results line, in the order their first lines came."""
        yield from (_str(e) for (e,) in self.db.execute(
            "SELECT episode FROM line WHERE episode NOT IN (SELECT episode FROM finished) "
            "GROUP BY episode ORDER BY min(rowid)"
        ).fetchall())  # fmt: skip


def _db(text: str) -> bytes:
    """A text as the index stores it: UTF-8 bytes with lone surrogates kept (an id or a reply may hold one, which
    the store wrote as its escape; SQLite's text would refuse it)."""
    return text.encode("utf-8", "surrogatepass")


def _str(value: bytes) -> str:
    return value.decode("utf-8", "surrogatepass")


class Episodes:
    """The episode index (one small row per episode) and the compressed blocks of their conversations, made in
    one pass and written into the page as they are made (`json_pieces`), never held whole: a block is given away
    as soon as it is packed, the index rows wait in a temporary file and are packed after the last block.

    Args:
        run_dir: the run directory.
        transcript: its transcript, scanned already (`Transcript.scan`); closed at the end of `json_pieces`.
        secrets: values masked wherever they appear.
        blocks: the entries the run built as it went, checked against its files (`EpisodeBlocks.matches`), read
            instead of the files (then `transcript` is None); closed at the end of `json_pieces`.
    """

    def __init__(
        self, run_dir: Path, transcript: Transcript | None, secrets: list[str], blocks: EpisodeBlocks | None = None
    ) -> None:
        self.run_dir, self.transcript, self.secrets, self.blocks = run_dir, transcript, secrets, blocks
        self.count = 0
        self.statuses: dict[str, int] = {}
        self.score_keys: dict[str, None] = {}
        self._rows: IO[bytes] | None = None

    def _records(self) -> Iterator[tuple[dict[str, Any], str]]:
        assert self.transcript is not None
        results = RunStore(self.run_dir).results(once=False)
        while block := list(itertools.islice(results, CHUNK)):
            for r, first in zip(block, self.transcript.finish([r["episode"] for r in block])):
                if first:  # each episode once
                    yield r, "failed" if "error" in r else "finished"
        for e in self.transcript.unfinished():
            status = "stage" if e == STAGE_EPISODE else "unfinished"
            yield {"episode": e, "round": self.transcript.lines(e)[0].get("round")}, status

    def _read(self) -> Iterator[Entry]:
        """The entries read from the run's files: its results, each with its steps from the transcript's index."""
        assert self.transcript is not None
        records = self._records()
        clean = functools.partial(_clean, secrets=self.secrets)
        while block := list(itertools.islice(records, CHUNK)):
            steps = self.transcript.steps_of([str(r["episode"]) for r, _ in block])
            for r, status in block:
                yield entry(r, status, steps[str(r["episode"])], clean)

    def chunks(self) -> Iterator[str]:
        """The packed blocks of CHUNK episodes each, as they are made; the index rows go to a temporary file."""
        self._rows = rows = tempfile.TemporaryFile()  # noqa: SIM115  (closed by index(), or json_pieces' end)
        entries = self.blocks.entries() if self.blocks is not None else self._read()
        n_chunks = 0
        while block := list(itertools.islice(entries, CHUNK)):
            lines: list[bytes] = []
            for status, keys, row, _ in block:
                self.score_keys.update(dict.fromkeys(keys))
                lines.append(f'{row},"chunk":{n_chunks}}}\n'.encode("utf-8", LONE_SURROGATES))
                self.statuses[status] = self.statuses.get(status, 0) + 1
            rows.write(b"".join(lines))
            self.count += len(block)
            # the block's JSON as to_json writes {id: {inputs, outputs, error, steps}}, the steps' own text
            yield packed(b"{" + b",".join(e[3] for e in block) + b"}")
            n_chunks += 1

    def index(self) -> Iterator[str]:
        """The index, after `chunks`: a JSON list of the rows, packed (gzip+base64) as it is read back."""
        assert self._rows is not None, "chunks() first"
        columns = score_columns(list(self.score_keys))
        rows, self._rows = self._rows, None

        def text() -> Iterator[bytes]:  # the rows as written, but where some score keys are no column
            rows.seek(0)
            yield b"["
            for i, line in enumerate(rows):
                if len(columns) < len(self.score_keys):
                    row = json.loads(line)
                    others = {k: round(v, 3) if isinstance(v, float) else v
                              for k, v in row["scores"].items() if k not in columns}  # fmt: skip
                    row["other_scores"] = _clean(", ".join(f"{k}={v}" for k, v in others.items()), self.secrets)
                    line = to_json(row).encode("utf-8", LONE_SURROGATES)
                yield (b"," if i else b"") + line.rstrip(b"\n")
            yield b"]"

        with rows:
            yield from packed_pieces(text())

    def tail(self) -> dict[str, Any]:
        """What is known once every episode was read."""
        return {"count": self.count, "statuses": self.statuses, "score_keys": list(self.score_keys),
                "score_columns": score_columns(list(self.score_keys))}  # fmt: skip

    def json_pieces(self) -> Iterator[str]:
        """The episodes as a JSON object, in pieces: its blocks as they are made, then the index and the counts."""
        try:
            yield '{"chunks":['
            for i, block in enumerate(self.chunks()):
                yield ("," if i else "") + '"' + block + '"'
            yield '],"index":"'
            yield from self.index()
            yield '",' + to_json(self.tail())[1:]
        finally:
            self.close()

    def to_dict(self) -> dict[str, Any]:
        """All of it as one value (the live viewer's data.json, tests)."""
        try:
            chunks = list(self.chunks())
            return {"index": "".join(self.index()), **self.tail(), "chunks": chunks}
        finally:
            self.close()

    def close(self) -> None:
        for f in (self.transcript, self.blocks, self._rows):
            if f is not None:
                f.close()


class Streamed:
    """A value of the payload written into the page piece by piece, as it is made (`json_pieces`), never held whole:
    `pieces` gives its JSON text."""

    def __init__(self, pieces: Callable[[], Iterable[str]]) -> None:
        self.pieces = pieces


def json_pieces(obj: Any, escape: Callable[[str], str] = lambda t: t) -> Iterator[str]:
    """`obj` as JSON text (as `to_json` writes it), in pieces: a `Streamed` value as it is made; every piece passed
    through `escape` (a page's data block escapes `<`, `>` and `&`)."""
    if isinstance(obj, Streamed):
        yield from (escape(piece) for piece in obj.pieces())
    elif isinstance(obj, dict) and _streams(obj):
        for i, (k, v) in enumerate(obj.items()):
            yield escape(("{" if not i else ",") + to_json(str(k)) + ":")
            yield from json_pieces(v, escape)
        yield "}"
    elif isinstance(obj, list) and _streams(obj):
        yield "["
        for i, v in enumerate(obj):
            yield "," if i else ""
            yield from json_pieces(v, escape)
        yield "]"
    else:
        yield escape(to_json(obj))


def _streams(obj: Any) -> bool:
    if isinstance(obj, Streamed):
        return True
    if isinstance(obj, dict):
        return any(_streams(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_streams(v) for v in obj)
    return False


def episodes(run_dir: Path, transcript: Transcript, secrets: list[str]) -> dict[str, Any]:
    """The episode index (one small row per episode) and the compressed blocks of their conversations, as one
    value (`Episodes` writes them into a page without holding them)."""
    return Episodes(run_dir, transcript, secrets).to_dict()


def score_columns(keys: list[str]) -> list[str]:
    """The score keys the episode table shows as columns: all of them when they are few, else those without
    labels (the others go in one column, per row)."""
    if len(keys) <= MAX_SCORE_COLUMNS:
        return keys
    return [k for k in keys if "{" not in k][:MAX_SCORE_COLUMNS]


def plots(paths: Iterable[Path]) -> list[dict[str, str]]:
    """The run's PNG files, inlined; one that is not a regular file of the run (a link, a FIFO) or is too large is
    named with why it is not shown."""
    out = []
    for p in sorted(paths):
        try:
            png = read_run_file(p, limit=MAX_PLOT_BYTES)
        except ConfigError as e:
            out.append({"name": p.name, "note": f"not shown: {e.detail}"})
            continue
        if png is not None:
            out.append({"name": p.name, "uri": data_uri(png)})
    return out


def running(run_dir: Path) -> bool:
    """Whether a run is still going, judged from its files alone (the live viewer may read another process's run,
    or another machine's on a shared disk): status.json is the last file a run writes, so a run whose status.json
    is missing or older than its other files has not ended (or was killed before it could say so)."""

    def mtime(name: str) -> int:
        try:
            return os.stat(run_dir / name, follow_symlinks=False).st_mtime_ns
        except OSError:
            return -1

    status = mtime("status.json")
    return status < 0 or any(mtime(n) > status for n in ("transcript.jsonl", "results.jsonl", "ledger.json"))


def partial_metrics(store: RunStore) -> list[dict[str, Any]]:
    """The mean of each episode score over the episodes finished so far, with its CI, per round where there are
    several (what `RunDriver.episode_rows` gives a stopped run, before any stage)."""
    sums: dict[tuple[str, Any], StreamingMean] = {}
    for r in store.results():
        if "error" in r:
            continue
        for key, value in (r.get("scores") or {}).items():
            sums.setdefault((key, r.get("round", 0)), StreamingMean()).add(value, r["episode"])
    rounds = {rnd for _, rnd in sums}
    rows = []
    for (key, rnd), acc in sorted(sums.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        name, labels = parse_metric_key(key)
        extra: dict[str, Any] = {**labels, **({"round": rnd} if len(rounds) > 1 else {})}
        rows.append(finite(acc.row(name, **extra).to_dict()))
    return rows


def run_payload(
    run_dir: Path, *, name: str = ".", live: bool = False, stream: bool = False, blocks: EpisodeBlocks | None = None
) -> dict[str, Any]:
    """Everything the viewer shows of one run directory; a damaged file is a ConfigError naming it. `live`: a run
    still going (`running`) is shown from what it has written so far, its metrics over the finished episodes.
    `stream`: its episodes (and the counts that need them) are `Streamed` values, made as the page is written.
    `blocks`: the episode entries the run built as it went (`schola run`), used where they match its files."""
    store = RunStore(run_dir)
    going = live and running(run_dir)
    metrics: dict[str, Any] = {"metrics": partial_metrics(store), "status": "running"} if going else read_run(run_dir)
    try:
        config = store.read_config()
    except ConfigError:
        if os.path.lexists(run_dir / "config.yaml"):
            raise
        config = {}
    secrets = env_secrets(config)
    config = redact_config(config, secrets)
    status = (
        {"status": "running"} if going else store.read_json("status.json") or {"status": metrics.get("status", "?")}
    )
    if blocks is not None and not secrets and blocks.matches(run_dir):  # (the blocks mask nothing)
        stats, listed = blocks.stats.means(), Episodes(run_dir, None, secrets, blocks)  # closes the blocks once made
    else:
        if blocks is not None:
            blocks.close()
        transcript = Transcript(run_dir / "transcript.jsonl", secrets)
        try:
            stats = transcript.scan()
        except BaseException:
            transcript.close()
            raise
        listed = Episodes(run_dir, transcript, secrets)  # closes the transcript once made
    planned = metrics.get("episodes") or {}
    counts: Any = Streamed(lambda: [to_json(episode_counts(planned, listed.statuses))])  # after the episodes
    episode_data: Any = Streamed(listed.json_pieces)
    if not stream:
        episode_data = listed.to_dict()
        counts = episode_counts(planned, listed.statuses)
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
        "findings": [] if going else [f["line"] for f in findings_of(run_dir)],
        "running": going,
        "usage": usage_of(store, metrics),
        "exports": metrics.get("exports") or [],
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True) if config else "",
        "roles": roles_of(scenario),
        "plots": plots(run_dir.glob("*.png")),
        "graphs": scenario_graphs(scenario, stats),
        "episodes": episode_data,
        "counts": counts,  # after the episodes: a streamed page knows them once it wrote them
    }


def usage_of(store: RunStore, metrics: dict[str, Any]) -> dict[str, Any]:
    """Usage by role with its timings: ledger.json's (metrics.json leaves timings out, so the same run writes the
    same bytes: read from there, every role's mean latency was 0); metrics.json's where the ledger is unreadable."""
    try:
        ledger = store.read_ledger()
    except ConfigError:
        ledger = {}
    if isinstance(ledger.get("by_role"), dict) and isinstance(ledger.get("total"), dict):
        return {k: ledger[k] for k in ("total", "by_role", "spent") if k in ledger}
    return dict(metrics.get("usage") or {})


def episode_counts(planned: dict[str, Any], listed: dict[str, int]) -> dict[str, int]:
    """The run's episodes, each counted once in one meaning, for the header and the episode table alike: the
    planned total, split into finished, failed, unfinished (begun, in the transcript) and not started. The stages'
    own replies are no episode."""
    finished, failed, unfinished = listed.get("finished", 0), listed.get("failed", 0), listed.get("unfinished", 0)
    begun = finished + failed + unfinished
    total = planned.get("total")
    total = max(int(total), begun) if isinstance(total, (int, float)) else begun
    return {"total": total, "finished": finished, "failed": failed, "unfinished": unfinished,
            "not_started": total - begun, "listed": begun}  # fmt: skip


def live_runs(root: Path) -> list[Path]:
    """The runs below `root`, those still going included (a run writes config.yaml first, metrics.json last); not
    Hydra's own `.hydra/config.yaml`."""
    begun = {
        p.parent for p in root.rglob("config.yaml") if not any(s.startswith(".") for s in p.relative_to(root).parts)
    }
    return sorted(begun | set(find_runs(root)))


def sweep_payload(root: Path, *, live: bool = False, stream: bool = False) -> dict[str, Any]:
    """Every run below `root` and their comparison (the config keys that differ, metrics with CIs, the plot).
    `live`: the runs still going too (the comparison is over those that ended). `stream`: as `run_payload`'s."""
    varying, rows = sweep_rows(root) if not live or find_runs(root) else ([], [])
    uri = data_uri(plot(rows, varying)) if rows else ""
    found = live_runs(root) if live else find_runs(root)
    runs = [run_payload(r, name=str(r.relative_to(root)) if r != root else ".", live=live, stream=stream)
            for r in found]  # fmt: skip
    pooled = sorted({r["run"] for r in rows if r.get("status") == "pooled"})  # rows over runs, not runs
    return {"root": str(root), "varying": varying, "rows": finite(redact_config(rows)), "plot": uri, "runs": runs,
            "arms": [r["name"] for r in runs], "pooled": pooled}  # fmt: skip
