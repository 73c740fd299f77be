"""vLLM servers: attach to running ones (`base_url`, `base_urls`), or manage them (`serve:`): start `vllm serve`
as subprocesses on 127.0.0.1 (one per entry of `serve.gpus`, each seeing only its GPUs), wait until every one
answers, talk to them through the lean OpenAI-compatible client (load-balanced, with fallback), and on close stop
exactly the processes started here, children included (each server runs in its own process group).

`serve:` keys map onto `vllm serve` flags (tensor/pipeline parallel size, max sequences, GPU memory share); a
key left null is not passed, so vLLM's own default holds. The launcher runs any OpenAI-compatible server command,
so without a GPU the same path is exercised with `python -m llama_cpp.server` (see tests/server)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from schola.backends.config import VLLMConfig
from schola.backends.openai import OpenAIClient
from schola.errors import BackendError

FLAGS = {  # serve key -> vllm serve flag
    "tensor_parallel_size": "--tensor-parallel-size",
    "pipeline_parallel_size": "--pipeline-parallel-size",
    "max_num_seqs": "--max-num-seqs",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "max_model_len": "--max-model-len",
}
STOP_GRACE_S = 15.0
_RUNNING: set[Server] = set()  # servers of this process, stopped at exit if nobody closed them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_commands(config: VLLMConfig, ports: list[int]) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, extra environment) of every server `config.serve` asks for, on `ports`."""
    serve = config.serve
    command = serve.command or ["vllm", "serve", config.model]
    argv = [sys.executable if c == "python" else c for c in command]
    for key, flag in FLAGS.items():
        if (value := getattr(serve, key)) is not None:
            argv += [flag, str(value)]
    argv += serve.args
    gpus: list[int | str | None] = [*serve.gpus] if serve.gpus else [None]
    return [
        (argv + ["--host", "127.0.0.1", "--port", str(port)], {} if g is None else {"CUDA_VISIBLE_DEVICES": str(g)})
        for g, port in zip(gpus, ports)
    ]


@dataclass(eq=False)
class Server:
    """A server this client started: its process (leading a process group of its own) and its log file."""

    proc: subprocess.Popen[bytes]
    log: Path
    root: str  # http://127.0.0.1:<port>


def launch(argv: list[str], env: dict[str, str], port: int) -> Server:
    """Start one server in a new session (so a process group of its own); its output goes to a log file, since a
    pipe nobody reads fills up and blocks the server."""
    with tempfile.NamedTemporaryFile(prefix="schola-server-", suffix=".log", delete=False) as log:
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, **env})  # fmt: skip
        except FileNotFoundError:
            Path(log.name).unlink()
            raise BackendError(
                f"cannot start '{argv[0]}': not installed (pip install schola[vllm] on a GPU machine)"
            ) from None
    server = Server(proc, Path(log.name), f"http://127.0.0.1:{port}")
    _RUNNING.add(server)
    return server


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the server's leader process has exited, without reaping it: while it is unreaped its process
    group id cannot be reused, so signalling the group reaches only what it started."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None
    except ChildProcessError:  # already reaped
        return True


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.returncode is not None:  # reaped: its group id may belong to someone else by now
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_server(server: Server, *, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after `grace_s` or once the leader is gone."""
    proc = server.proc
    _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while not _exited(proc) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(proc, signal.SIGKILL)  # children that outlived their leader, or a leader that would not stop
    proc.wait()
    server.log.unlink(missing_ok=True)
    _RUNNING.discard(server)


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING):
        stop_server(server, grace_s=2.0)


class VLLMClient(OpenAIClient):
    """vLLM servers, attached to (base_url) or started and stopped by Schola (serve:), through the OpenAI client."""

    Config = VLLMConfig
    config: VLLMConfig

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.servers: list[Server] = []

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        """The processes of the servers this client started (each leads its own process group)."""
        return [s.proc for s in self.servers]

    @property
    def managed(self) -> bool:
        return not (self.config.base_url or self.config.base_urls)

    def urls(self) -> list[str]:
        return super().urls() if not self.managed else []  # managed: the servers' URLs once they answer

    @property
    def identity(self) -> str:
        # The model, not the URLs: a managed server gets a new port every run, and its replies stay cached.
        return f"vllm:{self.config.model}"

    async def preflight(self) -> None:
        if self.managed and not self.servers:
            await self.start()
        await super().preflight()

    async def start(self) -> None:
        """Start every server `serve:` asks for and wait until all answer `ready_path`."""
        serve = self.config.serve
        count = len(serve.gpus or [None])
        ports = [serve.port + i for i in range(count)] if serve.port else [free_port() for _ in range(count)]
        try:
            for (argv, env), port in zip(server_commands(self.config, ports), ports):
                self.servers.append(launch(argv, env, port))
            await asyncio.gather(*(self._ready(server) for server in self.servers))
        except BaseException:
            await self.stop()
            raise
        self.endpoints = self._endpoints([s.root + "/v1" for s in self.servers])

    async def _ready(self, server: Server) -> None:
        serve, proc = self.config.serve, server.proc
        deadline = time.monotonic() + serve.startup_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if _exited(proc):
                    tail = (await asyncio.to_thread(server.log.read_text, errors="replace"))[-800:]
                    name = " ".join(map(str, proc.args[:3]))  # type: ignore[index]
                    raise BackendError(f"server '{name}' on {server.root} exited early: {tail}")
                try:
                    if (await client.get(server.root + serve.ready_path)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)
        raise BackendError(
            f"server on {server.root} did not answer {serve.ready_path} within {serve.startup_timeout_s}s"
        )

    async def stop(self) -> None:
        """Stop the servers this client started (and only those), children included."""
        servers, self.servers = self.servers, []
        await asyncio.gather(*(asyncio.to_thread(stop_server, s) for s in servers))

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            await self.stop()
