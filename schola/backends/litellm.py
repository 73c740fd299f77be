"""Any endpoint LiteLLM supports: the hosted providers (`anthropic/...`, `gemini/...`, `openai/...`), and
LiteLLM's Router over several endpoints of one model (`base_urls`). OpenAI-compatible servers are served faster
by the `openai` backend (a lean client: a tenth of LiteLLM's CPU per request, see benchmarks/client_saturation.py).

LiteLLM is imported in `preflight`, on a worker thread and before the run's clock starts (the import alone takes
seconds), with its per-request log lines turned off. Its HTTP clients are its own, cached per event loop and
closed by LiteLLM itself: closing them here would close them under the next run in the same loop."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from schola.backends.base import (
    Completion,
    ScholaClient,
    http_preflight,
    retry_after_seconds,
)
from schola.backends.config import LiteLLMConfig
from schola.errors import BackendError, NoLogprobs, TransientBackendError
from schola.types import CallInfo


def import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map at run time
    try:
        import litellm
    except ImportError:
        raise BackendError("the litellm backend needs LiteLLM: pip install litellm") from None
    litellm.suppress_debug_info = True
    litellm.drop_params = True
    # LiteLLM logs an INFO line (and its Router another) per request: thousands in a run. Warnings stay.
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return litellm


class LiteLLMClient(ScholaClient):
    """Any provider LiteLLM supports (anthropic/..., gemini/..., openai/...), and its Router over several endpoints."""

    Config = LiteLLMConfig
    config: LiteLLMConfig

    @property
    def identity(self) -> str:
        return f"litellm:{self.config.model}@{','.join(sorted(self.urls))}"

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def base_url(self) -> str | None:
        return self.config.base_url

    @property
    def api_key(self) -> str | None:
        env = self.config.api_key_env
        key = os.environ.get(env) if env else None
        # A local OpenAI-compatible server needs some key in the request, but checks none.
        return key or ("no-key" if self.urls else None)

    @property
    def secrets(self) -> list[str]:
        return [k for k in [self.api_key] if k and k != "no-key"]

    @property
    def urls(self) -> list[str]:
        return list(dict.fromkeys(u for u in [self.base_url, *self.config.base_urls] if u))

    async def preflight(self) -> None:
        # Import LiteLLM now, on a worker thread: imported by the first request, its seconds of import would
        # block the loop and count against that request's timeout_s (a short timeout lost its first attempt).
        await asyncio.to_thread(import_litellm)
        for url in self.urls[:1] if len(self.urls) < 2 else []:  # several: the Router cools down dead ones
            await http_preflight(url, api_key=self.api_key)

    _router: Any = None

    async def _acompletion(self, **kwargs: Any) -> Any:
        """One request through LiteLLM, or through its Router when there are several endpoints."""
        litellm = import_litellm()
        if len(self.urls) < 2:
            base = self.urls[0] if self.urls else None
            return await litellm.acompletion(model=self.model, api_base=base, api_key=self.api_key, **kwargs)
        if self._router is None:
            deployments = [{"model_name": "schola", "litellm_params": {"model": self.model, "api_base": url,
                            "api_key": self.api_key}} for url in self.urls]  # fmt: skip
            # Schola retries (num_retries=0 here); the Router picks another deployment for each retry.
            self._router = litellm.Router(model_list=deployments, **{"num_retries": 0, **self.config.router})
        return await self._router.acompletion(model="schola", **kwargs)

    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        litellm = import_litellm()
        try:
            response = await self._acompletion(
                messages=messages,
                timeout=self.config.timeout_s,
                num_retries=0,
                seed=info.seed * 1_000_003 + info.sample,
                **sampling,
                **self.config.extra,
            )
        except Exception as e:  # LiteLLM maps every provider's errors onto OpenAI's classes
            raise self._classify(litellm, e) from None
        usage = getattr(response, "usage", None)
        choice = response.choices[0]
        done = Completion(
            text=choice.message.content or "",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            finish_reason=choice.finish_reason or "unknown",
        )
        done.cost_usd = self._cost(litellm, response, done)
        return done

    has_logprobs = True

    async def _top_logprobs(
        self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo
    ) -> Completion:
        """One token with its top alternatives (`logprobs`/`top_logprobs` of the OpenAI API; vLLM, llama.cpp's
        server and OpenAI answer them). A server that does not is a BackendError, and the role falls back to
        samples."""
        litellm = import_litellm()
        try:
            response = await self._acompletion(
                messages=messages, timeout=self.config.timeout_s, num_retries=0, max_tokens=1, temperature=0.0,
                logprobs=True, top_logprobs=int(sampling.get("top_logprobs", 20)), **self.config.extra,
            )  # fmt: skip
        except Exception as e:  # refused for good: a server without logprobs (the role then samples)
            refusal = self._classify(litellm, e)
            raise (NoLogprobs(str(refusal)) if type(refusal) is BackendError else refusal) from None
        choice = response.choices[0]
        content = getattr(getattr(choice, "logprobs", None), "content", None) or []
        if not content or not getattr(content[0], "top_logprobs", None):
            raise NoLogprobs(f"{self.base_url or self.model} returned no logprobs")
        pairs = [(str(t.token), float(t.logprob)) for t in content[0].top_logprobs]
        usage = getattr(response, "usage", None)
        return Completion(text=choice.message.content or "", prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          completion_tokens=getattr(usage, "completion_tokens", 0) or 0, top_logprobs=pairs)  # fmt: skip

    def _cost(self, litellm: Any, response: Any, done: Completion) -> float | None:
        if self.config.cost_per_1k_tokens:
            p, c = self.config.cost_per_1k_tokens
            return (done.prompt_tokens * p + done.completion_tokens * c) / 1000
        try:
            return float(litellm.completion_cost(completion_response=response))
        except Exception:  # unknown model (a local server): no price
            return None

    def _classify(self, litellm: Any, e: Exception) -> BackendError:
        status = getattr(e, "status_code", None)
        text = f"{type(e).__name__}: {str(e)[:300]}"
        transient = (
            litellm.RateLimitError,
            litellm.Timeout,
            litellm.APIConnectionError,
            litellm.InternalServerError,
            litellm.ServiceUnavailableError,
        )
        if isinstance(e, transient) or (isinstance(status, int) and (status == 429 or status >= 500)):
            headers = getattr(getattr(e, "response", None), "headers", None)
            return TransientBackendError(text, retry_after=retry_after_seconds(headers))
        return BackendError(text)
