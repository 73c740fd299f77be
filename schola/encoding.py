"""JSON encoding at the cost the run's hot paths can afford: one encoder built once for records that hold no cycle.
A leaf module (the standard library only), so backends (the reply cache), the run directory and the viewer share it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def acyclic_encoder(
    *,
    ensure_ascii: bool = True,
    sort_keys: bool = False,
    default: Any = None,
    separators: tuple[str, str] = (", ", ": "),
    allow_nan: bool = True,
) -> Callable[[Any], str]:
    """`json.dumps` with these options, for values that hold no cycle (records Schola builds itself, or values read
    from JSON: strings, numbers and plain lists and dicts), at half its cost: json.dumps builds its C encoder again
    on every call, with a fresh table of the containers it is inside; this one is built once, without the table."""
    from json import encoder as stdlib

    make = getattr(stdlib, "c_make_encoder", None)
    if make is None or default is None:  # a Python without the C encoder; json's own default raises TypeError
        fallback = json.JSONEncoder(
            ensure_ascii=ensure_ascii, sort_keys=sort_keys, default=default, separators=separators, allow_nan=allow_nan
        )
        if make is None:
            return fallback.encode
        default = fallback.default
    basestring = stdlib.encode_basestring_ascii if ensure_ascii else stdlib.encode_basestring
    item, key = separators
    encode = make(None, default, basestring, None, key, item, sort_keys, False, allow_nan)

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


# json's own C scanner, which json.loads reaches through four layers (typeshed does not name it)
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(data: str | bytes) -> Any:
    """`json.loads(data)` at half its cost on a short document (a JSONL line, a server's reply): json's C scanner
    itself when the UTF-8 text starts with its value and only JSON whitespace follows; anything else (leading whitespace,
    a BOM, UTF-16, extra data, not JSON) goes to json.loads, so the value or the error is its own."""
    try:
        text = data if isinstance(data, str) else data.decode()
        value, end = _scan(text, 0)
        if end == len(text) or not text[end:].strip(" \t\n\r"):  # JSON's whitespace (str.isspace takes more)
            return value
    except (UnicodeDecodeError, StopIteration):
        pass
    return json.loads(data)
