"""Entry-point registries. Built-ins register exactly as third-party packages do; a plugin that fails to load is
reported with its name and cause, and the rest keep working."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from schola.errors import ConfigError

GROUPS = {
    "roles": "schola.roles",
    "scenarios": "schola.scenarios",
    "scorers": "schola.scorers",
    "stages": "schola.stages",
    "backends": "schola.backends",
}


@dataclass
class Registry:
    """The plugins of one entry-point group, loaded on first use."""

    kind: str
    _loaded: dict[str, Any] = field(default_factory=dict)
    _errors: dict[str, str] = field(default_factory=dict)
    _origin: dict[str, str] = field(default_factory=dict)
    _eps: dict[str, Any] | None = None

    def _entry_points(self) -> dict[str, Any]:
        if self._eps is None:
            self._eps = {}
            for ep in entry_points(group=GROUPS[self.kind]):
                self._eps.setdefault(ep.name, ep)
                dist = getattr(ep, "dist", None)
                self._origin[ep.name] = f"{dist.name} {dist.version}" if dist else ep.value
        return self._eps

    def names(self) -> list[str]:
        return sorted(self._entry_points())

    def origin(self, name: str) -> str:
        self._entry_points()
        return self._origin.get(name, "?")

    def get(self, name: str, *, key: str | None = None, file: str | None = None) -> Any:
        """The plugin registered as `name`; ConfigError naming the key if unknown or broken."""
        if name in self._loaded:
            return self._loaded[name]
        eps = self._entry_points()
        if name not in eps:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown {self.kind[:-1]} '{name}'; registered: {known}", key=key, file=file)
        try:
            self._loaded[name] = eps[name].load()
        except Exception as e:
            self._errors[name] = f"{type(e).__name__}: {e}"
            raise ConfigError(
                f"{self.kind[:-1]} plugin '{name}' ({eps[name].value}) failed to load: {self._errors[name]}",
                key=key,
                file=file,
            ) from None
        return self._loaded[name]

    def load_all(self) -> dict[str, Any | Exception]:
        """Every plugin of the group; broken ones as their error, so a listing still shows the rest."""
        out: dict[str, Any | Exception] = {}
        for name in self.names():
            try:
                out[name] = self.get(name)
            except ConfigError as e:
                out[name] = e
        return out

    def register(self, name: str, obj: Any) -> None:
        """Register an object in-process (tests, notebooks); entry points are the way for packages."""
        eps = self._entry_points()
        self._loaded[name] = obj
        eps[name] = None
        self._origin[name] = "registered in-process"

    def unregister(self, name: str) -> None:
        """Forget a plugin registered in-process (entry-point plugins are found again on next use)."""
        self._loaded.pop(name, None)
        self._errors.pop(name, None)
        self._eps = None

    @contextmanager
    def registered(self, name: str, obj: Any) -> Iterator[Any]:
        """`register` for the length of a `with` block."""
        self.register(name, obj)
        try:
            yield obj
        finally:
            self.unregister(name)


roles = Registry("roles")
scenarios = Registry("scenarios")
scorers = Registry("scorers")
stages = Registry("stages")
backends = Registry("backends")
ALL = {"roles": roles, "scenarios": scenarios, "scorers": scorers, "stages": stages, "backends": backends}
