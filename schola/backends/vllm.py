"""A vLLM server: attach to one by `base_url`, or manage one (`serve:`): start it as a subprocess on 127.0.0.1,
wait for it to answer, talk to it through LiteLLM's OpenAI-compatible path, stop it on close.

The launcher runs any OpenAI-compatible server command, so without a GPU the same path is exercised with
`python -m llama_cpp.server` (see tests/server)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from schola.backends.litellm import LiteLLMClient, LiteLLMConfig
from schola.errors import BackendError


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: list[str] | None = Field(None, description="default: vllm serve <model>")
    args: list[str] = Field(default_factory=list, description="extra arguments (tensor-parallel-size, ...)")
    port: int | None = Field(None, description="default: a free port")
    ready_path: str = Field("/health", description="polled until it answers 200")
    startup_timeout_s: float = 900.0


class VLLMConfig(LiteLLMConfig):
    kind: Literal["vllm"] = "vllm"  # type: ignore[assignment]
    model: str = Field("Qwen/Qwen2.5-7B-Instruct", description="the served model name")
    api_key_env: str | None = "VLLM_API_KEY"
    max_concurrency: int = 64
    timeout_s: float = 120.0
    serve: ServeConfig = Field(
        default_factory=ServeConfig, description="how to start a managed server (used only when base_url is null)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMClient(LiteLLMClient):
    Config = VLLMConfig
    config: VLLMConfig

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._proc: subprocess.Popen[bytes] | None = None
        self._base_url = self.config.base_url  # given: attach to that server; null: start one (serve:)
        self.managed = not self._base_url

    @property
    def model(self) -> str:
        return f"hosted_vllm/{self.config.model}"

    @property
    def base_url(self) -> str | None:
        return self._base_url

    @property
    def identity(self) -> str:
        return f"vllm:{self.config.model}"

    async def preflight(self) -> None:
        if self.managed and self._proc is None:
            await self.start()
        await super().preflight()

    async def start(self) -> None:
        """Start the server and wait until `ready_path` answers."""
        serve = self.config.serve
        port = serve.port or free_port()
        command = serve.command or ["vllm", "serve", self.config.model]
        argv = [sys.executable if c == "python" else c for c in command] + serve.args
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        # The server's log goes to a file: a pipe nobody reads fills up and blocks the server.
        self._log = tempfile.NamedTemporaryFile(prefix="schola-server-", suffix=".log", delete=False)
        try:
            self._proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        except FileNotFoundError:
            raise BackendError(f"cannot start '{argv[0]}': not installed (pip install schola[vllm] on a GPU machine)")
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + serve.startup_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    err = Path(self._log.name).read_text(errors="replace")[-800:]
                    raise BackendError(f"server '{' '.join(argv[:3])}' exited with {self._proc.returncode}: {err}")
                try:
                    if (await client.get(root + serve.ready_path)).status_code == 200:
                        self._base_url = root + "/v1"
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)
        await self.stop()
        raise BackendError(f"server did not answer {serve.ready_path} within {serve.startup_timeout_s}s")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
        Path(self._log.name).unlink(missing_ok=True)

    async def close(self) -> None:
        await super().close()
        await self.stop()
