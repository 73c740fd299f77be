"""report.html's episode entries built while the run goes, from the lines the run writes: the end of a run then only
joins and compresses them (issue 18: at a million episodes, reading the transcript and results again and ordering
the transcript through a SQLite index was a tenth of the run's wall).

The entries are a cache of what `payload.Episodes` reads from the files, used only when it is checked against them
(`EpisodeBlocks.matches`: the same sizes and the same SHA-1 as the bytes it saw, from the files' first byte on), so
a resumed run, a file changed by another writer or a run with secrets to mask takes the files' path and shows the
same page. Nothing per episode stays in memory: the entries wait in a temporary file, as does the id hash of each
(8 bytes); only the episodes in flight (their steps so far) are held."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import tempfile
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec

from schola.encoding import acyclic_encoder
from schola.store import LONE_SURROGATES, MAX_LINE_BYTES, STAGE_EPISODE, episode_record, open_run_file, parse_line

log = logging.getLogger("schola")
P = ParamSpec("P")

# An episode's entry, as the page's blocks take it: (status, its score keys, its index row as JSON without the block
# number and the closing brace, `"id":{inputs, outputs, error, steps}` as UTF-8)
Entry = tuple[str, list[str], str, bytes]
HASHES_READ = 1 << 16  # id hashes read at a time at the end of a run
_KEYS_MEMO = 1024  # distinct score-key lists remembered while reading entries back (one per episode with labels)
_INDEX = re.compile(r"\[\d+\]")


def step_of(node_path: str) -> str:
    """`teach[1].exam[2].solve` -> `teach.exam.solve`: the graph step a transcript line comes from."""
    return _INDEX.sub("", node_path)


def number(value: Any) -> float:
    """A count or a time a transcript line holds; 0 for anything else (the viewer never fails on what a run stored)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


class StepStats:
    """Per graph step: calls, mean service time (`latency_s`: the request itself) and mean queue wait (`queue_s`:
    behind the concurrency limit or the model's thread) in seconds, summed as transcript lines come."""

    def __init__(self) -> None:
        self.sums: dict[str, list[Any]] = {}  # graph step -> [calls, service time, queue time]
        self._steps: dict[str, str] = {}  # a line's node -> its graph step (`step_of`, once per node)

    def add(self, node: str, latency: float, queue: float) -> None:
        if (step := self._steps.get(node)) is None:
            step = self._steps[node] = step_of(node)
        if (acc := self.sums.get(step)) is None:
            acc = self.sums[step] = [0, 0.0, 0.0]
        acc[0] += 1
        acc[1] += latency
        acc[2] += queue

    def means(self) -> dict[str, dict[str, float]]:
        return {
            s: {"calls": c, "mean_latency_s": lat / c, "mean_queue_s": q / c} for s, (c, lat, q) in self.sums.items()
        }


def finite(obj: Any) -> Any:
    """`obj` with NaN and infinities as None (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):  # (a run's own records may hold tuples: JSON writes them as lists)
        return [finite(v) for v in obj]
    return obj


# one encoder for every value, built once (JSONEncoder.encode builds its C encoder again per call: a third of an
# episode row's cost); the payload's values are read from JSON or built here, so they hold no cycle. The sorted one
# writes a run's own record as its JSONL line reads back (keys sorted at every level: `store.dumps`).
_OPTIONS: dict[str, Any] = {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False, "default": str}
_ENCODE = {keys: acyclic_encoder(sort_keys=keys, **_OPTIONS) for keys in (False, True)}


def to_json(obj: Any, *, sort_keys: bool = False) -> str:
    try:
        return _ENCODE[sort_keys](obj)
    except ValueError:  # a NaN somewhere: the slow path
        return json.dumps(finite(obj), sort_keys=sort_keys, **_OPTIONS)


def step_text(text: str, line: dict[str, Any]) -> str:
    """A transcript line as the page shows it: the line as written where it can be (JSON has no NaN or Infinity)."""
    if not text.endswith("}") or "NaN" in text or "Infinity" in text:
        return to_json({k: v for k, v in line.items() if k not in ("episode", "round")})
    return text


def entry(record: dict[str, Any], status: str, steps: list[Any], clean: Any = None) -> Entry:
    """An episode's entry from its results record (or `{episode, round}` of one without) and its steps
    `[texts, tokens, service time, queue time, cached]`; `clean` masks secrets in what it shows."""
    keys, row, block = _texts(record, status, steps, clean)
    return status, keys, row, block.encode("utf-8", LONE_SURROGATES)


def _texts(record: dict[str, Any], status: str, steps: list[Any], clean: Any = None) -> tuple[list[str], str, str]:
    """`entry`'s score keys, row and block, as text."""
    eid = str(record["episode"])
    texts, tokens, latency, queue, cached = steps
    scores: dict[str, Any] = record["scores"] if isinstance(record.get("scores"), dict) else {}
    row = {"id": eid, "round": record.get("round"), "status": status, "scores": scores,
           "tokens": int(tokens), "steps": len(texts),
           "latency_s": round(latency, 6),  # the requests themselves
           "queue_s": round(queue, 6),  # their waits for a turn, apart
           "cached": cached}  # fmt: skip
    shown = {"inputs": record.get("inputs"), "outputs": record.get("outputs"),
             **({"error": record["error"]} if "error" in record else {})}  # fmt: skip
    if clean is not None:
        shown, row = clean(shown), clean(row)
    text = to_json(shown)
    return list(scores), to_json(row)[:-1], f'{to_json(eid)}:{text[:-1]},"steps":[{",".join(texts)}]}}'


def _own_texts(record: dict[str, Any], status: str, steps: list[Any]) -> tuple[list[str], str, str]:
    """`_texts` of the run's own record (`_plain`), not read back from the line written from it: its values as that
    line has them (keys sorted at every level: `store.dumps`), the row formatted directly (its fields are numbers)."""
    eid = record["episode"]
    eid = f'"{eid}"' if eid.isascii() and eid.isprintable() and '"' not in eid and "\\" not in eid else to_json(eid)
    texts, tokens, latency, queue, cached = steps
    scores = record.get("scores") or {}
    rnd = record.get("round")
    row = (f'{{"id":{eid},"round":{"null" if rnd is None else rnd},"status":"{status}",'
           f'"scores":{to_json(scores, sort_keys=True)},"tokens":{int(tokens)},"steps":{len(texts)},'
           f'"latency_s":{round(latency, 6)!r},"queue_s":{round(queue, 6)!r},"cached":{cached}')  # fmt: skip
    if "error" in record:
        error = to_json(record["error"], sort_keys=True)
        inputs, outputs = to_json(record.get("inputs"), sort_keys=True), to_json(record.get("outputs"), sort_keys=True)
        shown = f'{{"inputs":{inputs},"outputs":{outputs},"error":{error}}}'
    else:  # one call: "inputs" comes before "outputs" in the sorted order too
        shown = to_json({"inputs": record.get("inputs"), "outputs": record.get("outputs")}, sort_keys=True)
    return sorted(scores), row, f'{eid}:{shown[:-1]},"steps":[{",".join(texts)}]}}'


def _report_only(
    method: Callable[Concatenate[EpisodeBlocks, P], None],
) -> Callable[Concatenate[EpisodeBlocks, P], None]:
    """An `EpisodeBlocks` method the run calls: once the entries are given up it does nothing, and whatever goes wrong
    in it (a full disk, a bug) gives them up (`_gave_up`): the page is read from the files, and the report never
    changes how a run ends."""

    def guarded(self: EpisodeBlocks, /, *args: P.args, **kwargs: P.kwargs) -> None:
        if self.valid:
            try:
                method(self, *args, **kwargs)
            except Exception as e:
                self._gave_up(e)

    guarded.__doc__ = method.__doc__
    return guarded


class EpisodeBlocks:
    """The page's episode entries, built from each line as the run writes it (`line`, `result`), in the order of
    results.jsonl (`reorder` follows its sort); read back by `entries` once `matches` says the files are what it saw.
    """

    def __init__(self, *, masked: bool = False, folder: Path | None = None) -> None:
        self.folder = folder  # where its files go (the run directory: the same disk as the files it follows; unnamed)
        self.masked = masked  # the run masks secrets in its lines (`RunStore.masks`): they are read, not the records
        self.stats = StepStats()  # the graph's per-step calls and times, over every transcript line
        self._pending: dict[str, list[Any]] = {}  # episode in flight -> [round of its first line, steps]
        self._stage: IO[bytes] = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115  (closed by close())
        self._entries: IO[bytes] = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115
        self._hashes: IO[bytes] = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115  (hash(id) per entry, for repeats)
        # what it saw of each file, from its first byte: SHA-1 and size
        self._digests = {n: hashlib.sha1(usedforsecurity=False) for n in ("transcript.jsonl", "results.jsonl")}
        self._sizes = dict.fromkeys(self._digests, 0)
        self._unhashed: dict[str, list[bytes]] = {n: [] for n in self._digests}  # hashed a batch at a time
        self._ids = array("q")  # hash(id) of the entries not yet in self._hashes
        self._keys: tuple[list[str], str] = ([], "[]")  # the last score keys and their JSON
        self.count = 0  # entries, one a results line
        self.valid = True  # False once something it cannot follow happened (`matches` then says no)

    def close(self) -> None:
        for f in (self._stage, self._entries, self._hashes):
            f.close()

    def _saw(self, name: str, raw: bytes) -> None:
        batch = self._unhashed[name]
        batch.append(raw)
        if len(batch) == 512:
            self._hash(name)

    def _hash(self, name: str) -> None:
        batch = self._unhashed[name]
        joined = b"".join(batch)
        self._digests[name].update(joined)
        self._sizes[name] += len(joined)
        batch.clear()

    def _flush(self) -> None:
        """Everything seen is in the digests and the files (before they are read or compared)."""
        for name in self._unhashed:
            self._hash(name)
        self._hashes.write(self._ids.tobytes())
        self._ids = array("q")
        for f in (self._entries, self._hashes, self._stage):
            f.flush()

    def _gave_up(self, e: Exception) -> None:
        """The report never changes how a run ends: the page is read from the run's files at the end instead."""
        self.valid = False
        log.warning(
            "report.html's entries given up while the run went (%s: %s); it is made from the files", type(e).__name__, e
        )

    @_report_only
    def line(self, raw: bytes, record: dict[str, Any] | None = None) -> None:
        """A transcript line as written (its bytes, newline included) and the record written (`record`: its values
        are those the line reads back as, unless a secret was masked in it or a value is not of the engine's types,
        and then the line is read)."""
        self._saw("transcript.jsonl", raw)
        if len(raw) > MAX_LINE_BYTES:  # the reader drops it too
            return
        text, line = "", record
        if (line is not None and not self.masked and type(line.get("episode")) is str
                and type(line.get("node", "-")) is str and type(line.get("cached", False)) is bool):  # fmt: skip
            text = raw.decode("utf-8").rstrip("\r\n")
            if not text.endswith("}") or "NaN" in text or "Infinity" in text:
                text = ""  # (shown from the line as read back: `step_text`)
        if not text:
            parsed = parse_line(raw)
            if parsed is None:  # damaged: the reader drops it too
                return
            text, line = parsed
        assert line is not None
        get = line.get
        eid = str(get("episode"))
        latency, queue = number(get("latency_s")), number(get("queue_s"))
        self.stats.add(str(get("node", "-")), latency, queue)
        steps = self._pending.get(eid)
        if steps is None:
            steps = self._pending[eid] = [get("round"), [[], 0, 0, 0, 0]]
        acc = steps[1]
        shown = step_text(text, line)
        if eid == STAGE_EPISODE:  # the stages' replies may be many: their texts wait on disk
            self._stage.write(shown.encode("utf-8", LONE_SURROGATES) + b"\n")
            acc[0].append(None)
        else:
            acc[0].append(shown)
        acc[1] += number(get("prompt_tokens")) + number(get("completion_tokens"))
        acc[2] += latency
        acc[3] += queue
        acc[4] += bool(get("cached"))

    @_report_only
    def result(self, line: str, record: dict[str, Any] | None = None) -> None:
        """A results line as written (newline included) and the record written (as `line`'s): the episode's entry,
        its steps given back."""
        raw = line.encode("utf-8", LONE_SURROGATES)
        self._saw("results.jsonl", raw)
        r, own = record, True
        if r is None or self.masked or len(raw) > MAX_LINE_BYTES or not _plain(r):
            parsed = parse_line(raw) if len(raw) <= MAX_LINE_BYTES else None
            if parsed is None or not episode_record(parsed[1]):
                self.valid = False  # a line the reader drops: the entries no longer follow the file line by line
                return
            r, own = parsed[1], False
        eid = r["episode"]
        pending = self._pending.pop(eid, None)
        if pending is None:
            pending = [None, [[], 0, 0, 0, 0]]
        elif eid == STAGE_EPISODE:
            self.valid = False
            return
        status = "failed" if "error" in r else "finished"
        keys, row, block = (_own_texts if own else _texts)(r, status, pending[1])
        if keys != self._keys[0]:
            self._keys = keys, to_json(keys)
        self._entries.write(f"{status}\t{self._keys[1]}\t{row}\t{block}\n".encode("utf-8", LONE_SURROGATES))
        self._ids.append(hash(eid))
        if len(self._ids) == 4096:
            self._hashes.write(self._ids.tobytes())
            self._ids = array("q")
        self.count += 1

    @_report_only
    def reorder(self, order: Any, results: Path) -> None:
        """results.jsonl was sorted (`RunStore.sort_results` gave `order`): the entries follow, and what it saw of
        the file is the file as now written."""
        if len(order) != self.count:  # (`_report_only` calls it only while the entries are valid)
            self.valid = False
            return
        self._flush()
        self._entries.seek(0)
        starts = array("q")
        at = 0
        for raw in self._entries:
            starts.append(at)
            at += len(raw)
        moved = tempfile.TemporaryFile(dir=self.folder)  # noqa: SIM115
        for i in order:
            self._entries.seek(starts[i])
            moved.write(self._entries.readline())
        self._entries.close()
        self._entries = moved  # (the ids' hashes stay as they are: `matches` asks of them nothing that needs order)
        self._digests["results.jsonl"], self._sizes["results.jsonl"] = hashlib.sha1(usedforsecurity=False), 0
        f = open_run_file(results)
        if f is None:
            self.valid = False
            return
        with f:
            while chunk := f.read(1 << 20):
                self._digests["results.jsonl"].update(chunk)
                self._sizes["results.jsonl"] += len(chunk)

    def matches(self, run_dir: Path) -> bool:
        """Whether the run directory's transcript and results are, byte for byte, the lines this saw (and no episode
        id came twice, and none went on after its results line): only then are the entries the files' page."""

        if not self.valid:
            return False
        self._flush()
        for name, digest in self._digests.items():
            if not _same(run_dir / name, self._sizes[name], digest.hexdigest()):
                return False
        return not self._late() and not self._repeated()

    def _hashes_read(self) -> Iterator[Any]:
        """The entries' id hashes (int64), a chunk at a time."""
        import numpy as np

        self._hashes.seek(0)
        while chunk := self._hashes.read(8 * HASHES_READ):
            yield np.frombuffer(chunk, dtype=np.int64)

    def _late(self) -> bool:
        """Whether an episode in flight at the end has an entry (it went on after its results line)."""
        import numpy as np

        late = np.array([hash(e) for e in self._pending], dtype=np.int64)
        return bool(len(late)) and any(np.isin(h, late).any() for h in self._hashes_read())

    def _repeated(self) -> bool:
        """Whether two entries share an id (the reader shows the first alone), at 4 bytes an entry: the hashes' low 32
        bits sorted in place (8 bytes an entry had put a million episodes' peak 10% above 100,000's); the few low
        halves that come twice (~N^2/2^33 by chance) are then checked on the whole hashes."""
        import numpy as np

        low = np.empty(self._hashes.seek(0, 2) // 8, dtype=np.uint32)
        at = 0
        for h in self._hashes_read():
            low[at : at + len(h)] = h.astype(np.uint32)  # (the low 32 bits)
            at += len(h)
        low.sort()
        twins = low[1:][low[1:] == low[:-1]]
        del low
        if not len(twins):
            return False
        whole = np.sort(np.concatenate([h[np.isin(h.astype(np.uint32), twins)] for h in self._hashes_read()]))
        return bool((whole[1:] == whole[:-1]).any())

    def entries(self) -> Iterator[Entry]:
        """The entries in the page's order: each results line's, then the episodes begun and not finished (and the
        stages' replies), in the order their first lines came."""
        self._flush()
        self._entries.seek(0)
        memo: dict[bytes, list[str]] = {}
        for raw in self._entries:
            said, keys_text, row, block = raw[:-1].split(b"\t", 3)
            keys = memo.get(keys_text)
            if keys is None:
                keys = _keys(keys_text)
                if len(memo) < _KEYS_MEMO:
                    memo[keys_text] = keys
            yield said.decode(), keys, row.decode("utf-8"), block
        self._stage.seek(0)
        for eid, (rnd, steps) in self._pending.items():
            if eid == STAGE_EPISODE:
                steps[0] = [self._stage.readline()[:-1].decode("utf-8") for _ in steps[0]]
            status = "stage" if eid == STAGE_EPISODE else "unfinished"
            yield entry({"episode": eid, "round": rnd}, status, steps)


def _plain(record: dict[str, Any]) -> bool:
    """Whether a results record reads back as itself but for the order of its keys (`_texts(unsorted=True)`)."""
    return (
        episode_record(record)
        and type(record["episode"]) is str
        and all(type(k) is str for k in record.get("scores") or ())
    )


def _keys(text: bytes) -> list[str]:
    keys: list[str] = json.loads(text)
    return keys


def _same(path: Path, size: int, digest: str) -> bool:
    """Whether `path` is a regular file of `size` bytes whose SHA-1 is `digest`."""
    try:
        f = open_run_file(path)
    except Exception:
        return False
    if f is None:
        return size == 0
    with f:
        h = hashlib.sha1(usedforsecurity=False)
        n = 0
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
            if n > size:
                return False
    return n == size and h.hexdigest() == digest
