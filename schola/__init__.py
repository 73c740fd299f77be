"""Schola: simulate teaching and learning between language-model agents.

The public surface is small: `run` / `arun` (a scenario from Python), `RunResult`, and what a plugin builds on —
`Role`, `RoleConfig`, `ActRequest`, `Reply`, `Score`, `Scenario`, `MetricRow`, `mean_row`, `uses_roles`.
Everything else is internal. Names load on first use, so `import schola` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "run": "schola.api",
    "arun": "schola.api",
    "RunResult": "schola.runtime",
    "Role": "schola.roles",
    "RoleConfig": "schola.roles",
    "Reply": "schola.roles",
    "ActRequest": "schola.roles",
    "Score": "schola.scorers",
    "Scenario": "schola.scenario",
    "StageContext": "schola.scenario",
    "uses_roles": "schola.scenario",
    "MetricRow": "schola.metrics",
    "mean_row": "schola.metrics",
    "ConfigError": "schola.errors",
    "BackendError": "schola.errors",
    "BudgetExceeded": "schola.errors",
    "PluginError": "schola.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from schola.api import arun, run
    from schola.errors import BackendError, BudgetExceeded, ConfigError, PluginError
    from schola.metrics import MetricRow, mean_row
    from schola.roles import ActRequest, Reply, Role, RoleConfig
    from schola.runtime import RunResult
    from schola.scenario import Scenario, StageContext, uses_roles
    from schola.scorers import Score


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'schola' has no attribute {name!r}")
