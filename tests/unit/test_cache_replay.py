"""A cached reply is built without pydantic's `model_construct` (issue 18: it was a tenth of a replayed reply's CPU):
`Result.built` must make exactly what `model_construct` makes, or AutoGen code reading the result would differ."""

from __future__ import annotations

from typing import Any

from autogen_core.models import RequestUsage

from schola.backends.base import Result


def test_built_result_is_what_model_construct_makes() -> None:
    usage = RequestUsage(prompt_tokens=3, completion_tokens=5)
    cases: list[dict[str, Any]] = [
        {"finish_reason": "stop", "content": "42", "usage": usage, "cached": True, "cost_usd": 0.0},
        {"finish_reason": "length", "content": "", "usage": usage, "cached": False, "cost_usd": None},
    ]
    for values in cases:
        built, constructed = Result.built(**values), Result.model_construct(**values)
        assert built == constructed
        assert list(built.__dict__.items()) == list(constructed.__dict__.items())  # logprobs, thought: defaults
        assert built.model_fields_set == constructed.model_fields_set
        assert built.model_dump_json() == constructed.model_dump_json()
        assert built.model_copy(update={"content": "x"}).content == "x"
