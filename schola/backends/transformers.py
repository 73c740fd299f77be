"""Hugging Face `transformers` in-process: a local checkpoint directory (such as one `schola train` saved) or a
GGUF file, on CPU or GPU, with batching.

Concurrent requests are gathered for `batch_wait_s` and answered by one `generate` call (rows of a batch share
their sampling options; requests with other options wait for the next batch). Generation runs in one worker
thread; the model is loaded once per process. A GGUF file is dequantized into a plain checkpoint once and cached
under the cache directory, keyed by the file's sha256 (`hf_model_dir`), which `schola train` uses as well.

Sampled replies (temperature > 0) are seeded per batch from the (run seed, sample) of its rows, so a re-run
repeats them when the batches repeat; the response cache makes every re-run repeat them regardless.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schola.backends.base import Completion, ScholaClient, to_dicts
from schola.backends.cache import default_cache_dir
from schola.backends.config import TransformersConfig
from schola.backends.embedded import default_model_path, file_sha256
from schola.errors import BackendError
from schola.types import CallInfo

INSTALL = "pip install 'schola[train]'"
_MODELS: dict[tuple[str, str, str], tuple[Any, Any, str]] = {}
_LOAD_LOCK = threading.Lock()
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="schola-transformers")
# Weight, config and tokenizer files whose bytes make a checkpoint's identity.
_IDENTITY_GLOBS = ("*.safetensors", "*.bin", "*.json", "*.model", "*.txt")


def need(module: str) -> Any:
    """Import an optional dependency of the train extra, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendError(f"the transformers backend and `schola train` need {module}: {INSTALL}") from None


def hf_model_dir(model: str | Path | None, *, cache_dir: Path | None = None) -> Path:
    """A directory `from_pretrained` can load: `model` itself when it is one, else the GGUF file (default: the
    embedded SmolLM2) dequantized into a plain checkpoint, cached under `<cache>/models/<sha256>`.

    The re-save (`from_config` + `load_state_dict` + `save_pretrained`) drops the quantization flag that a model
    loaded with `gguf_file=` carries, which Trainer refuses."""
    path = Path(model).expanduser() if model else default_model_path()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackendError(f"{path} is not a Hugging Face model directory (no config.json)")
        return path
    if not path.is_file():
        raise BackendError(f"model not found: {path} (a Hugging Face model directory or a GGUF file)")
    if path.suffix.lower() != ".gguf":
        raise BackendError(f"{path} is neither a model directory nor a .gguf file")
    st = path.stat()
    digest = file_sha256(str(path), st.st_size, st.st_mtime)
    target = (cache_dir or default_cache_dir()) / "models" / digest
    if (target / "config.json").is_file():
        return target
    need("gguf")
    transformers, torch = need("transformers"), need("torch")
    with _LOAD_LOCK:
        if (target / "config.json").is_file():
            return target
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        loaded = transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
        config = loaded.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
        try:
            plain.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            tmp.rename(target)  # atomic: a half-written conversion is never found
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def checkpoint_identity(directory: Path) -> str:
    """sha256 over the names and contents of a checkpoint's weight, config and tokenizer files."""
    h = hashlib.sha256()
    files = sorted({p for g in _IDENTITY_GLOBS for p in directory.glob(g) if p.is_file()})
    for p in files:
        st = p.stat()
        h.update(f"{p.name}\x00{file_sha256(str(p), st.st_size, st.st_mtime)}\x00".encode())
    return h.hexdigest()


def load(directory: Path, device: str, dtype: str) -> tuple[Any, Any, str]:
    """(model, tokenizer, device), loaded once per process."""
    transformers, torch = need("transformers"), need("torch")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    key = (str(directory), device, dtype)
    with _LOAD_LOCK:
        if key not in _MODELS:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
            tokenizer.padding_side = "left"  # decoder-only: new tokens follow every row's last prompt token
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=getattr(torch, dtype))
            model.to(device).eval()
            _MODELS[key] = (model, tokenizer, device)
        return _MODELS[key]


def chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The tokenizer's chat template applied to `messages`; plain `role: content` lines for a model without one."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """`text` up to the first stop string (excluded); whether one was found."""
    ends = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(ends)], True) if ends else (text, False)


@dataclass
class _Request:
    prompt: str
    sampling: dict[str, Any]
    info: CallInfo
    future: asyncio.Future[Completion]
    logprobs: bool = False
    key: str = field(init=False)
    started: asyncio.Event = field(default_factory=asyncio.Event)  # its batch is being answered

    def __post_init__(self) -> None:
        options = {k: v for k, v in self.sampling.items() if k != "top_logprobs"}
        self.key = json.dumps([self.logprobs, sorted(options.items())], default=str)


class TransformersClient(ScholaClient):
    """A local Hugging Face causal LM (or GGUF file) in-process, answering concurrent requests in batches."""

    Config = TransformersConfig
    config: TransformersConfig
    has_logprobs = True

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._directory: Path | None = None
        self._identity: str | None = None
        self._pending: list[_Request] = []
        self._batcher: asyncio.Task[None] | None = None
        self._tokenizer: Any = None
        self._running: list[_Request] = []  # the batch being answered

    @property
    def directory(self) -> Path:
        if self._directory is None:
            self._directory = hf_model_dir(self.config.model)
        return self._directory

    @property
    def identity(self) -> str:
        if self._identity is None:
            source = Path(self.config.model).expanduser() if self.config.model else default_model_path()
            if source.is_file():  # a GGUF file: its own sha256 (the conversion is deterministic)
                st = source.stat()
                self._identity = "hf-gguf:" + file_sha256(str(source), st.st_size, st.st_mtime)
            else:
                self._identity = "hf:" + checkpoint_identity(self.directory)
        return self._identity

    def _loaded(self) -> tuple[Any, Any, str]:
        if self.config.threads is not None:
            need("torch").set_num_threads(self.config.threads)
        return load(self.directory, self.config.device, self.config.dtype)

    async def preflight(self) -> None:
        await asyncio.get_running_loop().run_in_executor(_WORKER, self._loaded)
        self.identity  # noqa: B018 (hash the weights now, not inside the first request's timeout)

    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        return await self._submit(messages, sampling, info, logprobs=False)

    async def _top_logprobs(
        self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo
    ) -> Completion:
        return await self._submit(messages, sampling, info, logprobs=True)

    async def _submit(
        self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo, *, logprobs: bool
    ) -> Completion:
        loop = asyncio.get_running_loop()
        if self._tokenizer is None:
            _, self._tokenizer, _ = await loop.run_in_executor(_WORKER, self._loaded)
        request = _Request(chat_prompt(self._tokenizer, messages), sampling, info, loop.create_future(), logprobs)
        self._pending.append(request)
        if self._batcher is None or self._batcher.done():
            self._batcher = loop.create_task(self._drain())
        async with self._watchdog.queued():  # waiting behind other batches is not this request's time
            await request.started.wait()
        return await request.future

    async def _drain(self) -> None:
        """Answer pending requests, one batch of requests with equal sampling options at a time."""
        loop = asyncio.get_running_loop()
        while self._pending:
            await asyncio.sleep(self.config.batch_wait_s)
            self._pending = [r for r in self._pending if not r.future.done()]  # timed out or cancelled
            if not self._pending:
                return
            key = self._pending[0].key
            batch = [r for r in self._pending if r.key == key][: self.config.max_batch_size]
            self._pending = [r for r in self._pending if r not in batch]
            for r in batch:
                r.started.set()
            self._running = batch
            try:
                run = self._logprobs if batch[0].logprobs else self._generate
                results = await loop.run_in_executor(_WORKER, run, batch)
            except Exception as e:
                error = e if isinstance(e, BackendError) else BackendError(f"{type(e).__name__}: {e}")
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(error)
                continue
            for r, done in zip(batch, results, strict=True):
                if not r.future.done():
                    r.future.set_result(done)

    def _generate(self, batch: list[_Request]) -> list[Completion]:
        torch = need("torch")
        model, tokenizer, device = self._loaded()
        sampling = batch[0].sampling
        inputs = tokenizer([r.prompt for r in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(device)
        temperature = float(sampling.get("temperature", 1.0))
        options: dict[str, Any] = {
            "max_new_tokens": int(sampling.get("max_tokens") or 256),
            "do_sample": temperature > 0,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if temperature > 0:
            options |= {"temperature": temperature, "top_p": float(sampling.get("top_p", 1.0))}
            if sampling.get("top_k"):
                options["top_k"] = int(sampling["top_k"])
            seed = hashlib.sha256(repr([(r.info.seed, r.info.sample) for r in batch]).encode()).digest()
            torch.manual_seed(int.from_bytes(seed[:4], "big"))
        else:  # greedy: no sampling options, or transformers warns about unused ones
            options |= {"temperature": None, "top_p": None, "top_k": None}
        stop = sampling.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        if stop:
            options |= {"stop_strings": stop, "tokenizer": tokenizer}
        options["stopping_criteria"] = [self._abandoned(batch)]
        with torch.inference_mode():
            out = model.generate(**inputs, **options)
        width = inputs["input_ids"].shape[1]
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        results = []
        for row, n_prompt in zip(out[:, width:].tolist(), prompt_lengths, strict=True):
            ended = tokenizer.eos_token_id in row
            tokens = row[: row.index(tokenizer.eos_token_id)] if ended else row
            text, stopped = cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), stop)
            if not ended:
                tokens = [t for t in tokens if t != tokenizer.pad_token_id]
            results.append(
                Completion(
                    text=text,
                    prompt_tokens=int(n_prompt),
                    completion_tokens=len(tokens),
                    finish_reason="stop" if ended or stopped else "length",
                )
            )
        return results

    def _abandoned(self, batch: list[_Request]) -> Any:
        """A stopping criterion that ends a generate nobody waits for: every request of the batch timed out or
        was cancelled, or the client was closed (a run stopped by an error waited minutes for the worker thread
        to finish a batch before the process could exit)."""
        torch = need("torch")

        def abandoned(input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            gone = all(r.future.done() for r in batch)
            return torch.full((input_ids.shape[0],), gone, dtype=torch.bool, device=input_ids.device)

        return abandoned

    async def close(self) -> None:
        """Requests still waiting or being answered fail, and the batch being generated stops."""
        for r in [*self._pending, *self._running]:
            if not r.future.done():
                r.future.set_exception(BackendError(f"backend '{self.name}' was closed"))
            r.started.set()
        self._pending = []
        await super().close()

    def _logprobs(self, batch: list[_Request]) -> list[Completion]:
        """The first answer token's top log-probabilities, from one forward pass over the batch."""
        torch = need("torch")
        model, tokenizer, device = self._loaded()
        k = int(batch[0].sampling.get("top_logprobs", 20))
        inputs = tokenizer([r.prompt for r in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(device)
        with torch.inference_mode():
            logits = model(**inputs).logits[:, -1, :].float()  # left padding: the last position is every row's
        top = torch.log_softmax(logits, dim=-1).topk(k, dim=-1)
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        results = []
        for values, ids, n_prompt in zip(top.values.tolist(), top.indices.tolist(), lengths, strict=True):
            pairs = [(tokenizer.decode([i]), v) for i, v in zip(ids, values, strict=True)]
            results.append(
                Completion(text=pairs[0][0], prompt_tokens=int(n_prompt), completion_tokens=0, top_logprobs=pairs)
            )
        return results

    def count_tokens(self, messages: Any, *, tools: Any = []) -> int:
        _, tokenizer, _ = self._loaded()
        return len(tokenizer(chat_prompt(tokenizer, to_dicts(messages)), add_special_tokens=False)["input_ids"])
