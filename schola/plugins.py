"""Entry-point registries. Built-ins register exactly as third-party packages do; a plugin that fails to load is
reported with its name and cause, and the rest keep working."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from schola.errors import ConfigError, PluginError, ScholaError

GROUPS = {
    "roles": "schola.roles",
    "scenarios": "schola.scenarios",
    "scorers": "schola.scorers",
    "stages": "schola.stages",
    "backends": "schola.backends",
}


@dataclass
class Registry:
    """The plugins of one entry-point group, loaded on first use, and those registered in-process (kept apart:
    forgetting one in-process plugin never forgets another)."""

    kind: str
    _loaded: dict[str, Any] = field(default_factory=dict)
    _errors: dict[str, str] = field(default_factory=dict)
    _origin: dict[str, str] = field(default_factory=dict)
    _eps: dict[str, Any] | None = None
    _registered: dict[str, Any] = field(default_factory=dict)

    def _entry_points(self) -> dict[str, Any]:
        if self._eps is None:
            self._eps = {}
            for ep in entry_points(group=GROUPS[self.kind]):
                self._eps.setdefault(ep.name, ep)
                dist = getattr(ep, "dist", None)
                self._origin[ep.name] = f"{dist.name} {dist.version}" if dist else ep.value
        return self._eps

    def names(self) -> list[str]:
        return sorted(self._entry_points().keys() | self._registered.keys())

    def origin(self, name: str) -> str:
        if name in self._registered:
            return "registered in-process"
        self._entry_points()
        return self._origin.get(name, "?")

    def get(self, name: str, *, key: str | None = None, file: str | None = None) -> Any:
        """The plugin registered as `name`; ConfigError naming the key if unknown or broken."""
        if name in self._registered:
            return self._registered[name]
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
        """Register an object in-process (tests, notebooks); entry points are the way for packages. It hides an
        entry point of the same name until unregistered."""
        self._registered[name] = obj

    def unregister(self, name: str) -> None:
        """Forget a plugin registered in-process (an entry point of that name is found again)."""
        self._registered.pop(name, None)

    @contextmanager
    def registered(self, name: str, obj: Any) -> Iterator[Any]:
        """`register` for the length of a `with` block."""
        self.register(name, obj)
        try:
            yield obj
        finally:
            self.unregister(name)


def where(fn: Any) -> str:
    """A plugin's code as `module:qualname` (a bound method: its class's method), for messages."""
    fn = getattr(fn, "__func__", fn)
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__qualname__)}"


async def call(what: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call a plugin's function, sync or async. A Schola error it raises passes as itself (a scorer may refuse
    bad data with a ConfigError); any other exception is a bug in the plugin's own body: PluginError naming
    `what` ("scorer 'x'") and its code, the cause attached. Its arguments were checked before the run
    (`check_arguments`), so a TypeError here is the plugin's, not the step's."""
    try:
        out = fn(*args, **kwargs)
        return await out if inspect.isawaitable(out) else out
    except ScholaError:
        raise
    except Exception as e:
        raise PluginError(f"{what} ({where(fn)}) raised {type(e).__name__}: {e}", plugin=where(fn)) from e


def check_arguments(
    fn: Callable[..., Any], what: str, given: Collection[str], *, ctx: bool, key: str, file: str | None = None
) -> None:
    """`fn` can be called with the keyword arguments `given` (after the context, when `ctx`): `signature.bind`
    before any model call; ConfigError naming the key and what `fn` takes."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to check (some builtins): the call will say
        return
    try:
        sig.bind(*([None] if ctx else []), **dict.fromkeys(given))
    except TypeError as e:
        named = [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        takes = named[1:] if ctx else named
        missing = [n for n in takes if sig.parameters[n].default is inspect.Parameter.empty and n not in given]
        if missing:
            raise ConfigError(
                f"{what} needs {', '.join(missing)}; it takes {', '.join(takes) or 'nothing'}",
                key=key,
                file=file,
            ) from None
        unknown = sorted(set(given) - set(takes))
        detail = f"takes no {', '.join(unknown)}" if unknown else f"cannot be called so ({e})"
        raise ConfigError(f"{what} {detail}; it takes {', '.join(takes) or 'nothing'}", key=key, file=file) from None


roles = Registry("roles")
scenarios = Registry("scenarios")
scorers = Registry("scorers")
stages = Registry("stages")
backends = Registry("backends")
ALL = {"roles": roles, "scenarios": scenarios, "scorers": scorers, "stages": stages, "backends": backends}
