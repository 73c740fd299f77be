"""The README's examples are code that runs."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

README = (Path(__file__).parents[2] / "README.md").read_text()


def block(marker: str, language: str) -> str:
    return README.split(f"<!-- {marker}", 1)[1].split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_python_api_example_runs_inside_a_running_event_loop(tmp_path: Path) -> None:
    code = compile(block("python-api", "python"), "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    scope: dict[str, Any] = {}

    async def notebook() -> None:  # a notebook cell: top-level await, and schola.run inside a running loop
        result = eval(code, scope)
        if asyncio.iscoroutine(result):
            await result

    asyncio.run(notebook())
    assert scope["result"].status == "finished" and len(scope["result"].episodes) == 2
    assert scope["again"].ok and set(scope["frame"]["name"]) >= {"accuracy", "exam_accuracy"}
    assert len(scope["episodes"]) == 2
    assert (tmp_path / "runs" / "api-demo" / "metrics.json").is_file()
