"""The sandbox every template and expression runs in: Jinja's immutable sandbox without Python's builtins and
with every value-building operation bounded.

- no `str`, `lipsum`, `cycler`, `joiner`, `namespace` (Python types are replaced by plain functions, so
  `list.append(x, ...)` cannot reach an episode's state); `str.format`/`format_map` go through the sandbox's
  formatter;
- `*`, `+`, `%` and `**` are intercepted operators (so Jinja never folds `'A' * 4000000000` while compiling),
  and `range()`, string methods, filters that pad, repeat or join, format widths and the rendered text are
  bounded by the limits below;
- time is bounded too: every loop iteration, call, filter and operator is an operation, and a render (inside
  `bounded()`) may take MAX_OPS of them and MAX_CPU_S seconds of CPU. Nested loops multiply (two `range(100000)`
  loops are 10**10 iterations), and the event loop a run's episodes share must never be blocked for long: a
  Ctrl-C is handled between two steps.

Patterns from a config (the `regex` scorer, the scripted backend's `match`) are untrusted too: `search` runs
them with a time bound (the `regex` package's timeout), and `check_pattern` refuses nested quantifiers (`(a+)+`)
before a run.

`schola.templates` compiles, checks and renders on top of it; the scripted backend renders its rules there too.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import re
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from re import _constants as re_constants  # type: ignore[attr-defined]
from re import _parser as re_parser  # type: ignore[attr-defined]
from typing import Any

import regex
from jinja2 import (
    StrictUndefined,
    nodes,
    pass_environment,
    pass_eval_context,
    sandbox,
)
from jinja2 import filters as jinja_filters
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter

from schola.errors import ConfigError

#: Items a `range()` may have (Jinja's sandbox limit).
MAX_RANGE = sandbox.MAX_RANGE
#: Characters or items any one value a template builds may have, the rendered text included.
MAX_LENGTH = 4_000_000
#: Decimal digits of an integer built by `*` or `**`, and the largest `round()` precision (Python's own limit
#: for turning an integer into text is 4300 digits).
MAX_DIGITS = 4300
#: Largest `indent` of the `tojson` filter.
MAX_INDENT = 16
#: Operations (loop iterations, calls, filters, operators) one render may take: about half a second of pure
#: looping, far more than a prompt needs.
MAX_OPS = 1_000_000
#: CPU seconds one render may take, whatever its operations cost (a filter over a 4 MB string is one of them).
#: CPU, not wall time: a loaded machine must not fail a template that an idle one renders.
MAX_CPU_S = 1.0
#: Seconds a pattern from a config may take on one text (a catastrophic one takes hours).
REGEX_TIMEOUT_S = 1.0

DENIED = {
    "self": "it reaches the template's internals",
    "str": "use the |string filter",
    "lipsum": "it is not available",
    "cycler": "it is not available",
    "joiner": "it is not available",
    "namespace": "it is not available",
}
LOADERS = {
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
    nodes.Extends: "extends",
}
OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "//": operator.floordiv,
    "%": operator.mod, "**": operator.pow,
}  # fmt: skip
_SIZED = (str, bytes, list, tuple)
_MAX_BITS = int(MAX_DIGITS / math.log10(2))
_PERCENT = re.compile(r"%(\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?")


def _limit(size: Any, what: str) -> None:
    if isinstance(size, int) and size > MAX_LENGTH:
        raise SecurityError(
            f"{what} would have {size:,} characters or items, over the limit of {MAX_LENGTH:,} "
            "(schola.sandbox.MAX_LENGTH)"
        )


def _digits(count: float, what: str) -> None:
    if count > MAX_DIGITS:
        raise SecurityError(
            f"{what} would have about {count:,.0f} digits, over the limit of {MAX_DIGITS:,} (schola.sandbox.MAX_DIGITS)"
        )


class _Budget(threading.local):
    """What the render running on this thread may still spend (each thread renders its own templates)."""

    def __init__(self) -> None:
        self.left, self.deadline = MAX_OPS, math.inf


_BUDGET = _Budget()


class bounded:  # lower case: used as a function, `with bounded():` (a class: a generator-based one cost µs per render)
    """A render's budget: MAX_OPS operations and MAX_CPU_S seconds of this thread's CPU from now."""

    __slots__ = ("saved",)

    def __enter__(self) -> None:
        b = _BUDGET
        self.saved = b.left, b.deadline
        b.left, b.deadline = MAX_OPS, time.thread_time() + MAX_CPU_S

    def __exit__(self, *exc: object) -> None:
        _BUDGET.left, _BUDGET.deadline = self.saved


def _spend() -> None:
    """Charge an operation that may be costly (a call, a filter, an operator); the CPU clock (a system call) is
    read every 64 of them, and every 1024 loop iterations."""
    b = _BUDGET
    b.left -= 1
    if b.left & 63 == 0 or b.left < 0:
        _check(b)


def _check(b: _Budget) -> None:
    if b.left < 0:
        raise SecurityError(
            f"the template took over {MAX_OPS:,} operations (loop iterations, calls, filters), the sandbox's "
            "limit (schola.sandbox.MAX_OPS); nested loops multiply"
        )
    if time.thread_time() > b.deadline:
        raise SecurityError(
            f"the template took over {MAX_CPU_S:g} s of CPU time, the sandbox's limit (schola.sandbox.MAX_CPU_S)"
        )


def counted(items: Iterable[Any]) -> Iterator[Any]:
    """A `{% for %}` loop's items, each an operation."""
    b = _BUDGET
    for item in items:
        b.left -= 1
        if b.left & 1023 == 0 or b.left < 0:
            _check(b)
        yield item


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _measure(value: Any) -> int:
    """About how many characters `str(value)` has, found without building it; counting stops past MAX_LENGTH.
    (Containers hold references: `[a, a, a]` prints `a` three times.)"""
    size, stack = 0, [value]
    while stack and size <= MAX_LENGTH:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, _CONTAINERS):
            size += 2 + 4 * len(item)
            if size <= MAX_LENGTH:
                stack.extend(item.items() if isinstance(item, dict) else item)
        elif isinstance(item, int):
            size += item.bit_length() // 3 + 1
        else:
            size += 8
    return size


def _text_size(value: Any) -> int:
    return len(value) if isinstance(value, str) else _measure(value)


def _check_percent(fmt: str, args: Any) -> None:
    """A %-format's widths, precisions and result are bounded (`*` takes a width from the arguments)."""
    size, named, star = len(fmt), 0, False
    for m in _PERCENT.finditer(fmt):
        named += m.group(1) is not None
        for n in m.groups()[1:]:
            star |= n == "*"
            size += int(n) if n and n != "*" else 0
            _limit(int(n) if n and n != "*" else 0, "a %-format width")
    values = list(args) if isinstance(args, tuple) else [args]
    if isinstance(args, Mapping):  # each %(name)s may print the largest value
        size += named * max(map(_text_size, args.values()), default=0)
    else:
        size += sum(map(_text_size, values))
    if star:
        size += sum(abs(v) for v in values if isinstance(v, int))
    _limit(size, "a %-formatted string")


def binop(op: str, left: Any, right: Any) -> Any:
    """A binary operator, refused before it would build a value over the limits."""
    if op == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > _MAX_BITS:
                _digits((left.bit_length() + right.bit_length()) * math.log10(2), "a product")
        else:
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, _SIZED) and isinstance(n, int):
                    _limit(len(seq) * max(n, 0), "a repeated sequence")
    elif op == "+" and isinstance(left, _SIZED) and isinstance(right, _SIZED):
        _limit(len(left) + len(right), "a concatenation")
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        _digits(right * math.log10(abs(left)), "a power")
    elif op == "%" and isinstance(left, str):
        _check_percent(left, right)
    return OPS[op](left, right)


def _check_str_method(text: str, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Bounds for the string methods that pad, repeat, join or translate; the arguments to call it with."""
    if name in ("center", "ljust", "rjust", "zfill") and args:
        _limit(args[0], f"str.{name}()")
    elif name == "expandtabs" and args and isinstance(args[0], int):
        _limit(len(text) + args[0] * text.count("\t"), "str.expandtabs()")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _limit(_replaced_size(text, args[0], args[1], args[2] if len(args) > 2 else None), "str.replace()")
    elif name == "join" and args:
        items = list(args[0])
        _limit(_joined_size(items, text), "str.join()")
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _limit(len(text) * longest, "str.translate()")
    elif name == "encode":
        raise SecurityError("bytes are not available in templates")
    return args


def _replaced_size(text: str, old: str, new: str, count: Any) -> int:
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(len(new) - len(old), 0)


def _joined_size(items: list[Any], separator: str) -> int:
    return sum(len(i) for i in items if isinstance(i, str)) + len(separator) * max(len(items) - 1, 0)


class _Formatter(SandboxedFormatter):
    """The sandbox's `str.format`, with bounded widths, precisions and result."""

    size = 0

    def vformat(self, format_string: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        self.size = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        widths = [int(n) for n in re.findall(r"\d+", format_spec)]
        for width in widths:
            _limit(width, "a format width")
        self.size += _text_size(value) + max(widths, default=0)
        _limit(self.size, "a formatted string")
        return super().format_field(value, format_spec)


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, but `a ~ b` goes through the environment's `bounded_concat`, and a loop's items
    through `counted`."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if not getattr(node, "counted", False):  # a tree compiled twice is wrapped once
            counted = nodes.EnvironmentAttribute("counted")
            node.iter = nodes.Call(counted, [node.iter], [], None, None, lineno=node.lineno)
            node.counted = True  # type: ignore[attr-defined]
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "*", "%", "**"})
    code_generator_class = _CodeGenerator
    counted = staticmethod(counted)

    @staticmethod
    def bounded_concat(parts: tuple[Any, ...]) -> str:
        _spend()
        _limit(sum(map(_text_size, parts)), "a ~ concatenation")
        return "".join(map(str, parts))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _spend()
        return binop(operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        text = value.__self__
        if not isinstance(text, str):
            return None
        vformat = _Formatter(self).vformat
        if value.__name__ == "format_map":
            return lambda mapping: vformat(text, (), mapping)
        return lambda *args, **kwargs: vformat(text, args, kwargs)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _spend()  # macros included: a macro calling itself twice is exponential without a single loop
        if isinstance(obj, types.BuiltinMethodType) and isinstance(obj.__self__, str):
            args = _check_str_method(obj.__self__, obj.__name__, args)
        return super().call(context, obj, *args, **kwargs)


# -- the helpers templates see: plain functions, so no type's unbound methods are reachable ---------------------
def bounded_range(*args: int) -> range:
    try:
        size = len(range(*args))
    except OverflowError:
        size = MAX_RANGE + 1
    if size > MAX_RANGE:
        raise SecurityError(
            f"range({', '.join(map(repr, args))}) would have more than {MAX_RANGE:,} items, the "
            "sandbox's limit (schola.sandbox.MAX_RANGE)"
        )
    return range(*args)


def _list(items: Iterable[Any] = ()) -> list[Any]:
    return list(items)


def _dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    return dict(*args, **kwargs)


def _int(value: Any = 0, *base: int) -> int:
    return int(value, *base)


def _float(value: Any = 0.0) -> float:
    return float(value)


def finalize(value: Any) -> Any:
    """Every `{{ value }}` passes here before it becomes text: a container must not print too much."""
    if isinstance(value, _CONTAINERS):
        _limit(_measure(value), "a value's text")
    return value


def _round(number: Any, ndigits: int | None = None) -> Any:
    _digits(abs(ndigits or 0), "round()")
    return round(number, ndigits)


def _sum(items: Iterable[Any], start: Any = 0) -> Any:
    """sum(); linear for lists and tuples (Python's own is quadratic there)."""
    if isinstance(start, (list, tuple)):
        parts = list(items)
        _limit(len(start) + sum(len(p) for p in parts), "sum()")
        return type(start)(itertools.chain(start, *parts))
    return sum(items, start)


HELPERS: dict[str, Any] = {
    "len": len, "sum": _sum, "min": min, "max": max, "sorted": sorted, "enumerate": enumerate, "zip": zip,
    "list": _list, "dict": _dict, "int": _int, "float": _float, "abs": abs, "round": _round, "any": any,
    "all": all, "range": bounded_range,
}  # fmt: skip


# -- filters that pad, repeat or join, bounded ------------------------------------------------------------------
def _center(value: Any, width: int = 80) -> str:
    _limit(width, "center()")
    return jinja_filters.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    _limit(len(text) + (len(width) if isinstance(width, str) else width) * (text.count("\n") + 1), "indent()")
    return jinja_filters.do_indent(text, width, first, blank)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_percent(str(value), kwargs or args)
    return jinja_filters.do_format(value, *args, **kwargs)


@pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    items = list(value)
    _limit(_joined_size(items, str(d)), "join()")
    return jinja_filters.sync_do_join(eval_ctx, items, d, attribute)


@pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    _limit(_replaced_size(str(s), str(old), str(new), count), "replace()")
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    _limit(slices, "slice()")
    return jinja_filters.sync_do_slice(value, slices, fill_with)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    _limit(linecount, "batch()")
    return jinja_filters.do_batch(value, linecount, fill_with)


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: int | None = None) -> Any:
    if indent is not None and indent > MAX_INDENT:
        raise SecurityError(f"tojson(indent={indent}) is over the limit of {MAX_INDENT} (schola.sandbox.MAX_INDENT)")
    return jinja_filters.do_tojson(eval_ctx, value, indent)


@pass_environment
def _wordwrap(
    env: Any,
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = str(s)
    breaks = len(text) // max(int(width), 1) + text.count("\n") + 1
    _limit(len(text) + breaks * len(wrapstring or "\n"), "wordwrap()")
    return jinja_filters.do_wordwrap(env, text, width, break_long_words, wrapstring, break_on_hyphens)


def _round_filter(value: Any, precision: int = 0, method: Any = "common") -> float:
    _digits(abs(precision), "round()")
    return jinja_filters.do_round(value, precision, method)


@pass_environment
def _sum_filter(env: Any, iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0) -> Any:
    if attribute is not None:
        iterable = map(jinja_filters.make_attrgetter(env, attribute), iterable)
    return _sum(iterable, start)


FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center, "indent": _indent, "format": _format, "join": _join, "replace": _replace,
    "slice": _slice, "batch": _batch, "tojson": _tojson, "wordwrap": _wordwrap, "round": _round_filter,
    "sum": _sum_filter,
}  # fmt: skip

# Filters that turn their value into text: a container's text is measured first.
_TEXT_FILTERS = {
    "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "join", "lower", "pprint", "replace",
    "safe", "string", "striptags", "title", "tojson", "trim", "truncate", "upper", "urlencode", "urlize",
    "wordcount", "wordwrap", "xmlattr",
}  # fmt: skip


def _guard_filter(function: Callable[..., Any], *, text: bool) -> Callable[..., Any]:
    """The filter as an operation of the render's budget; a filter that makes text refuses a container whose
    text would be over the limit."""
    at = 0 if getattr(function, "jinja_pass_arg", None) is None else 1

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _spend()
        if text and len(args) > at and isinstance(args[at], _CONTAINERS):
            _limit(_measure(args[at]), "a filter's value")
        return function(*args, **kwargs)

    return guarded


# optimized=False: Jinja's optimizer would evaluate constant expressions while compiling (`check` included).
ENV = _Sandbox(
    undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False, optimized=False, finalize=finalize
)
ENV.globals.clear()
ENV.globals.update(HELPERS)
ENV.filters.update(FILTERS)
ENV.filters.update({name: _guard_filter(f, text=name in _TEXT_FILTERS) for name, f in ENV.filters.items()})
BUILTIN_NAMES = set(ENV.globals)
FLAT_GLOBALS = dict(ENV.globals)  # flat: Jinja's own per-render merge walks a ChainMap, which dominated hot loops


# -- patterns from a config --------------------------------------------------------------------------------------
_REPEATS = (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT)  # possessive repeats never backtrack


def _ambiguous(body: list[Any]) -> bool:
    """True when a repeated body is only unbounded repeats and optional parts (`a+`, `\\w+\\s?`, `a+|b`): then
    the outer repeat can split a run of text among its iterations in exponentially many ways."""
    unbounded = False
    for op, av in body:
        if op is re_constants.SUBPATTERN:
            if not _ambiguous(av[3]):
                return False
            unbounded = True
        elif op is re_constants.BRANCH:
            if not any(_ambiguous(alt) for alt in av[1]):
                return False
            unbounded = True
        elif op in _REPEATS and av[1] == re_constants.MAXREPEAT:
            unbounded = True
        elif not (op in _REPEATS and av[0] == 0):
            return False
    return unbounded


def _nested_quantifier(items: Any) -> bool:
    for op, av in items:
        if op in _REPEATS and av[1] == re_constants.MAXREPEAT and _ambiguous(av[2]):
            return True
        children = av[2] if op in _REPEATS or op is re_constants.POSSESSIVE_REPEAT else None
        if op in (re_constants.SUBPATTERN, re_constants.ASSERT, re_constants.ASSERT_NOT):
            children = av[-1]
        elif op is re_constants.ATOMIC_GROUP:
            children = av
        elif op is re_constants.BRANCH:
            children = [item for alt in av[1] for item in alt]
        if children is not None and _nested_quantifier(children):
            return True
    return False


@functools.lru_cache(maxsize=1024)
def pattern(source: str, flags: int = 0) -> Any:
    """A regex from a config, compiled; ConfigError for an invalid one or one with a nested quantifier (`(a+)+`,
    `(\\w+\\s?)*`), whose matching time doubles with each character of a text it does not match."""
    try:
        compiled = regex.compile(source, flags)
    except (regex.error, TypeError, ValueError, OverflowError, RecursionError) as e:
        raise ConfigError(f"invalid regex {source[:80]!r}: {e}") from None
    try:
        tree = re_parser.parse(source, flags)
    except Exception:  # syntax only the regex package knows: its timeout still bounds it
        return compiled
    if _nested_quantifier(tree):
        raise ConfigError(
            f"regex {source[:80]!r} repeats a repetition (like (a+)+): on text it does not match it backtracks "
            "for hours; repeat a single item, or make the inner repetition possessive (a++) or atomic ((?>a+))"
        )
    return compiled


def search(source: str, text: str, flags: int = 0) -> Any:
    """`regex.search` bounded in time: ConfigError when the pattern takes over REGEX_TIMEOUT_S on `text`."""
    try:
        return pattern(source, flags).search(text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        raise ConfigError(
            f"regex {source[:80]!r} took over {REGEX_TIMEOUT_S:g} s on a text of {len(text):,} characters "
            "(schola.sandbox.REGEX_TIMEOUT_S): it backtracks catastrophically; make the alternatives or repetitions "
            "it repeats unable to match the same text"
        ) from None
