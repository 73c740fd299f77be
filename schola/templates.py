"""Prompts and guards are Jinja2 templates and expressions in a sandbox: no `eval` anywhere, nothing read from
the process (environment, files, Python internals), and no value larger than the limits below.

The sandbox they run in is `schola.sandbox`. Here:
- the environment is Jinja's immutable sandbox without `str`, `lipsum`, `cycler`, `joiner` and `namespace`
  (Python types are replaced by plain functions, so `list.append(x, ...)` cannot reach an episode's state);
  `str.format`/`format_map` go through the sandbox's formatter; `self`, dunder attributes and
  `include`/`import`/`extends` are refused when a template is compiled (so `schola check` finds them);
- every operation that can build a large value is bounded: `*`, `+`, `%` and `**` (intercepted operators, so
  Jinja never folds `'A' * 4000000000` at compile time), `range()`, string methods and filters that pad, repeat
  or join, format widths, and the rendered text itself;
- so is the time a render takes (the sandbox's operation budget); loops over constant ranges whose iterations
  multiply past it are refused when the template is compiled;
- any error while rendering or evaluating (`1/0`, a wrong type, an unknown name) is a ConfigError naming the
  key, never another exception.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from jinja2 import (
    Template,
    TemplateSyntaxError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.runtime import Context, Undefined

from schola.errors import ConfigError
from schola.sandbox import (
    BUILTIN_NAMES,
    DENIED,
    ENV,
    FLAT_GLOBALS,
    LOADERS,
    MAX_LENGTH,
    MAX_OPS,
    OPS,
    binop,
    bounded,
    bounded_range,
    finalize,
)


# -- the static check (run once per source, when it is compiled) ------------------------------------------------
class _NotConstant(Exception):
    pass


def _vet(tree: nodes.Node, what: str) -> None:
    """Refuse what a template must not do, before it runs: load other files, use denied names, reach dunder
    attributes, or compute a constant that is an error or over the limits (`1/0`, `'A' * 10**10`, `range(10**9)`)."""
    for loader in tree.find_all(tuple(LOADERS)):
        raise ConfigError(f"{what}: {{% {LOADERS[type(loader)]} %}} is not allowed (a template cannot load files)")
    for name in tree.find_all(nodes.Name):
        if name.name in DENIED:
            raise ConfigError(f"{what}: name '{name.name}' is not allowed ({DENIED[name.name]})")
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        attr: Any = None
        if isinstance(node, nodes.Getattr):
            attr = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            attr = node.arg.value
        elif (
            isinstance(node, nodes.Filter)
            and node.name == "attr"
            and node.args
            and isinstance(node.args[0], nodes.Const)
        ):
            attr = node.args[0].value
        if isinstance(attr, str) and attr.startswith("__"):
            raise ConfigError(f"{what}: attribute '{attr}' is not allowed (Python internals)")
    known: dict[int, Any] = {}
    for expr in tree.find_all((nodes.BinExpr, nodes.Call)):
        try:
            if isinstance(expr, nodes.BinExpr):
                _constant(expr, known)
            elif isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Name) and expr.node.name == "range":
                bounded_range(*(_constant(a, known) for a in expr.args))
        except (_NotConstant, RecursionError):
            continue
        except Exception as e:  # whatever it raises, the expression always fails: say so now
            raise ConfigError(f"{what} fails whenever it runs: {_reason(e)}") from None
    if (iterations := _loop_iterations(tree, 1, known)) > MAX_OPS:  # nested loops multiply: it would always fail
        raise ConfigError(
            f"{what}: its loops run {iterations:,} times, over the limit of {MAX_OPS:,} operations a template may "
            "take (schola.sandbox.MAX_OPS)"
        )


def _loop_iterations(node: nodes.Node, times: int, known: dict[int, Any]) -> int:
    """How many loop iterations `node` takes when it runs `times` times, counting only loops over constants
    (`range(100000)`): what the render's operation budget will be charged at least."""
    if not isinstance(node, nodes.For):
        return sum(_loop_iterations(child, times, known) for child in node.iter_child_nodes())
    inner = times * _constant_length(node.iter, known)
    per_item = [*node.body, *([node.test] if node.test is not None else [])]
    return (
        inner
        + _loop_iterations(node.iter, times, known)
        + sum(_loop_iterations(part, inner, known) for part in per_item)
        + sum(_loop_iterations(part, times, known) for part in node.else_)
    )


def _constant_length(node: nodes.Node, known: dict[int, Any]) -> int:
    """How many items a loop over `node` has, where that is known before it runs (a constant range or list); 1
    otherwise."""
    try:
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
            return len(bounded_range(*(_constant(a, known) for a in node.args)))
        value = _constant(node, known)
    except Exception:  # not constant, or an error the check above reports
        return 1
    return max(len(value), 1) if isinstance(value, (str, list, tuple)) else 1


def _constant(node: nodes.Node, known: dict[int, Any]) -> Any:
    """The value of a constant expression, computed with the sandbox's bounds (memoised: each node once)."""
    if id(node) in known:
        value = known[id(node)]
        if value is _NotConstant:
            raise _NotConstant
        return value
    known[id(node)] = _NotConstant
    if isinstance(node, nodes.Const):
        value = node.value
    elif isinstance(node, (nodes.List, nodes.Tuple)):
        items = [_constant(i, known) for i in node.items]
        value = items if isinstance(node, nodes.List) else tuple(items)
    elif isinstance(node, nodes.Neg):
        value = -_constant(node.node, known)
    elif isinstance(node, nodes.Pos):
        value = +_constant(node.node, known)
    elif isinstance(node, nodes.BinExpr) and node.operator in OPS:
        value = binop(node.operator, _constant(node.left, known), _constant(node.right, known))
    else:
        raise _NotConstant
    known[id(node)] = value
    return value


def _reason(e: Exception) -> str:
    return str(e) if isinstance(e, SecurityError) else f"{type(e).__name__}: {e}"


def _syntax(what: str, source: str, e: Exception) -> ConfigError:
    if isinstance(e, TemplateSyntaxError):
        return ConfigError(f"invalid {what} {source[:60]!r}: {e.message} (line {e.lineno})")
    return ConfigError(f"invalid {what} {source[:60]!r}: nested too deeply or too long ({type(e).__name__})")


@functools.lru_cache(maxsize=4096)
def template(source: str) -> Template:
    """The compiled template; ConfigError for a syntax error or anything `_vet` refuses."""
    try:
        tree = ENV.parse(source)
        _vet(tree, f"template {source[:60]!r}")
        return ENV.from_string(tree)
    except (TemplateSyntaxError, RecursionError, SyntaxError, MemoryError) as e:
        raise _syntax("template", source, e) from None


@functools.lru_cache(maxsize=4096)
def expression(source: str) -> Template:
    """A template that stores the expression's value in `result` (as Jinja's compile_expression builds it)."""
    try:
        parser = Parser(ENV, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno, None, None)
        tree = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)], lineno=1)
        _vet(tree, f"expression {source[:60]!r}")
        return ENV.from_string(tree)
    except (TemplateSyntaxError, RecursionError, SyntaxError, MemoryError) as e:
        raise _syntax("expression", source, e) from None


@functools.lru_cache(maxsize=4096)
def variables(source: str, *, is_expression: bool = False) -> frozenset[str]:
    """Names a template or expression reads from its context (for the graph's static input check)."""
    try:
        ast = ENV.parse("{{ (" + source + ") }}" if is_expression else source)
    except (TemplateSyntaxError, RecursionError) as e:
        raise _syntax("expression" if is_expression else "template", source, e) from None
    return frozenset(meta.find_undeclared_variables(ast) - BUILTIN_NAMES)


def check(source: str, *, is_expression: bool = False, key: str | None = None, file: str | None = None) -> None:
    """Compile a template or expression as a run would: ConfigError naming `key` and `file` for a syntax error,
    an unsafe construct or a constant that is an error or over the limits."""
    try:
        expression(source) if is_expression else template(source)
    except ConfigError as e:
        raise ConfigError(e.detail, key=key, file=file) from None


# -- rendering --------------------------------------------------------------------------------------------------
_VAR = re.compile(r"\{\{\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_INDEX = re.compile(r"-?\d+")
# Names Jinja reads as something else than a lookup in the context (constants, operators, `self`).
_RESERVED = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else"})
_RESERVED |= frozenset(DENIED)


@functools.lru_cache(maxsize=4096)
def _plain(source: str) -> list[str | tuple[str, ...]] | None:
    """Literal text and `{{ a.b }}` lookups only (most prompts): the parts, else None."""
    if "\r" in source:  # Jinja turns \r\n and \r into \n
        return None
    parts: list[str | tuple[str, ...]] = []
    pos = 0
    for m in _VAR.finditer(source):
        path = tuple(m.group(1).split("."))
        if path[0] in _RESERVED or source[pos : m.start()].endswith("{"):
            return None
        if any(hasattr(dict, name) for name in path[1:]):  # `a.items`: Jinja's attribute first; it decides
            return None
        parts += [source[pos : m.start()], path]
        pos = m.end()
    parts.append(source[pos:])
    if any(isinstance(p, str) and ("{{" in p or "{%" in p or "{#" in p) for p in parts):
        return None
    return parts


@functools.lru_cache(maxsize=4096)
def _dotted(source: str) -> tuple[str, ...] | None:
    """`a.b.c` (names only, none reserved) as its parts, else None."""
    parts = tuple(source.strip().split("."))
    if len(parts) < 2 or not all(_NAME.match(p) and p not in _RESERVED for p in parts):
        return None
    return parts


def lookup(record: Mapping[str, Any], path: str | Sequence[str], *, as_jinja: bool = False) -> Any:
    """The value at a dotted path (`inputs.meta.grades.0`): the one lookup of data fields, stats columns and
    templates; KeyError if there is none.

    A mapping key may itself hold dots (a score key such as `acc{model=gpt-4.1}`): the longest key that matches
    wins; a list item by its index (`-1` too). `as_jinja`: only what Jinja's `a.b` gives the same way (after the
    first name, plain dicts and keys that are no dict attribute, such as `items`); anything else is a KeyError, so
    that Jinja decides."""
    parts = path.split(".") if isinstance(path, str) else tuple(path)
    value: Any = record
    i = 0
    while i < len(parts):
        if as_jinja:
            if i and (type(value) is not dict or hasattr(dict, parts[i])):
                raise KeyError(parts[i])
            value, i = value[parts[i]], i + 1  # KeyError: Jinja reports the undefined name
        elif isinstance(value, Mapping):
            end = next((j for j in range(len(parts), i, -1) if ".".join(parts[i:j]) in value), None)
            if end is None:
                raise KeyError(".".join(parts))
            value, i = value[".".join(parts[i:end])], end
        elif isinstance(value, list) and _INDEX.fullmatch(parts[i]) and -len(value) <= int(parts[i]) < len(value):
            value, i = value[int(parts[i])], i + 1
        else:
            raise KeyError(".".join(parts))
    return value


def _lookup(context: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value = context[path[0]]
    for name in path[1:]:  # lookup(context, path, as_jinja=True), without its general walk (and no name in `path`
        if type(value) is not dict:  # is a dict attribute: _plain leaves those to Jinja)
            raise KeyError(name)
        value = value[name]
    if type(value) not in (str, int, float):
        raise KeyError(path[-1])  # Jinja's own formatting of None, bools, lists
    return value


def _run(t: Template, context: Mapping[str, Any]) -> tuple[Context, Iterator[str]]:
    """A template's render context, built from one dict merge (shared=True skips Jinja's globals merge)."""
    ctx = t.new_context({**FLAT_GLOBALS, **context}, shared=True)
    return ctx, t.root_render_func(ctx)


def _too_long(size: int) -> SecurityError:
    return SecurityError(f"the rendered text would have over {size:,} characters, over the limit of {MAX_LENGTH:,}")


def render(source: str, context: Mapping[str, Any], *, key: str | None = None) -> str:
    """The text of a template; ConfigError naming `key` (which template, and why) for any failure."""
    # Fast path for prompts that only interpolate names and dict fields: the same text Jinja would produce,
    # without building a template context per message.
    if (parts := _plain(source)) is not None:
        pieces: list[str] = []
        try:
            for p in parts:
                if isinstance(p, str):
                    pieces.append(p)
                    continue
                value = context[p[0]] if len(p) == 1 else _lookup(context, p)  # (a name: the one lookup)
                if type(value) is not str:
                    if type(value) not in (int, float):
                        raise KeyError(p[-1])  # Jinja's own formatting of None, bools, lists
                    value = str(value)
                pieces.append(value)
        except Exception:  # Jinja's own path gives the value or the error
            pass
        else:
            text = "".join(pieces)
            if len(text) <= MAX_LENGTH:
                return text
    try:
        pieces, size = [], 0
        with bounded():
            for piece in _run(template(source), context)[1]:
                size += len(piece)
                if size > MAX_LENGTH:
                    raise _too_long(size)
                pieces.append(piece)
        return "".join(pieces)
    except ConfigError as e:
        raise ConfigError(e.detail, key=key) from None
    except Exception as e:  # a template's failure is the scenario's error, never a crash
        raise ConfigError(f"cannot render template {source[:60]!r}: {_reason(e)}", key=key) from None


def evaluate(source: str, context: Mapping[str, Any], *, key: str | None = None) -> Any:
    """The value of an expression; ConfigError naming `key` (which expression, and why) for any failure."""
    if source in context and _NAME.match(source) and source not in _RESERVED:  # a bare name: no template needed
        return context[source]
    if (path := _dotted(source)) is not None:  # `roles.students`: dict lookups only, nothing built to measure
        try:
            return lookup(context, path, as_jinja=True)
        except KeyError:
            pass  # Jinja's rules decide
    try:
        with bounded():
            ctx, events = _run(expression(source), context)
            for _ in events:
                pass
            value = ctx.vars["result"]
            if isinstance(value, Undefined):
                str(value)  # raises UndefinedError, which says what is missing
            finalize(value)
        return value
    except ConfigError as e:
        raise ConfigError(e.detail, key=key) from None
    except Exception as e:  # an expression's failure is the scenario's error, never a crash
        raise ConfigError(f"cannot evaluate {source[:60]!r}: {_reason(e)}", key=key) from None
