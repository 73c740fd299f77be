"""A run directory cannot be turned against its reader: run directories are shared and downloaded like notebooks, so
a prepared one must not make `schola view` or `schola run resume=` write through a link, read a file outside the
directory into report.html, hang on a FIFO, or fail on what a run stored."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from schola.errors import ConfigError
from schola.store import read_run_file
from schola.view import build_html, main
from tests.browser.runs import synthetic_run
from tests.conftest import SCRIPTED

DATA_BLOCK = re.compile(r'<script type="application/json" id="schola-data">(.*?)</script>', re.S)
LBT = ["run", "scenario=lbt", *SCRIPTED, "scenario.roles.teacher.samples=3", "run.episodes=2"]


def page_data(html: str) -> dict[str, Any]:
    return json.loads(DATA_BLOCK.search(html).group(1))  # type: ignore[union-attr]


def unpack(block: str) -> Any:
    return json.loads(gzip.decompress(base64.b64decode(block)))


def victim(tmp_path: Path) -> Path:
    """A file of the reader's, outside the run directory."""
    path = tmp_path / "victim.txt"
    path.write_text("the reader's own file\n")
    return path


def test_a_temp_name_linked_to_a_file_of_the_readers_is_never_written_through_by_view(tmp_path: Path) -> None:
    run, mine = synthetic_run(tmp_path / "r", 3), victim(tmp_path)
    (run / "report.html.tmp").symlink_to(mine)
    assert main([str(run)]) == 0
    assert mine.read_text() == "the reader's own file\n"
    assert (run / "report.html").is_file() and not (run / "report.html").is_symlink()


def test_a_temp_name_linked_to_a_file_of_the_readers_is_never_written_through_by_resume(
    cli: Any, tmp_path: Path
) -> None:
    run, mine = tmp_path / "r", victim(tmp_path)
    assert cli(*LBT, "budget.max_requests=5", f"hydra.run.dir={run}")[0] == 4
    (run / "config.yaml.tmp").symlink_to(mine)
    code, out = cli("run", f"resume={run}", "budget.max_requests=1000")
    assert code == 0, out
    assert mine.read_text() == "the reader's own file\n"


def test_a_fresh_run_never_appends_through_a_dangling_link(cli: Any, tmp_path: Path) -> None:
    run, outside = tmp_path / "r", tmp_path / "outside.jsonl"
    run.mkdir()
    (run / "transcript.jsonl").symlink_to(outside)
    code, out = cli(*LBT, f"hydra.run.dir={run}")
    assert code == 2 and "already holds a run" in out, out
    assert not outside.exists()


def test_a_plot_linked_to_a_file_outside_the_run_is_not_inlined(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "r", 3)
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$secret-hash-that-must-not-leak:19000:0:99999:7:::\n")
    (run / "plot.png").symlink_to(secret)
    html = build_html(run)
    assert base64.b64encode(secret.read_bytes()).decode() not in html
    [plot] = page_data(html)["runs"][0]["plots"]
    assert plot["name"] == "plot.png" and "uri" not in plot and "symbolic link" in plot["note"]


def test_a_fifo_named_like_a_plot_does_not_hang_view(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "r", 3)
    os.mkfifo(run / "plot.png")
    done = subprocess.run(
        [sys.executable, "-m", "schola.view", str(run)], capture_output=True, text=True, timeout=60
    )  # it used to wait forever for a writer
    assert done.returncode == 0, done.stdout + done.stderr
    [plot] = page_data((run / "report.html").read_text())["runs"][0]["plots"]
    assert "not a regular file" in plot["note"]


def test_a_run_file_linked_out_of_the_directory_is_a_config_error_naming_it(tmp_path: Path, capsys: Any) -> None:
    other = synthetic_run(tmp_path / "other", 2)
    run = synthetic_run(tmp_path / "r", 2)
    (run / "metrics.json").unlink()
    (run / "metrics.json").symlink_to(other / "metrics.json")
    assert main([str(run)]) == 2
    err = capsys.readouterr().err
    assert str(run / "metrics.json") in err and "symbolic link" in err and "Traceback" not in err


def test_the_reader_takes_regular_files_only_and_bounds_their_size(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_bytes(b"x" * 101)
    (tmp_path / "folder.json").mkdir()
    assert read_run_file(tmp_path / "absent.json") is None
    assert read_run_file(tmp_path / "big.json", limit=101) == b"x" * 101
    for name, limit in (("big.json", 100), ("folder.json", 100)):
        with pytest.raises(ConfigError, match=name):
            read_run_file(tmp_path / name, limit=limit)


def test_a_lone_surrogate_in_a_record_does_not_stop_the_viewer(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "r", 2)
    record = {"episode": "odd", "round": 0, "inputs": {"id": "odd", "q": "\ud800 broken"}, "outputs": {}, "scores": {}}
    with open(run / "results.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")  # ensure_ascii: the escape \ud800, as a server's broken reply is stored
    assert main([str(run)]) == 0
    episodes = page_data((run / "report.html").read_text(encoding="utf-8"))["runs"][0]["episodes"]
    assert any(unpack(c).get("odd", {}).get("inputs") == record["inputs"] for c in episodes["chunks"])


def test_a_label_per_episode_is_shown_per_row_not_as_a_column_each(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "r", 2000)
    lines = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    for r in lines:
        r["scores"][f"ok{{episode={r['episode']}}}"] = 1.0
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    episodes = page_data(build_html(run))["runs"][0]["episodes"]
    assert len(episodes["score_keys"]) == 2001
    assert episodes["score_columns"] == ["correct"]
    index = unpack(episodes["index"])
    assert index[7]["id"] == "e7" and index[7]["other_scores"] == "ok{episode=e7}=1.0"
