"""Any AutoGen model client as a Schola backend, so it gets the cache, retries, limits and ledger too.

Only providers from autogen_core and autogen_ext load (no arbitrary import paths from a config)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from autogen_core.models import ChatCompletionClient

from schola.backends.base import (
    Completion,
    ScholaClient,
    from_dicts,
    http_preflight,
    retry_after_seconds,
)
from schola.backends.config import ALLOWED, AutoGenConfig
from schola.errors import BackendError, TransientBackendError
from schola.types import CallInfo


class AutoGenClient(ScholaClient):
    """Any AutoGen model client (autogen_core, autogen_ext) with Schola's cache, retries, limits and ledger."""

    Config = AutoGenConfig
    config: AutoGenConfig

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if not self.config.provider.startswith(ALLOWED):
            raise BackendError(f"provider '{self.config.provider}' is not an autogen_core/autogen_ext client")
        inner = dict(self.config.config)
        if self.config.api_key_env:
            inner["api_key"] = os.environ.get(self.config.api_key_env, "")
        elif inner.get("base_url"):
            inner.setdefault("api_key", "no-key")
        self._key = inner.get("api_key")
        try:
            self.inner = ChatCompletionClient.load_component({"provider": self.config.provider, "config": inner})
        except Exception as e:
            raise BackendError(f"cannot build {self.config.provider}: {type(e).__name__}: {e}") from None

    @property
    def identity(self) -> str:
        """The whole component config (less any key): two clients that differ anywhere never share replies."""
        c = {k: v for k, v in self.config.config.items() if k != "api_key"}
        blob = json.dumps({"provider": self.config.provider, "config": c}, sort_keys=True, default=str)
        return "autogen:" + hashlib.sha256(blob.encode()).hexdigest()

    @property
    def secrets(self) -> list[str]:
        return [self._key] if self._key and self._key != "no-key" else []

    async def preflight(self) -> None:
        if base := self.config.config.get("base_url"):
            await http_preflight(base, api_key=self._key)

    async def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any], info: CallInfo) -> Completion:
        import openai

        try:
            out = await self.inner.create(from_dicts(messages), extra_create_args=sampling)
        except (openai.RateLimitError, openai.APIConnectionError, openai.InternalServerError) as e:
            headers = getattr(getattr(e, "response", None), "headers", None)
            raise TransientBackendError(f"{type(e).__name__}: {e}", retry_after=retry_after_seconds(headers)) from None
        except openai.APIStatusError as e:
            raise BackendError(f"{type(e).__name__}: {e}") from None
        return Completion(
            text=out.content if isinstance(out.content, str) else str(out.content),
            prompt_tokens=out.usage.prompt_tokens,
            completion_tokens=out.usage.completion_tokens,
            finish_reason=out.finish_reason,
        )

    async def close(self) -> None:
        await super().close()
        await self.inner.close()
