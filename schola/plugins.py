"""Entry-point registries. Built-ins register exactly as third-party packages do; a plugin that fails to load is
reported with its name and cause, and the rest keep working."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from schola.errors import ConfigError, PluginError, ScholaError

if TYPE_CHECKING:
    from pydantic import BaseModel

GROUPS = {
    "roles": "schola.roles",
    "scenarios": "schola.scenarios",
    "scorers": "schola.scorers",
    "stages": "schola.stages",
    "backends": "schola.backends",
}


@functools.cache
def installed() -> dict[str, list[Any]]:
    """Every installed entry point of Schola's groups, by group: one pass over the packages' metadata for all five
    registries (a pass per group cost five)."""
    every = entry_points()
    return {group: list(every.select(group=group)) for group in GROUPS.values()}


@functools.cache
def _dist_name(dist: Any) -> str:
    """`name version` of a distribution (its METADATA parsed once, however many plugins it registers)."""
    meta = dist.metadata
    return f"{meta['Name']} {meta['Version']}"


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
            for ep in installed().get(GROUPS[self.kind], ()):
                self._eps.setdefault(ep.name, ep)
        return self._eps

    def names(self) -> list[str]:
        return sorted(self._entry_points().keys() | self._registered.keys())

    def origin(self, name: str) -> str:
        """The package a plugin came from, as `name version` (read from its metadata only when asked: parsing
        every package's METADATA cost a tenth of a second at every `check`)."""
        if name in self._registered:
            return "registered in-process"
        ep = self._entry_points().get(name)
        if ep is None:
            return "?"
        if name not in self._origin:
            dist = getattr(ep, "dist", None)
            self._origin[name] = _dist_name(dist) if dist is not None else ep.value
        return self._origin[name]

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

    def about(self, name: str) -> str | None:
        """One line about a plugin read from its source (`about`), without loading it; None where the source
        does not say it plainly, or the plugin is registered in-process or already loaded (then describe the object)."""
        if name in self._registered or name in self._loaded or name not in self._entry_points():
            return None
        said = about(self._eps[name].value) if self._eps else None
        if said is None:
            return None
        if said.data is None:
            return said.line
        return said.line + (f" [scorers: {', '.join(said.scorers or []) or '-'}; stages: {', '.join(said.stages or []) or '-'}; "
                            f"data: {', '.join(said.data) or '-'}]")  # fmt: skip

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


# -- what `schola list` says of a plugin, read from its source (no import) -----------------------------------
@dataclass
class About:
    """A plugin's description as its source says it: the first line of its docstring (or `description`), and
    for a scenario its scorers, stages and data keys."""

    line: str
    scorers: list[str] | None = None
    stages: list[str] | None = None
    data: list[str] | None = None


def about(value: str) -> About | None:
    """What the entry point `module:name` names, read statically from the module's source: `schola list` shows
    every plugin without importing any (a scenario's module pulls in its whole stack: scipy, model clients).
    None where the source does not say it plainly (the caller then loads that plugin)."""
    module, _, name = value.partition(":")
    if not name or "." in name.strip():
        return None
    try:
        return _about(module.strip(), name.strip(), depth=0)
    except (OSError, SyntaxError, ValueError, ImportError, AttributeError):
        return None


def _source(module: str) -> tuple[Any, str] | None:
    """The parsed source of `module` and its docstring, found without importing it."""
    import ast

    origin = _origin(module)
    if not origin.endswith(".py"):
        return None
    with open(origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return tree, ast.get_docstring(tree) or ""


def _origin(module: str) -> str:
    """The file of `module`, found without importing it (only its top-level package may be, to find where its
    subpackages are: an editable install maps them)."""
    import importlib.machinery
    import importlib.util

    parts = module.split(".")
    spec = importlib.util.find_spec(".".join(parts[:2]))
    for i in range(2, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return ""
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), list(spec.submodule_search_locations))
    return (spec.origin or "") if spec is not None else ""


LONG = 160  # a first sentence longer than this is cut at its first clause


def summary(doc: str | None) -> str:
    """The one line `schola list` says of a plugin: its docstring's first sentence, whole (a docstring wraps its
    lines; "e.g." and "et al." end none). A long one ends at its first top-level `: ` or `; ` (outside brackets and
    code), as a sentence."""
    import re

    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    end = re.search(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\bcf)\.(?=\s)", text)
    text = text[: end.end()] if end else text
    if len(text) <= LONG:
        return text
    depth, code = 0, False
    for i, ch in enumerate(text):
        code ^= ch == "`"
        depth += (ch in "([{") - (ch in ")]}")
        if ch in ":;" and not depth and not code and text[i + 1 : i + 2] == " " and i >= 20:
            return text[:i] + "."
    return text


def _about(module: str, name: str, *, depth: int) -> About | None:
    import ast

    found = _source(module)
    if found is None or depth > 3:
        return None
    tree, module_doc = found
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return About(summary(ast.get_docstring(node)))
        if isinstance(node, ast.ClassDef) and node.name == name:
            for item in node.body:  # a `description` class attribute comes first, as describe() reads it
                target = item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else (
                    item.target if isinstance(item, ast.AnnAssign) else None)  # fmt: skip
                if isinstance(target, ast.Name) and target.id == "description":
                    value = getattr(item, "value", None)
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        return About(summary(value.value))
                    return None
            return About(summary(ast.get_docstring(node)))
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _about(_absolute(module, node, tree), alias.name, depth=depth + 1)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return _scenario(node.value, module, tree, module_doc, depth)
    return None


def _absolute(module: str, node: Any, tree: Any) -> str:
    """The module an `from ... import` names, relative imports resolved against `module` (a package's own
    __init__ counts as the package)."""
    if not node.level:
        return str(node.module)
    base = module.split(".")
    base = base[: len(base) - node.level + 1] if _is_package(module) else base[: len(base) - node.level]
    return ".".join([*base, *([node.module] if node.module else [])])


def _is_package(module: str) -> bool:
    return _origin(module).endswith("__init__.py")


def _scenario(call: Any, module: str, tree: Any, module_doc: str, depth: int) -> About | None:
    """`Scenario(description=..., scorers={...}, stages={...}, data=Model)`, read as written."""
    import ast

    if not isinstance(call, ast.Call) or getattr(call.func, "id", None) != "Scenario":
        return None
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    desc = kw.get("description")
    if desc is None:
        line = ""
    elif isinstance(desc, ast.Constant) and isinstance(desc.value, str):
        line = summary(desc.value)
    elif any(isinstance(n, ast.Name) and n.id == "__doc__" for n in ast.walk(desc)):
        line = summary(module_doc)  # description=__doc__.splitlines()[0] and the like
    else:
        return None
    keys: dict[str, list[str]] = {}
    for part in ("scorers", "stages"):
        value = kw.get(part)
        if value is None:
            keys[part] = []
        elif isinstance(value, ast.Dict) and all(isinstance(k, ast.Constant) for k in value.keys):
            keys[part] = [str(k.value) for k in value.keys if isinstance(k, ast.Constant)]
        else:
            return None
    data = kw.get("data")
    fields = ["path", "records"] if data is None else _fields(data, module, tree, depth)
    if fields is None:
        return None
    return About(line, keys["scorers"], keys["stages"], fields)


def _fields(node: Any, module: str, tree: Any, depth: int) -> list[str] | None:
    """The fields of a pydantic model named in `module`, its bases' first (as `model_fields` lists them)."""
    import ast

    if not isinstance(node, ast.Name) or depth > 4:
        return None
    for item in tree.body:
        if isinstance(item, ast.ClassDef) and item.name == node.id:
            own = [t.target.id for t in item.body if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)
                   and "ClassVar" not in ast.unparse(t.annotation)]  # fmt: skip
            inherited: list[str] = []
            for base in item.bases:
                if isinstance(base, ast.Name) and base.id == "BaseModel":
                    continue
                got = _fields(base, module, tree, depth + 1)
                if got is None:
                    return None
                inherited += [f for f in got if f not in inherited]
            return inherited + [f for f in own if f not in inherited]
        if isinstance(item, ast.ImportFrom):
            for alias in item.names:
                if (alias.asname or alias.name) == node.id:
                    source = _absolute(module, item, tree)
                    found = _source(source)
                    return None if found is None else _fields(ast.Name(id=alias.name), source, found[0], depth + 1)
    return None


# -- backends: a config model that names its client -----------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """A backend as a plan uses it: the model `check` validates its keys with, and what builds its client."""

    config: type[BaseModel]
    client: Callable[..., Any]


@dataclass(frozen=True)
class Client:
    """A client class named `module:Class` by a backend's config, imported when a run first builds a client:
    `check` imports none (nor AutoGen, which every client subclasses)."""

    kind: str
    value: str
    key: str | None = None  # the config key that chose the backend (backends.strong.kind)

    def load(self) -> Any:
        try:
            return EntryPoint(self.kind, self.value, GROUPS["backends"]).load()
        except Exception as e:
            raise ConfigError(
                f"backend '{self.kind}': its client {self.value} failed to load: {type(e).__name__}: {e}",
                key=self.key,
            ) from None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)


def backend(kind: str, *, key: str | None = None, file: str | None = None) -> Backend:
    """The backend registered as `kind`. Its entry point names its config (a `BackendConfig`), whose `client` names
    the client class as `"module:Class"`: the config is read without importing the client. A plugin written before
    names the client class itself, whose `Config` is its config: it still works (its client, and AutoGen, then
    load at check)."""
    found = backends.get(kind, key=key, file=file)
    client = getattr(found, "client", None)
    if isinstance(found, type) and isinstance(client, str):
        module, _, name = client.partition(":")
        if not name or not _findable(module.strip()):
            raise ConfigError(
                f"backend '{kind}' names its client {client!r}: expected 'module:Class' of an installed module",
                key=key,
                file=file,
            )
        return Backend(found, Client(kind, client, key))
    config = getattr(found, "Config", None)
    if isinstance(found, type) and isinstance(config, type):
        return Backend(config, found)
    raise ConfigError(
        f"backend plugin '{kind}' is neither a config class naming its client (client = 'module:Class') nor a "
        "client class with a Config",
        key=key,
        file=file,
    )


def _findable(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (only its top-level package may be)."""
    try:
        return bool(module) and bool(_origin(module))
    except (ImportError, ValueError):
        return False


roles = Registry("roles")
scenarios = Registry("scenarios")
scorers = Registry("scorers")
stages = Registry("stages")
backends = Registry("backends")
ALL = {"roles": roles, "scenarios": scenarios, "scorers": scorers, "stages": stages, "backends": backends}
