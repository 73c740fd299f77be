"""Prompts and guards are Jinja2 templates and expressions in a sandboxed environment: no `eval` anywhere."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from schola.errors import ConfigError

HELPERS: dict[str, Any] = {
    "len": len, "sum": sum, "min": min, "max": max, "sorted": sorted, "enumerate": enumerate, "zip": zip,
    "list": list, "int": int, "float": float, "str": str, "abs": abs, "round": round, "any": any, "all": all,
}  # fmt: skip

ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
ENV.globals.update(HELPERS)
BUILTIN_NAMES = set(ENV.globals)
_GLOBALS = dict(ENV.globals)  # flat: Jinja's own per-render merge walks a ChainMap, which dominated hot loops


def _run(t: Any, context: Mapping[str, Any]) -> Any:
    """A template's render context, built from one dict merge (shared=True skips Jinja's globals merge)."""
    ctx = t.new_context({**_GLOBALS, **context}, shared=True)
    return ctx, t.root_render_func(ctx)


@lru_cache(maxsize=4096)
def template(source: str) -> Any:
    return ENV.from_string(source)


@lru_cache(maxsize=4096)
def expression(source: str) -> Any:
    """The template Jinja's compile_expression builds: it stores the value in `result`."""
    ENV.compile_expression(source)  # raises TemplateSyntaxError for a bad expression
    return ENV.from_string("{% set result = " + source + " %}")


@lru_cache(maxsize=4096)
def variables(source: str, *, is_expression: bool = False) -> frozenset[str]:
    """Names a template or expression reads from its context (for the graph's static input check)."""
    ast = ENV.parse("{{ (" + source + ") }}" if is_expression else source)
    return frozenset(meta.find_undeclared_variables(ast) - BUILTIN_NAMES)


def check(source: str, *, is_expression: bool = False, key: str | None = None, file: str | None = None) -> None:
    try:
        expression(source) if is_expression else template(source)
    except TemplateSyntaxError as e:
        what = "expression" if is_expression else "template"
        raise ConfigError(f"invalid {what} {source!r}: {e.message} (line {e.lineno})", key=key, file=file) from None


_VAR = re.compile(r"\{\{\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_]\w*$")


@lru_cache(maxsize=4096)
def _plain(source: str) -> list[str | tuple[str, ...]] | None:
    """Literal text and `{{ a.b }}` lookups only (most prompts): the parts, else None."""
    parts: list[str | tuple[str, ...]] = []
    pos = 0
    for m in _VAR.finditer(source):
        parts += [source[pos : m.start()], tuple(m.group(1).split("."))]
        pos = m.end()
    parts.append(source[pos:])
    if any(isinstance(p, str) and ("{{" in p or "{%" in p or "{#" in p) for p in parts):
        return None
    return parts


def _lookup(context: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value = context[path[0]]  # KeyError: Jinja reports the undefined name
    for key in path[1:]:
        if not isinstance(value, dict) or key not in value or hasattr(dict, key):
            raise KeyError(key)  # let Jinja resolve attributes with its sandboxed rules
        value = value[key]
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise KeyError(path[-1])  # Jinja's own formatting of None, bools, lists
    return value


def render(source: str, context: Mapping[str, Any], *, key: str | None = None) -> str:
    # Fast path for prompts that only interpolate names and dict fields: the same text Jinja would produce,
    # without building a template context per message.
    if (parts := _plain(source)) is not None:
        try:
            return "".join(p if isinstance(p, str) else str(_lookup(context, p)) for p in parts)
        except KeyError:
            pass
    try:
        return "".join(_run(template(source), context)[1])
    except (UndefinedError, SecurityError, TypeError, ValueError) as e:
        raise ConfigError(f"cannot render {source[:60]!r}: {e}", key=key) from None


def evaluate(source: str, context: Mapping[str, Any], *, key: str | None = None) -> Any:
    if _NAME.match(source) and source in context:  # a bare name: no template needed
        return context[source]
    try:
        ctx, events = _run(expression(source), context)
        for _ in events:
            pass
        return ctx.vars["result"]
    except (UndefinedError, SecurityError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise ConfigError(f"cannot evaluate {source!r}: {type(e).__name__}: {e}", key=key) from None
