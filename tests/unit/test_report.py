"""`schola report`'s plot: every label is plain text."""

from __future__ import annotations

from typing import Any

import pytest

from schola.report import plot


@pytest.mark.parametrize("value", ["$\\notacommand{x}$", "costs $5 and $", "a_{$b$}^", "$"])
def test_plot_labels_are_plain_text_even_with_dollar_signs(value: str) -> None:
    """A varying config value with `$...$` was parsed as mathtext: `schola report` exited 1 with a matplotlib
    traceback (ValueError from its parser)."""

    def row(run: str, persona: str) -> dict[str, Any]:
        return {"run": run, "scenario.roles.student.persona": persona, "metric": f"acc {value}", "labels": value,
                "value": 0.5, "ci_low": 0.4, "ci_high": 0.6}  # fmt: skip

    png = plot([row("0", value), row("1", f"{value} too")], ["scenario.roles.student.persona"])
    assert png[:4] == b"\x89PNG"
