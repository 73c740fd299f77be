"""Bounds every backend keeps (one declaration of each limit), and bad input to `schola train`, `schola cache`,
the Ray executor and the autogen backend: exit 2 (3 for a missing Ray cluster) with one line naming what is
wrong, never a traceback. Also: transcript lines carry what a priced reply cost (the sight scenario's
cost_usd_per_comment, measured on a run of the engine)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from schola import plugins
from schola.backends.base import BackendConfig, Concurrency
from schola.backends.cache import Cache
from schola.train import MAX_RECORD_CHARS
from schola.train import main as train_main
from tests.conftest import SCRIPTED, read_jsonl

BACKENDS = sorted(plugins.ALL["backends"].load_all())
BAD_LIMITS = [("max_concurrency", 0), ("max_concurrency", -1), ("timeout_s", 0), ("timeout_s", -1), ("max_retries", -1)]


# -- bounds every backend keeps --------------------------------------------------------------------
@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize(("key", "value"), BAD_LIMITS)
def test_every_backend_refuses_limits_out_of_bounds(kind: str, key: str, value: int) -> None:
    config = plugins.backend(kind).config
    with pytest.raises(ValidationError, match=key):
        config.model_validate({key: value})


@pytest.mark.parametrize("kind", ["scripted", "vllm"])  # vllm: a backend's config subclassing another's
@pytest.mark.parametrize(("key", "value"), BAD_LIMITS)
def test_check_refuses_limits_out_of_bounds_with_exit_2(cli: Any, kind: str, key: str, value: int) -> None:
    extra = ["backend.base_url=http://127.0.0.1:9/v1"] if kind == "vllm" else []
    code, out = cli("check", "scenario=lbt", f"backend={kind}", *extra, f"backend.{key}={value}")
    assert code == 2, out
    assert f"backend.{key}" in out and "Traceback" not in out


def test_a_new_backend_cannot_drop_a_bound() -> None:
    with pytest.raises(TypeError, match="max_concurrency drops the bounds"):

        class Careless(BackendConfig):
            max_concurrency: int = 8

    class Careful(BackendConfig):
        max_concurrency: Concurrency = 8

    assert Careful(kind="x").max_concurrency == 8
    with pytest.raises(ValidationError):
        Careful(kind="x", max_concurrency=0)


# -- schola train ----------------------------------------------------------------------------------
def export(tmp_path: Path, *records: dict[str, Any]) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


MSG = [{"role": "user", "content": "hi"}]
BAD_EXPORTS = [
    ("sft", [{"messages": []}], "d.jsonl:1: field 'messages' must be a non-empty list"),
    ("sft", [{"messages": "hello"}], "d.jsonl:1: field 'messages' must be a non-empty list"),
    ("sft", [{"messages": MSG}, {"prompt": "p", "completion": "c"}], "d.jsonl:2: fields prompt/completion written as text"),
    ("sft", [{"prompt": "p", "completion": "c"}, {"prompt": MSG, "completion": MSG}], "d.jsonl:2: fields prompt/completion written as messages"),
    ("dpo", [{"prompt": "p", "chosen": MSG, "rejected": "r"}], "d.jsonl:1: fields prompt, chosen, rejected mix text"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "records", "expected"), BAD_EXPORTS)
def test_a_bad_export_exits_2_naming_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str, records: list[dict[str, Any]], expected: str
) -> None:
    path = export(tmp_path, *records)
    assert train_main([method, str(path), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o")]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", "0"), ("--max-length", "0"), ("--lr", "nan"),
                                             ("--steps", "0"), ("--epochs", "-1"), ("--beta", "inf")])  # fmt: skip
def test_bad_training_options_exit_2_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    path = export(tmp_path, {"prompt": "p", "completion": "c"})
    assert train_main(["sft", str(path), flag, value, "--model", str(tmp_path / "no-model")]) == 2
    assert f"argument {flag}: expected" in capsys.readouterr().err


def test_an_oversized_record_is_refused_before_tokenisation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = export(tmp_path, {"prompt": "p", "completion": "c"}, {"text": "x" * (MAX_RECORD_CHARS + 1)})
    assert train_main(["sft", str(path), "--model", str(tmp_path / "no-model")]) == 2
    assert f"d.jsonl:2: the record holds {MAX_RECORD_CHARS + 1:,} characters" in capsys.readouterr().err


@pytest.mark.parametrize(("target", "expected"), [("folder", "is a directory"), ("/dev/zero", "not a regular file")])
def test_train_on_a_folder_or_a_device_says_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, expected: str
) -> None:
    path = tmp_path if target == "folder" else Path(target)
    assert train_main(["sft", str(path), "--model", str(tmp_path / "no-model")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "no such export" not in err


# -- schola cache ----------------------------------------------------------------------------------
@pytest.fixture
def one_reply(tmp_path: Path) -> Path:
    directory = tmp_path / "c"
    with Cache(directory) as cache:
        cache.put("k", {"text": "a reply"})
    return directory


def replies(directory: Path) -> int:
    with Cache.open_existing(directory) as cache:
        return int(cache.info()["replies"])


@pytest.mark.parametrize("flag", ["--older-than-days", "--max-mb"])
@pytest.mark.parametrize("value", ["-1", "-5", "nan"])
def test_prune_refuses_a_negative_bound_and_keeps_every_reply(cli: Any, one_reply: Path, flag: str, value: str) -> None:
    code, out = cli("cache", "prune", flag, value, "--dir", str(one_reply))
    assert code == 2, out
    assert f"argument {flag}: expected a number >= 0" in out
    assert replies(one_reply) == 1


@pytest.fixture
def read_only(one_reply: Path) -> Iterator[Path]:
    """The cache folder and its files made read-only: by mode for a user, by the immutable flag for root (whom
    modes do not stop)."""
    files = [one_reply, *one_reply.iterdir()]
    if os.geteuid() != 0:
        for p in files:
            p.chmod(0o555 if p.is_dir() else 0o444)
        yield one_reply
        for p in files:
            p.chmod(0o755 if p.is_dir() else 0o644)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", *map(str, files)]).returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (no chattr +i)")
    try:
        yield one_reply
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=True)


def test_cache_info_reads_a_read_only_cache(cli: Any, read_only: Path) -> None:
    assert not any(p.name.endswith(("-wal", "-shm")) for p in read_only.iterdir())
    code, out = cli("cache", "info", "--dir", str(read_only))
    assert code == 0, out
    assert "1 replies" in out


# -- Ray with no cluster ---------------------------------------------------------------------------
def test_ray_with_no_cluster_exits_3_saying_how_to_start_one(cli: Any, tmp_path: Path, monkeypatch: Any) -> None:
    services = pytest.importorskip("ray._private.services", reason="needs schola[ray]")
    if services.find_gcs_addresses():
        pytest.skip("a Ray cluster is running on this machine")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code, out = cli("run", "scenario=lbt", *SCRIPTED, "run.executor=ray", "run.ray.address=auto",
                    f"hydra.run.dir={tmp_path / 'r'}")  # fmt: skip
    assert code == 3, out
    assert "ray start --head" in out and "unexpected" not in out


# -- no secrets in a backend's free-form options ---------------------------------------------------
SENTINEL = "sk-SENTINEL-do-not-leak-1234567890"


@pytest.mark.parametrize(
    "backend",
    [
        f"+backends.other={{kind: autogen, config: {{model: m, base_url: 'http://127.0.0.1:9/v1', api_key: {SENTINEL}}}}}",
        f"+backends.other={{kind: openai, base_url: 'http://127.0.0.1:9/v1', extra: {{api_key: {SENTINEL}}}}}",
        "+backends.other={kind: autogen, config: {model: m, base_url: 'http://127.0.0.1:9/v1', api_key: '***'}}",
    ],
)
def test_a_key_in_a_backends_options_is_refused_never_saved_masked(cli: Any, backend: str) -> None:
    """config.yaml would save it as *** and a resumed run would send that as the key: a resumed run's saved
    `api_key: '***'` is refused as well."""
    code, out = cli("check", "scenario=lbt", *SCRIPTED, backend)
    assert code == 2, out
    assert "'api_key' holds a secret" in out and "api_key_env" in out
    assert SENTINEL not in out and "Traceback" not in out


# -- what a reply cost, in the transcript ------------------------------------------------------------
def stub_server() -> Any:
    path = Path(__file__).parents[2] / "benchmarks" / "stub_server.py"
    spec = importlib.util.spec_from_file_location("stub_server", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("stub_server", module)
    spec.loader.exec_module(module)
    return module.StubServer


async def test_sight_reports_cost_per_comment_from_the_transcript_the_engine_writes(tmp_path: Path) -> None:
    import schola

    server = stub_server()(delay_ms=1.0)  # every reply: 12 prompt + 3 completion tokens
    url = await server.start()
    try:
        result = await schola.arun("sight", [
            "backend=openai", f"backend.base_url={url}", "backend.cost_per_1k_tokens=[1.0,2.0]", "cache.enabled=false",
            "scenario.data.per_category=2", "scenario.params.categories=[gratitude,confusion,non_english]",
            "scenario.stages=[{fn: sight.report}]",
        ], run_dir=tmp_path / "r")  # fmt: skip
    finally:
        await server.stop()
    assert result.ok, result.message
    per_call = (12 * 1.0 + 3 * 2.0) / 1000
    lines = [t for t in read_jsonl(tmp_path / "r" / "transcript.jsonl") if t["agent"] == "M"]
    assert len(lines) == 18 and all(t["cost_usd"] == pytest.approx(per_call) for t in lines)
    rows = {m["name"]: m for m in json.loads((tmp_path / "r" / "metrics.json").read_text())["metrics"]}
    comments = 6
    assert rows["cost_usd_per_comment"]["value"] == pytest.approx(18 * per_call / comments)
    assert rows["cost_usd_per_comment"]["labels"] == {"model": "M"}


def test_an_unpriced_backend_writes_no_cost(cli: Any, tmp_path: Path) -> None:
    code, out = cli("run", "scenario=sight", *SCRIPTED, "scenario.data.per_category=1",
                    "scenario.params.categories=[gratitude]", f"hydra.run.dir={tmp_path / 'r'}")  # fmt: skip
    assert code == 0, out
    assert all("cost_usd" not in t for t in read_jsonl(tmp_path / "r" / "transcript.jsonl"))
    rows = {m["name"] for m in json.loads((tmp_path / "r" / "metrics.json").read_text())["metrics"]}
    assert "tokens_per_comment" in rows and "cost_usd_per_comment" not in rows
