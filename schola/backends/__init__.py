"""Model backends: each an autogen-core ChatCompletionClient sharing one base (cache, retries, limits, ledger)."""

from schola.backends.base import BackendConfig, Completion, ScholaClient
from schola.backends.cache import Cache, cache_key

__all__ = ["BackendConfig", "Cache", "Completion", "ScholaClient", "cache_key"]
