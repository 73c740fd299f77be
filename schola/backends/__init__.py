"""Model backends: each an autogen-core ChatCompletionClient sharing one base (cache, retries, limits, ledger), and
each declared by its config model (`schola.backends.config`). Names load on first use: importing a config, as
`schola check` does, loads neither the clients nor AutoGen."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BackendConfig": "schola.backends.config",
    "Cache": "schola.backends.cache",
    "cache_key": "schola.backends.cache",
    "Completion": "schola.backends.base",
    "ScholaClient": "schola.backends.base",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from schola.backends.base import Completion, ScholaClient
    from schola.backends.cache import Cache, cache_key
    from schola.backends.config import BackendConfig


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'schola.backends' has no attribute {name!r}")
