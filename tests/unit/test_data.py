from __future__ import annotations

from pathlib import Path

import pytest

from schola.data import DataConfig, load_records
from schola.errors import ConfigError


def test_csv_records_with_field_mapping_and_ids(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("qid,prompt_text,label\nq1,2+2?,4\nq2,3+3?,6\n")
    eps = load_records(
        DataConfig(path="items.csv", fields={"question": "prompt_text", "answer": "label"}, id_field="qid"),
        source=str(tmp_path / "scenario.yaml"),  # relative to the scenario's folder
    )
    assert [(e["id"], e["question"], e["answer"]) for e in eps] == [("q1", "2+2?", "4"), ("q2", "3+3?", "6")]


def test_jsonl_errors_name_the_line_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "a"}\n{"q": \n')
    with pytest.raises(ConfigError, match=r"d.jsonl:2: invalid JSON line"):
        load_records(DataConfig(path=str(path)))
    path.write_text('{"q": "a"}\n')
    with pytest.raises(ConfigError, match="has no column"):
        load_records(DataConfig(path=str(path), fields={"question": "prompt"}))
    with pytest.raises(ConfigError, match="data file not found"):
        load_records(DataConfig(path="nope.jsonl"))
