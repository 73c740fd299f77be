"""benchmarks/gpu/run.sh --dry-run prints the exact commands it would run on a GPU machine, and the Schola runs
among them compose and validate (`schola check`), so the script runs there without edits."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu" / "run.sh"


def dry_run(out: Path, *args: str) -> list[list[str]]:
    env = {**os.environ, "VLLM": "vllm", "LLAMA_SERVER": "llama-server"}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(out), *args], capture_output=True,
                          text=True, env=env, cwd="/", timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(line.startswith("+ ") for line in lines), lines
    return [shlex.split(line[2:]) for line in lines]


def schola_args(out: Path, backend: list[str]) -> list[str]:
    return ["benchmarks/gpu/saturation.yaml", "backend=vllm", *backend, f"scenario.data.path={out}/prompts.jsonl",
            "backend.max_tokens=128", "+backend.extra.ignore_eos=true", "backend.timeout_s=600", "cache.enabled=false"]  # fmt: skip


def test_dry_run_prints_the_vllm_commands(tmp_path: Path) -> None:
    out, model, url = tmp_path, "Qwen/Qwen2.5-0.5B-Instruct", "http://127.0.0.1:8011"
    common = schola_args(out, [f"backend.model={model}"])
    py, schola = ".venv/bin/python", ".venv/bin/schola"
    expected = [
        ["mkdir", "-p", str(out)],
        [py, "benchmarks/gpu/bench.py", "prompts", "--n", "1024", "--words", "256", "--model", model, "--max-tokens", "128", "--out", str(out)],
        ["setsid", "vllm", "serve", model, "--max-num-seqs", "256", "--gpu-memory-utilization", "0.9", "--host", "127.0.0.1",
         "--port", "8011", ">", f"{out}/server.log", "2>&1", "&"],
        [schola, "run", *common, f"backend.base_url={url}/v1", "run.episodes=256", "run.concurrency=256",
         "backend.max_concurrency=256", f"hydra.run.dir={out}/warmup"],
    ]  # fmt: skip
    for c in (64, 256):
        expected += [
            [schola, "run", *common, f"backend.base_url={url}/v1", "run.episodes=1024", f"run.concurrency={c}",
             f"backend.max_concurrency={c}", f"hydra.run.dir={out}/schola-c{c}"],
            ["vllm", "bench", "serve", "--backend", "openai-chat", "--base-url", url, "--endpoint", "/v1/chat/completions",
             "--model", model, "--dataset-name", "random", "--random-input-len", "256", "--random-output-len", "128",
             "--ignore-eos", "--num-prompts", "1024", "--max-concurrency", str(c), "--save-result", "--result-dir", str(out),
             "--result-filename", f"native-c{c}.json"],
        ]  # fmt: skip
    expected += [
        [schola, "run", *common, f"backend.serve.command=['vllm','serve','{model}']", "backend.serve.gpus=[0]",
         "backend.serve.max_num_seqs=256", "backend.serve.gpu_memory_utilization=0.9", "backend.serve.ready_path=/health",
         "run.episodes=256", "run.concurrency=256", "backend.max_concurrency=256", f"hydra.run.dir={out}/schola-managed"],
        [py, "benchmarks/gpu/bench.py", "summarize", "--out", str(out), "--engine", "vllm", "--concurrency", "64", "256"],
    ]  # fmt: skip
    assert dry_run(out, "--engine", "vllm") == expected


def test_dry_run_prints_the_llama_cpp_commands_with_a_curl_loop(tmp_path: Path) -> None:
    commands = dry_run(tmp_path, "--engine", "llamacpp", "--concurrency", "64", "--prompts", "8", "--model", "m.gguf")
    server = commands[2]
    assert server == ["setsid", "llama-server", "-m", "m.gguf", "--alias", "smollm2", "-ngl", "999", "-np", "64",
                      "-c", str(64 * (256 * 2 + 128 + 64)), "--host", "127.0.0.1", "--port", "8011", ">",
                      f"{tmp_path}/server.log", "2>&1", "&"]  # fmt: skip
    native = commands[5]
    assert native[:8] == [".venv/bin/python", "benchmarks/gpu/bench.py", "timed", "--out", f"{tmp_path}/native-c64.json",
                          "--n", "8", "--"]  # fmt: skip
    assert native[8:10] == ["sh", "-c"] and shlex.split(native[10]) == [
        "seq", "8", "|", "xargs", "-P", "64", "-I{}", "curl", "-sf", "-o", "/dev/null", "-H",
        "Content-Type: application/json", "-d", f"@{tmp_path}/bodies/{{}}.json",
        "http://127.0.0.1:8011/v1/chat/completions",
    ]  # fmt: skip
    managed = commands[6]
    assert (
        "backend.serve.command=['llama-server','-m','m.gguf','--alias','smollm2','-ngl','999','-np','64','-c','45056']"
        in managed
    )


@pytest.mark.parametrize("engine", ["vllm", "llamacpp"])
def test_the_schola_runs_it_prints_are_valid_configs(engine: str, tmp_path: Path, cli: Any) -> None:
    """Every `schola run` the script would start passes `schola check` (keys, types, data file)."""
    commands = dry_run(tmp_path, "--engine", engine, "--prompts", "8", "--model", "m")
    prompts = commands[1]
    subprocess.run([sys.executable, *prompts[1:]], cwd=ROOT, check=True, timeout=60)
    assert len((tmp_path / "prompts.jsonl").read_text().splitlines()) == 8
    runs = [c for c in commands if c[:2] == [".venv/bin/schola", "run"]]
    assert len(runs) == 4
    for command in runs:
        args = [str(ROOT / a) if a.startswith("benchmarks/") else a for a in command[2:]]
        code, output = cli("check", *args)
        assert code == 0, output
