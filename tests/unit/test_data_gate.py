"""Every data file a scenario reads goes through one gate (schola.data.DataFiles): a file that is not UTF-8, a
directory, a device, an empty file or a huge one is a configuration error (exit 2) naming the file, found at
once and in bounded memory, whichever scenario and data key names it. A lone surrogate in a record is replaced,
so the run still writes its report; one dotted-path lookup serves data fields, stats columns and templates."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schola import data, stats, templates
from schola.data import DataConfig, DataFiles, load_records
from schola.errors import ConfigError
from tests.conftest import SCRIPTED, read_jsonl
from tests.reliability.conftest import TookTooLong, schola

LIMIT_S = 10.0  # generous: each case is refused in well under a second; before the gate /dev/zero never ended

# scenario, the suffix its loader expects, the overrides that point its data key at a file `{f}`
CASES: list[tuple[str, str, list[str]]] = [
    ("mooc_grading", ".csv", ["scenario.data.path={f}"]),
    ("mooc_grading", ".yaml", ["scenario.data.courses=['{f}']"]),
    ("sight", ".csv", ["scenario.data.path={f}"]),
    ("spp", ".jsonl", ["scenario.data.path={f}"]),
    ("tom_teaching", ".jsonl", ["scenario.data.path={f}", "scenario.data.train_path={f}"]),
    ("arte", ".json", ["scenario.data.paths=['{f}']"]),
    ("instruct_mtl", ".json", ["scenario.data.instructions={f}"]),
    ("instruct_mtl", ".jsonl", ["scenario.data.path={f}"]),
    ("curriculum", ".csv", ["scenario.data.path={f}"]),
    ("curriculum", ".npz", ["scenario.data.path={f}"]),
    ("lbt", ".jsonl", ["scenario.data.path={f}"]),
    ("comd", ".jsonl", ["scenario.data.path={f}"]),
]


def not_utf8(folder: Path, suffix: str) -> str:
    path = folder / f"latin1{suffix}"
    path.write_bytes('{"question": "café"}\n'.encode("latin-1"))
    return str(path)


def directory(folder: Path, suffix: str) -> str:
    path = folder / f"folder{suffix}"
    path.mkdir()
    return str(path)


def empty(folder: Path, suffix: str) -> str:
    path = folder / f"empty{suffix}"
    path.touch()
    return str(path)


def sparse(folder: Path, suffix: str) -> str:
    path = folder / f"huge{suffix}"
    with path.open("wb") as f:
        f.truncate(1 << 30)  # 1 GiB of zeros that takes no disk
    return str(path)


BAD: dict[str, Callable[[Path, str], str]] = {
    "not UTF-8": not_utf8,
    "a directory": directory,
    "/dev/zero": lambda folder, suffix: "/dev/zero",
    "empty": empty,
    "1 GiB sparse": sparse,
}


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize(("scenario", "suffix", "overrides"), CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
def test_a_bad_data_file_is_exit_2_naming_it_at_once_in_bounded_memory(
    tmp_path: Path, scenario: str, suffix: str, overrides: list[str], bad: str
) -> None:
    file = BAD[bad](tmp_path, suffix)
    args = [f"scenario={scenario}", *SCRIPTED, *(o.format(f=file) for o in overrides)]
    try:
        code, out, _ = schola(
            "run", *args, "run.episodes=1", f"hydra.run.dir={tmp_path / 'r'}", limit_s=LIMIT_S, limit_mb=1024
        )
    except (TookTooLong, MemoryError) as e:
        pytest.fail(f"{type(e).__name__}: {bad} as {scenario}'s data was not refused at once")
    assert code == 2 and "Traceback" not in out, out[-2000:]
    assert Path(file).name in out, out[-2000:]  # the message names the file
    assert not (tmp_path / "r" / "results.jsonl").exists()


# ---- lone surrogates ----------------------------------------------------------------------------------------


def test_a_lone_surrogate_in_a_record_is_replaced_and_the_run_writes_its_report(tmp_path: Path) -> None:
    path = tmp_path / "instructions.jsonl"
    path.write_text(json.dumps({"instruction": "Why is the sky blue? \ud83d\ude00 \ud800 end"}) + "\n")  # an escape
    run = tmp_path / "r"
    args = [f"scenario.data.path={path}", "scenario.params.rounds=1", f"hydra.run.dir={run}"]
    code, out, _ = schola("run", "scenario=comd", *SCRIPTED, *args)
    assert code == 0, out[-2000:]
    assert (run / "report.html").is_file()
    (result,) = read_jsonl(run / "results.jsonl")[:1]
    assert "Why is the sky blue? \U0001f600 \ufffd end" in json.dumps(result, ensure_ascii=False)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("r.jsonl", '{"a": "x\\ud800y", "\\udc00": ["\\ud800"]}\n'),
        ("r.json", '[{"a": "x\\ud800y", "\\udc00": ["\\ud800"]}]'),
    ],
)
def test_every_reader_replaces_lone_surrogates_and_keeps_pairs_and_escaped_backslashes(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    ((_, record),) = data.read_rows(path)
    assert record == {"a": "x\ufffdy", "\ufffd": ["\ufffd"]}
    path.write_text(text.replace("\\ud800", "\\\\ud800").replace("\\udc00", "\\ud83d\\ude00"))  # no surrogate left
    ((_, record),) = data.read_rows(path)
    assert record == {"a": "x\\ud800y", "\U0001f600": ["\\ud800"]}


def test_json_documents_and_inline_records_replace_lone_surrogates_too(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"q": "a\\ud800", "list": ["\\udfff"]}')
    assert DataFiles(str(tmp_path / "s.yaml")).document("c.json") == {"q": "a\ufffd", "list": ["\ufffd"]}
    assert load_records(DataConfig(records=[{"q": "a\ud800"}]))[0]["q"] == "a\ufffd"


def test_tom_teachings_own_json_reader_replaces_them_as_well(tmp_path: Path) -> None:
    from schola.scenarios.tom_teaching.data import read_items

    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"question": "Is it \ud800?", "answer": True, "facts": ["yes"]}] * 2))
    assert read_items(path, "yesno")[0]["question"] == "Is it \ufffd?"


@pytest.mark.parametrize("name", ["deep.jsonl", "deep.json"])
def test_values_nested_too_deeply_are_a_config_error_in_tom_teachings_reader_too(tmp_path: Path, name: str) -> None:
    from schola.scenarios.tom_teaching.data import read_items

    nested = "[" * 100_000 + "]" * 100_000
    (tmp_path / name).write_text(f'{{"question": {nested}}}' if name.endswith("l") else f'[{{"question": {nested}}}]')
    for read in (data.read_rows, lambda path: read_items(path, "yesno")):
        with pytest.raises(ConfigError, match="nested too deeply"):
            read(tmp_path / name)


# ---- the gate's own checks ----------------------------------------------------------------------------------


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(ConfigError, match="not a regular file"):
        DataFiles().rows(tmp_path / "pipe.jsonl")


def test_tsv_files_are_read_as_tab_separated_rows(tmp_path: Path) -> None:
    (tmp_path / "d.tsv").write_text("id\tquestion\na\t2, or 3?\n")
    assert DataFiles().rows(tmp_path / "d.tsv") == [
        (f"{tmp_path / 'd.tsv'}:2 (row 1)", {"id": "a", "question": "2, or 3?"})
    ]


# ---- one dotted-path lookup ---------------------------------------------------------------------------------


def test_one_dotted_path_lookup_serves_data_stats_and_templates() -> None:
    assert data.lookup is templates.lookup
    record: dict[str, Any] = {"scores": {"acc{model=gpt-4.1}": 1.0}, "grades": [3, 4]}
    # a key holding dots, under another key: data fields read it as stats columns do
    assert data.lookup(record, "scores.acc{model=gpt-4.1}") == 1.0
    assert stats.lookup(record, "scores.acc{model=gpt-4.1}") == 1.0
    assert stats.lookup(record, "grades.--1") is stats._ABSENT  # not an index (was a ValueError)
    assert templates.render("{{ scores.items }}", {"scores": {"items": "x"}}) != "x"  # Jinja's rules: a dict method
