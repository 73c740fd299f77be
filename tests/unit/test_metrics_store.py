from __future__ import annotations

import json
from pathlib import Path

import pytest

from schola.metrics import bootstrap_ci, cohen_kappa, mean_row
from schola.secrets import redact_config
from schola.store import RunStore


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_more_data() -> None:
    small = mean_row("acc", [1, 0, 1, 0, 1, 1, 0, 1])
    big = mean_row("acc", [1, 0, 1, 0, 1, 1, 0, 1] * 20)
    assert small.ci_low < small.value < small.ci_high
    assert (big.ci_high - big.ci_low) < (small.ci_high - small.ci_low)
    assert bootstrap_ci([1.0]) == (1.0, 1.0)
    assert mean_row("x", [None, None]).value is None and mean_row("x", [None, 1]).n == 1


def test_cohen_kappa_row() -> None:
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]).value == pytest.approx(1.0)
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]).value == pytest.approx(-1.0)


def test_resume_drops_unfinished_episodes_and_a_torn_last_line(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.open()
    store.transcript({"episode": "a", "text": "1"})
    store.transcript({"episode": "b", "text": "2"})
    store.result({"episode": "a", "inputs": {}, "scores": {}})
    store.close()
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"episode": "b", "sco')  # a crash mid-write
    kept: list[dict[str, object]] = []
    done = RunStore(tmp_path).prepare_resume(kept.append)
    assert done.tolist() == [hash("a")] and [r["episode"] for r in kept] == ["a"]
    lines = [json.loads(x) for x in (tmp_path / "transcript.jsonl").read_text().splitlines()]
    assert lines == [{"episode": "a", "text": "1"}]


def test_saved_config_has_no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-abcdefgh12345678")
    store = RunStore(tmp_path)
    store.write_config(
        {
            "backend": {"api_key_env": "MY_KEY", "config": {"api_key": "sk-abcdefgh12345678"}},
            "note": "x sk-abcdefgh12345678",
        }
    )
    text = store.config_path.read_text()
    assert "sk-abcdefgh" not in text and "MY_KEY" in text
    assert redact_config({"token": "t0k3n", "n": 1}, []) == {"token": "***", "n": 1}
