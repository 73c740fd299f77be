"""Fuzzed run directories through every reader: a finished scripted run is copied per case and one to three of its
files are replaced (a link out of the directory, a dangling or looping link, a hard link, a FIFO, a folder, an
empty, random or 1 GiB sparse file) or edited (torn, JSON of another type, deep nesting, a lone surrogate escape,
a non-UTF-8 byte, a NUL, a field of another type); then `schola show`, `schola view`, `schola report` and
`schola run resume=` (in-process) read it. Each ends with exit 0, 2, 3 or 4 and no traceback, within a bound;
nothing outside the case's directory changes; and what a link out of it reaches (a marked copy of each file)
never shows in any output or in any file written.

$SCHOLA_FUZZ_CASES sets the number of cases (default 25: about 20 s) here and in test_fuzz.py's data files. The full
run the issue asks for (SCHOLA_FUZZ_CASES=1000, 2 shared cores): 1,000 run directories, 4,000 commands (show 902
exit 0 / 98 exit 2, view 616 / 384, report 885 / 115, resume 609 / 391) in 380 s, and 1,000 data files in 153 s:
0 tracebacks, 0 exit 1, 0 hangs (the slowest command, view or resume over a 1 GiB sparse JSONL file, took about
20 s of the 60 s bound), nothing outside a case's directory changed, no marked byte in any output or written file.
What it found is pinned below, each case failing before its fix."""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SCRIPTED
from tests.reliability.conftest import TookTooLong, schola
from tests.reliability.mutate import RUN_FILES, fuzz_cases, mutate_run_dir

CASES = fuzz_cases(25)
LIMIT_S = 60.0  # one command past this is a hang (a 1 GiB file is read in a few seconds, or refused at once)
MARKER = "SENTINEL-4c1d-outside-the-run"
DATA_BLOCK = re.compile(r'<script type="application/json" id="schola-data">(.*?)</script>', re.S)


def marked(value: Any) -> Any:
    """`value` with every string the marker: whatever of it a reader shows gives it away."""
    if isinstance(value, str):
        return MARKER
    if isinstance(value, dict):
        return {k: marked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [marked(v) for v in value]
    return value


def plant_outside(base: Path, outside: Path) -> None:
    """What links out of a case's directory reach: a marked, well-formed copy of each run file."""
    outside.mkdir()
    for name in RUN_FILES:
        raw = (base / name).read_bytes() if (base / name).is_file() else b""
        if name.endswith(".jsonl"):
            text = "".join(json.dumps(marked(json.loads(x))) + "\n" for x in raw.decode().splitlines())
            data = text.encode()
        elif name.endswith(".json"):
            data = json.dumps(marked(json.loads(raw))).encode()
        elif name.endswith(".yaml"):
            data = yaml.safe_dump(marked(yaml.safe_load(raw))).encode()
        elif name.endswith(".png"):
            data = raw + MARKER.encode()  # still a PNG (trailing bytes are ignored)
        else:
            data = MARKER.encode() + b"\n"
        (outside / name).write_bytes(data)
    (outside / "hardlinked").write_bytes(b'{"episode": "hard", "text": "a file of the reader\'s own"}\n')


def snapshot(folder: Path) -> dict[str, Any]:
    """Every entry below `folder` (links not followed): type, size, mtime and content hash."""
    out: dict[str, Any] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root, name)
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
            out[str(p.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def revealed(path: Path) -> bytes:
    """A written file's bytes, and for report.html also what its data block carries packed (gzip+base64 blocks,
    data URIs): where a file read through a link would end up."""
    raw = path.read_bytes()
    if path.suffix != ".html" or not (block := DATA_BLOCK.search(raw.decode("utf-8", "replace"))):
        return raw
    parts = [raw]

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and len(value) > 16:
            text = value.split("base64,", 1)[-1]
            try:
                decoded = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                return
            parts.append(decoded)
            if decoded[:2] == b"\x1f\x8b":
                parts.append(gzip.decompress(decoded))

    with contextlib.suppress(ValueError):  # a mutated report.html that no reader rewrote (the view was refused)
        walk(json.loads(block.group(1)))
    return b"\n".join(parts)


def written(case: Path) -> list[Path]:
    """The regular files of a case's directory a reader may have written (not the 1 GiB mutants)."""
    return [
        p for p in case.rglob("*") if p.is_file() and not p.is_symlink() and p.lstat().st_size < 2**28
    ]  # fmt: skip


def problem(code: int, out: str) -> str | None:
    if "Traceback" in out:
        return "a traceback"
    if code not in (0, 2, 3, 4):
        return f"exit {code}"
    if MARKER in out:
        return "a file outside the run directory in the output"
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        return "output a UTF-8 terminal cannot print (a lone surrogate)"
    return None


READERS: list[tuple[str, ...]] = [("show", "{d}"), ("view", "{d}"), ("report", "{d}"), ("run", "resume={d}", *SCRIPTED)]


def test_mutated_run_directories_are_read_cleanly_by_every_reader(tmp_path: Path) -> None:
    base = tmp_path / "base"
    code, out, _ = schola("run", "scenario=lbt", *SCRIPTED, "run.episodes=2", f"hydra.run.dir={base}")
    assert code == 0, out
    assert schola("report", str(base))[0] == 0, "report.csv and report.png: the plot files of the run"
    outside = tmp_path / "outside"
    plant_outside(base, outside)
    cases = tmp_path / "cases"
    cases.mkdir()
    before, beside = snapshot(outside), sorted(os.listdir(tmp_path))
    tally: dict[str, int] = {}
    for seed in range(CASES):
        rng = random.Random(f"fuzz-rundir/{seed}")
        case = cases / f"case{seed}"
        shutil.copytree(base, case, symlinks=True)
        done = mutate_run_dir(case, outside, rng)
        for reader in READERS:
            args = [a.format(d=case) for a in reader]
            what = f"schola {' '.join(reader)} on a run directory with {done} (seed {seed})"
            try:
                code, out, _ = schola(*args, limit_s=LIMIT_S)
            except (TookTooLong, MemoryError) as e:
                pytest.fail(f"{type(e).__name__}: {what}")
            bad = problem(code, out)
            assert bad is None, f"{bad}: {what}:\n{out[-3000:]}"
            tally[f"{reader[0]} exit {code}"] = tally.get(f"{reader[0]} exit {code}", 0) + 1
        for p in written(case):
            assert MARKER.encode() not in revealed(p), f"{p.name} holds a file outside the run directory: {done}"
        assert snapshot(outside) == before, f"a file outside the run directory changed: {done} (seed {seed})"
        assert sorted(os.listdir(tmp_path)) == beside, f"written beside the run directory: {done} (seed {seed})"
        shutil.rmtree(case)
    print(f"{CASES} run directories: {dict(sorted(tally.items()))}")


# -- what this fuzzer found, each pinned by a small case (each failed before its fix) -------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-episode run (no response cache: module fixtures run outside each test's own cache)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    code, out, _ = schola(
        "run", "scenario=lbt", *SCRIPTED, "run.episodes=2", "cache.enabled=false", f"hydra.run.dir={run}"
    )
    assert code == 0, out
    return run


def copy_of(finished: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


def edit_json(path: Path, edit: Any) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")


def test_a_resume_never_writes_its_cache_where_the_saved_config_points(finished: Path, tmp_path: Path) -> None:
    run, elsewhere = copy_of(finished, tmp_path), tmp_path / "elsewhere"
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["cache"] = {"enabled": True, "dir": str(elsewhere)}
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (run / "results.jsonl").write_text("")  # both episodes run again: their replies go to a cache
    code, out, _ = schola("run", f"resume={run}", *SCRIPTED)
    assert code == 0, out
    assert not elsewhere.exists()


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d.update(by_role="teacher"), "by_role"),
        (lambda d: d["by_role"].update(teacher=None), "by_role.teacher"),
        (lambda d: d["spent"].update(requests="many"), "spent"),
        (lambda d: d["spent"].update(cost_usd=float("nan")), "spent"),  # the budget would never be spent
        (lambda d: d.update(wall_s="1 h"), "wall_s"),
    ],
)
def test_a_damaged_ledger_is_a_config_error_naming_its_key(
    finished: Path, tmp_path: Path, edit: Any, key: str
) -> None:  # an AttributeError or TypeError on resume
    run = copy_of(finished, tmp_path)
    edit_json(run / "ledger.json", edit)
    code, out, _ = schola("run", f"resume={run}", *SCRIPTED)
    assert code == 2 and "ledger.json" in out and f"key '{key}'" in out and "Traceback" not in out, out


def test_results_lines_of_another_shape_are_damaged_lines_run_again(finished: Path, tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)
    lines = [json.loads(x) for x in (run / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    lines[0]["scores"], lines[1]["round"] = "high", [1]  # a TypeError in the resumed run's score sums
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    code, out, _ = schola("run", f"resume={run}", *SCRIPTED)
    assert code == 0, out
    again = [json.loads(x) for x in (run / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["episode"] for r in again) == ["tp0", "tp1"] and all(isinstance(r["scores"], dict) for r in again)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d["metrics"][0].update(name=None), "metrics[0].name"),  # TypeError in show's table
        (lambda d: d["metrics"][1].update(value=[1]), "metrics[1].value"),  # TypeError in report's plot
        (lambda d: d["metrics"][0].update(labels="rule=MAJ"), "metrics[0].labels"),
        (lambda d: d.update(usage=[]), "usage"),
        (lambda d: d["usage"].update(total={"cost_usd": "free"}), "usage.total"),
        (lambda d: d.update(episodes={"failed": [1]}), "episodes"),
    ],
)
def test_metrics_of_another_type_are_a_config_error_naming_the_key(
    finished: Path, tmp_path: Path, edit: Any, key: str
) -> None:
    run = copy_of(finished, tmp_path)
    edit_json(run / "metrics.json", edit)
    for command in ("show", "report", "view"):
        code, out, _ = schola(command, str(run))
        assert code == 2 and "metrics.json" in out and f"key '{key}'" in out, f"schola {command}: {out}"


def test_lone_surrogate_escapes_in_metrics_are_printed_and_drawn(finished: Path, tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)
    text = (run / "metrics.json").read_text(encoding="utf-8")
    (run / "metrics.json").write_text(text.replace('"accuracy"', '"acc\\ud800"'), encoding="utf-8")
    for command in ("show", "report"):  # report: a TypeError in matplotlib; show: unprintable on a UTF-8 terminal
        code, out, _ = schola(command, str(run))
        assert code == 0 and "acc\ufffd" in out and problem(code, out) is None, out


def test_a_deeply_nested_saved_config_is_refused_by_resume_and_left_out_by_report(
    finished: Path, tmp_path: Path
) -> None:  # a RecursionError in report's reading of config.yaml
    run = copy_of(finished, tmp_path)
    (run / "config.yaml").write_text("scenario: " + "[" * 10_000 + "]" * 10_000 + "\nbackend: {}\n")
    assert schola("report", str(run))[0] == 0
    code, out, _ = schola("run", f"resume={run}", *SCRIPTED)
    assert code == 2 and "config.yaml" in out and "nest" in out, out


def test_the_cli_prints_a_path_utf8_cannot_hold(finished: Path, tmp_path: Path) -> None:
    """A folder whose name is not UTF-8 (a byte Python reads as a lone surrogate) is printed with an escape, not
    a UnicodeEncodeError traceback, on a UTF-8 terminal."""
    folder = os.fsencode(tmp_path) + b"/runs-\xff"
    os.mkdir(folder)
    shutil.copytree(finished, os.fsdecode(folder + b"/run"))
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "", "PYTHONUTF8": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "schola.cli", "report", folder], capture_output=True, env=env, timeout=120
    )
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    assert b"runs-\\udcff" in done.stdout


def test_a_fifo_named_like_the_lock_file_is_a_config_error_naming_it(finished: Path, tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)  # open(fd, "r+b") raised io.UnsupportedOperation (not seekable)
    (run / ".lock").unlink()
    os.mkfifo(run / ".lock")
    code, out, _ = schola("run", f"resume={run}", *SCRIPTED)
    assert code == 2 and ".lock" in out and "not a lock file" in out, out


def test_roles_of_another_type_in_the_saved_config_do_not_stop_the_viewer(finished: Path, tmp_path: Path) -> None:
    run = copy_of(finished, tmp_path)  # an AttributeError in the viewer's roles_of
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["scenario"]["roles"] = "teacher"
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    code, out, _ = schola("view", str(run))
    assert code == 0 and problem(code, out) is None, out
