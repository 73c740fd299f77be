"""benchmarks/gpu/run.sh end to end on this machine's CPU: `python -m llama_cpp.server` stands in for llama.cpp's
`llama-server` (a shim translates its flags), at tiny sizes. It checks what `--dry-run` cannot: that every step
runs, that the runs' files are where `bench.py summarize` reads them, and that the summary compares both clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schola.backends.embedded import default_model_path
from tests.conftest import free_port

pytestmark = pytest.mark.server
ROOT = Path(__file__).parents[2]

SHIM = """#!/usr/bin/env bash
# llama-server's flags, served by llama_cpp.server
args=()
while [ $# -gt 0 ]; do case "$1" in
  -m) args+=(--model "$2"); shift;; --alias) args+=(--model_alias "$2"); shift;; -c) args+=(--n_ctx 2048); shift;;
  -ngl|-np) shift;; --host) args+=(--host "$2"); shift;; --port) args+=(--port "$2"); shift;;
esac; shift; done
exec {python} -m llama_cpp.server "${{args[@]}}"
"""


def test_the_gpu_script_runs_whole_against_a_stand_in_server(tmp_path: Path) -> None:
    shim = tmp_path / "llama-server"
    shim.write_text(SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    port = free_port()
    env = {**os.environ, "LLAMA_SERVER": str(shim), "READY_PATH": "/v1/models", "BENCH_RESULTS_DIR": str(tmp_path),
           "PYTHON": sys.executable, "SCHOLA": str(Path(sys.executable).parent / "schola")}  # fmt: skip
    out = tmp_path / "bench"
    done = subprocess.run(
        ["bash", "benchmarks/gpu/run.sh", "--engine", "llamacpp", "--model", str(default_model_path()), "--prompts", "4",
         "--concurrency", "2", "--input-len", "4", "--output-len", "4", "--port", str(port), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    row = result["by_concurrency"]["2"]
    assert row["schola"]["requests"] == 4 and row["native"]["requests"] == 4
    assert row["schola"]["seconds"] > 0 and row["native"]["seconds"] > 0
    assert row["ratio"] == pytest.approx(row["schola"]["rps"] / row["native"]["rps"])
    assert result["managed_server_run"] == "finished"  # Schola's own launcher started and stopped the server
