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


_SIMPLE = re.compile(r"^\{\{\s*([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?\s*\}\}$")
_NAME = re.compile(r"^[A-Za-z_]\w*$")


@lru_cache(maxsize=4096)
def _simple(source: str) -> tuple[str, str | None] | None:
    m = _SIMPLE.match(source)
    return (m.group(1), m.group(2)) if m else None


def render(source: str, context: Mapping[str, Any], *, key: str | None = None) -> str:
    # Fast path for "{{ name }}" and "{{ name.field }}" over plain dicts (a role picked per map item is one):
    # the same result as Jinja's, without building a template context.
    if (simple := _simple(source)) is not None and simple[0] in context:
        value = context[simple[0]]
        if simple[1] is None and isinstance(value, str):
            return value
        if simple[1] is not None and isinstance(value, dict) and simple[1] in value and not hasattr(dict, simple[1]):
            inner = value[simple[1]]
            if isinstance(inner, str):
                return inner
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
