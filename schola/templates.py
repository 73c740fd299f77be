"""Prompts and guards are Jinja2 templates and expressions in a sandboxed environment: no `eval` anywhere."""

from __future__ import annotations

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


@lru_cache(maxsize=4096)
def template(source: str) -> Any:
    return ENV.from_string(source)


@lru_cache(maxsize=4096)
def expression(source: str) -> Any:
    return ENV.compile_expression(source, undefined_to_none=False)


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


def render(source: str, context: dict[str, Any], *, key: str | None = None) -> str:
    try:
        return template(source).render(context)
    except (UndefinedError, SecurityError, TypeError, ValueError) as e:
        raise ConfigError(f"cannot render {source[:60]!r}: {e}", key=key) from None


def evaluate(source: str, context: dict[str, Any], *, key: str | None = None) -> Any:
    try:
        return expression(source)(**context)
    except (UndefinedError, SecurityError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise ConfigError(f"cannot evaluate {source!r}: {type(e).__name__}: {e}", key=key) from None
