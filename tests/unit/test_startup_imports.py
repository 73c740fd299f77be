"""`schola check` loads only what checking needs (issue 18): networkx (the viewer's layout), aiohttp (the first
HTTP request), AutoGen (the backends' clients and the roles' messages: the plan reads each backend's config, declared
apart from its client), llama.cpp (the embedded model), rich (check prints one plain line) and asyncio (with ssl:
the first graph run loads it) each cost from a twentieth to a quarter of a second of CPU at every check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HEAVY = ("networkx", "aiohttp", "autogen_core", "llama_cpp", "rich", "asyncio")


@pytest.mark.parametrize("backend", [[], ["backend=scripted"]])  # [] the default backend: embedded
def test_check_imports_only_what_checking_needs(tmp_path: Path, backend: list[str]) -> None:
    code = (
        f"import sys; from schola.cli import main; rc = main(['check', 'scenario=lbt', *{backend!r}]); "
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


def test_hydra_composes_without_reading_a_scenario_file(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The composition parses the scenario itself and Hydra composes an empty one (`scenario=_parsed`, a ConfigStore
    node): with `~scenario` Hydra read the default scenario's file (lbt.yaml, 9 KB) into OmegaConf for its package
    header before deleting it, 40% of compose's CPU. The composed config is the same, the scenario still last."""
    from omegaconf import OmegaConf

    read: list[str] = []
    load = OmegaConf.load

    def spy(f: Any) -> Any:
        read.append(str(getattr(f, "name", f)))
        return load(f)

    monkeypatch.setattr(OmegaConf, "load", staticmethod(spy))
    code, out = cli("check", "--cfg", "scenario=lbt", "backend=scripted")
    assert code == 0, out
    assert any(f.endswith("config.yaml") for f in read)  # Hydra still composes the rest
    assert [f for f in read if "scenario" in Path(f).parts] == []
    assert out.index("\nscenario:\n") > out.index("\ncache:\n") > out.index("backend:\n") == 0
