from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from schola import data
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


def test_csv_keeps_quoted_newlines_and_reads_empty_cells_as_missing(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_bytes(b'id,comment,grade\r\na,"line one\r\nline two",3\r\nb,,\r\nc,"say ""hi""",1\r\n')
    eps = load_records(DataConfig(path=str(tmp_path / "c.csv")))
    assert [(e["id"], e["comment"], e["grade"]) for e in eps] == [
        ("a", "line one\r\nline two", "3"), ("b", None, None), ("c", 'say "hi"', "1"),
    ]  # fmt: skip


def test_column_types_convert_values_and_a_bad_value_names_file_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("label,score,flag,note\n1,0.5,true,x\n0,,no,\n2,1e3,1,y\n")
    types = {"label": "int", "score": "float", "flag": "bool"}
    eps = load_records(DataConfig(path=str(path), types=types))  # type: ignore[arg-type]
    assert [(e["label"], e["score"], e["flag"], e["note"]) for e in eps] == [
        (1, 0.5, True, "x"), (0, None, False, None), (2, 1000.0, True, "y"),
    ]  # fmt: skip
    path.write_text("label,score,flag\n1,0.5,yes\n2,abc,no\n")
    with pytest.raises(ConfigError, match=r"t\.csv:3.*row 2.*'score'.*'abc'.*float"):
        load_records(DataConfig(path=str(path), types=types))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'lable'"):
        load_records(DataConfig(path=str(path), types={"lable": "int"}))  # type: ignore[dict-item]


def test_fields_take_nested_paths_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text('{"q": "2+2?", "targets": ["4", "four"], "meta": {"facts": ["f1"]}}\n')
    (ep,) = load_records(DataConfig(path=str(path), fields={"answer": "targets.0", "facts": "meta.facts"}))
    assert (ep["answer"], ep["facts"], ep["id"]) == ("4", ["f1"], "0")
    with pytest.raises(ConfigError, match=r"n\.jsonl:1.*'targets\.5'"):
        load_records(DataConfig(path=str(path), fields={"answer": "targets.5"}))


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "split": "test" if i % 2 else "train", "question": "q" * i} for i in range(n)]


def test_filter_shuffle_and_sample_apply_in_that_order_seeded_by_the_run_seed() -> None:
    data = DataConfig(records=rows(40), filter="split == 'test' and len(question) < 30")
    assert [e["id"] for e in load_records(data)] == [f"r{i}" for i in range(1, 30, 2)]
    shuffled = DataConfig(records=rows(40), filter="split == 'test'", shuffle=True)
    a, b, c = (load_records(shuffled, seed=s) for s in (1, 1, 2))
    assert a == b and a != c and sorted(e["id"] for e in a) == sorted(f"r{i}" for i in range(1, 40, 2))
    sampled = DataConfig(records=rows(40), filter="split == 'test'", sample=5)
    s1, s2 = load_records(sampled, seed=1), load_records(sampled, seed=2)
    assert len(s1) == 5 and s1 == load_records(sampled, seed=1) and s1 != s2
    assert all(e["split"] == "test" for e in s1)
    assert [e["id"] for e in s1] == sorted((e["id"] for e in s1), key=lambda i: int(i[1:]))  # file order kept
    assert len(load_records(DataConfig(records=rows(3), sample=10))) == 3


def test_a_bad_filter_is_a_config_error_naming_the_key_and_record() -> None:
    with pytest.raises(ConfigError, match=r"records\[0\].*missing") as e:
        load_records(DataConfig(records=[{"a": 1}], filter="missing > 1"))
    assert e.value.key == "scenario.data.filter"
    with pytest.raises(ConfigError) as e:
        load_records(DataConfig(records=[{"a": 1}], filter="a.__class__"))
    assert e.value.key == "scenario.data.filter"
    with pytest.raises(ConfigError, match="none of"):
        load_records(DataConfig(records=[{"a": 1}], filter="a > 1"))


def test_episode_ids_come_from_id_field_else_the_records_id_else_the_row() -> None:
    recs: list[dict[str, Any]] = [{"key": "k0", "id": "x"}, {"key": "k1"}]
    assert [e["id"] for e in load_records(DataConfig(records=recs, id_field="key"))] == ["k0", "k1"]
    assert [e["id"] for e in load_records(DataConfig(records=recs))] == ["x", "1"]
    with pytest.raises(ConfigError, match=r"records\[1\].*'id'"):
        load_records(DataConfig(records=recs, id_field="id"))


def test_non_utf8_byte_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"q": "a"}\n{"q": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"b\.jsonl:2.*UTF-8"):
        load_records(DataConfig(path=str(path)))


def test_a_directory_a_device_or_a_too_large_file_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(ConfigError, match="directory"):
        load_records(DataConfig(path=str(tmp_path / "dir.jsonl")))
    with pytest.raises(ConfigError, match="not a regular file"):
        load_records(DataConfig(path="/dev/zero"))
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_records(DataConfig(path=str(fifo)))  # opening it would block forever
    big = tmp_path / "big.jsonl"
    big.write_text('{"q": 1}\n' * 20)
    monkeypatch.setattr(data, "MAX_DATA_BYTES", 100)
    with pytest.raises(ConfigError, match=r"larger than .*MAX_DATA_BYTES"):
        load_records(DataConfig(path=str(big)))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("s.json", "[1, 2]", r"s\.json: item 0.*object"),
        ("o.json", '{"q": 1}', r"o\.json.*list of objects.*found an object"),
        ("n.jsonl", '{"q": 1}\n42\n', r"n\.jsonl:2.*object.*found a number"),
        ("l.jsonl", '["q"]\n', r"l\.jsonl:1.*found a list"),
    ],
)
def test_json_that_is_not_a_list_of_objects_names_file_and_row(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_records(DataConfig(path=str(tmp_path / name)))


def test_missing_id_field_names_file_and_row(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("qid,q\nq1,a\n,b\n")
    with pytest.raises(ConfigError, match=r"m\.csv:3.*row 2.*'qid'"):
        load_records(DataConfig(path=str(tmp_path / "m.csv"), id_field="qid"))
    (tmp_path / "m.jsonl").write_text('{"qid": "a"}\n{"q": "b"}\n')
    with pytest.raises(ConfigError, match=r"m\.jsonl:2.*'qid'"):
        load_records(DataConfig(path=str(tmp_path / "m.jsonl"), id_field="qid"))


def test_jsonl_lines_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    (tmp_path / "u.jsonl").write_text('{"q": "a\u2028b"}\n', encoding="utf-8")
    assert load_records(DataConfig(path=str(tmp_path / "u.jsonl")))[0]["q"] == "a\u2028b"


def test_inline_records_above_the_limit_are_refused_with_a_pointer_to_data_path() -> None:
    with pytest.raises(ValidationError, match=r"data\.path"):
        DataConfig(records=[{"q": i} for i in range(data.MAX_INLINE_RECORDS + 1)])
    with pytest.raises(ValidationError, match=r"data\.path"):
        DataConfig(records=[{"q": "x" * 1000} for _ in range(data.MAX_INLINE_BYTES // 1000 + 1)])
    assert (
        len(DataConfig(records=[{"q": i} for i in range(data.MAX_INLINE_RECORDS)]).records or [])
        == data.MAX_INLINE_RECORDS
    )


def test_every_data_key_is_documented() -> None:
    assert all(f.description for f in DataConfig.model_fields.values())
