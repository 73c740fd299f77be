"""`schola check` loads only what checking needs (issue 18): networkx (the viewer's layout), aiohttp (the first
HTTP request) and the roles' AutoGen messages cost a fifth of a second of CPU each at every check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("networkx", "aiohttp")


def test_check_imports_neither_networkx_nor_aiohttp(tmp_path: Path) -> None:
    code = (
        "import sys; from schola.cli import main; rc = main(['check', 'scenario=lbt', 'backend=scripted']); "
        f"print(rc, sorted(m for m in sys.modules if m in {HEAVY!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ok: scenario 'lbt'" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "0 []"


def test_a_graph_still_gives_the_viewer_its_networkx_graph() -> None:
    """Checking and running use plain adjacency dicts; the viewer's layout reads `Graph.g`, built on demand."""
    from pydantic import TypeAdapter

    from schola.graph import Graph, Node

    steps = TypeAdapter(list[Node]).validate_python(
        [
            {"id": "a", "kind": "agent", "role": "r", "prompt": "x", "output": "o1"},
            {"id": "b", "kind": "agent", "role": "r", "prompt": "{{ o1 }}", "output": "o2"},
        ]
    )
    g = Graph(steps)
    assert g.pred == {"a": [], "b": ["a"]} and g.succ == {"a": ["b"], "b": []}
    assert list(g.g.edges) == [("a", "b")]
