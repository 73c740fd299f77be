from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schola.backends.vllm import free_port
from schola.cli import main
from schola.store import read_jsonl

__all__ = ["SCRIPTED", "free_port", "read_jsonl"]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own cache and working directory (runs/ lands there), and plugins it registers
    in-process are forgotten after it."""
    from schola import plugins

    monkeypatch.setenv("SCHOLA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    before = {kind: set(reg._registered) for kind, reg in plugins.ALL.items()}
    yield tmp_path
    for kind, reg in plugins.ALL.items():
        for name in set(reg._registered) - before[kind]:
            reg.unregister(name)


class CLI:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return code, captured.out + captured.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CLI:
    """Run `schola ...` in-process; returns (exit code, stdout + stderr)."""
    return CLI(capsys)


def start_llama_server() -> tuple[subprocess.Popen[bytes], str]:
    """`python -m llama_cpp.server` with the embedded model on a free 127.0.0.1 port; (process, base_url)."""
    from schola.backends.embedded import default_model_path

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/models", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("llama_cpp.server did not start")


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """A real OpenAI-compatible server (python -m llama_cpp.server) on a free 127.0.0.1 port; yields base_url."""
    proc, base = start_llama_server()
    yield base
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def spare_llama_server() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A second llama_cpp.server for this test alone (it may kill it); yields (process, base_url)."""
    proc, base = start_llama_server()
    yield proc, base
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


SCRIPTED = ["backend=scripted"]


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The echo plugin (tests/fixtures/schola-echo-plugin) installed once into a folder of its own, for the tests
    that put it on PYTHONPATH; the dev venv stays clean."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("src") / "plugin"
    shutil.copytree(Path(__file__).parent / "fixtures" / "schola-echo-plugin", build)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(build)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target
