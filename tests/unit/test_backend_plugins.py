"""A backend is declared by its config (issue 18, start-up): the `schola.backends` entry point names a
`BackendConfig` whose `client` names the client class, so `check` validates a backend's keys without importing the
client or AutoGen. A plugin written before (the entry point names a client class with a `Config`) still runs. The
plugin is `tests/fixtures/schola-echo-plugin`, installed into a folder of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from schola import plugins
from schola.backends.config import BackendConfig

ROOT = Path(__file__).parents[2]
SCENARIO = """\
name: echoing
data:
  records:
    - {id: a, question: "hello there"}
roles:
  student: {role: student, backend: e}
graph:
  - {id: say, kind: agent, role: student, prompt: "say {{ question }}", output: reply}
"""


def python(code: str, *, plugin: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = [str(plugin), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "SCHOLA_CACHE_DIR": str(cwd / "c")}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_check_reads_a_plugin_backends_config_without_importing_its_client(plugin_path: Path, tmp_path: Path) -> None:
    (tmp_path / "echoing.yaml").write_text(SCENARIO)
    code = (
        "import sys; from schola.cli import main; "
        "rc = main(['check', 'echoing.yaml', 'backend=scripted', '+backends.e={kind: echo, prefix: ECHO}']); "
        "print(rc, sorted(m for m in sys.modules if m in ('schola_echo.echo', 'autogen_core')))"
    )
    done = python(code, plugin=plugin_path, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backends default=scripted, e=echo" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "0 []"


@pytest.mark.parametrize(("kind", "prefix"), [("echo", "ECHO"), ("echo_before", "BEFORE")])
def test_a_plugin_backend_runs_declared_either_way(plugin_path: Path, tmp_path: Path, kind: str, prefix: str) -> None:
    """`echo` names its config (its client is imported by the run), `echo_before` its client class (as plugins
    did before): both run."""
    (tmp_path / "echoing.yaml").write_text(SCENARIO)
    code = (
        "import sys; from schola.cli import main; "
        f"sys.exit(main(['run', 'echoing.yaml', 'backend=scripted', '+backends.e={{kind: {kind}, prefix: {prefix}}}', "
        "'hydra.run.dir=out']))"
    )
    done = python(code, plugin=plugin_path, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    reply = json.loads((tmp_path / "out" / "transcript.jsonl").read_text().splitlines()[0])["text"]
    assert reply == f"{prefix} say hello there"


class GhostConfig(BackendConfig):
    """A backend whose config names a client that is not installed."""

    client: ClassVar[str | None] = "no_such_package.clients:Ghost"
    kind: Literal["ghost"] = "ghost"


class UnnamedConfig(BackendConfig):
    """A config that names no client."""

    kind: Literal["unnamed"] = "unnamed"


@pytest.mark.parametrize(
    ("kind", "config", "expected"),
    [
        ("ghost", GhostConfig, "names its client 'no_such_package.clients:Ghost': expected 'module:Class'"),
        ("unnamed", UnnamedConfig, "is neither a config class naming its client"),
    ],
)
def test_a_backend_whose_client_cannot_be_found_is_refused_at_check(
    cli: Any, kind: str, config: type[BackendConfig], expected: str
) -> None:
    with plugins.backends.registered(kind, config):
        code, out = cli("check", "scenario=lbt", "backend=scripted", f"+backends.x={{kind: {kind}}}")
    assert code == 2, out
    assert expected in out and "backends.x.kind" in out and "Traceback" not in out


class MisnamedConfig(BackendConfig):
    """A backend whose config names a client its (installed) module does not define."""

    client: ClassVar[str | None] = "schola.backends.scripted:NoSuchClient"
    kind: Literal["misnamed"] = "misnamed"


def test_a_client_that_fails_to_load_when_the_run_builds_it_is_exit_2_naming_the_key(cli: Any, tmp_path: Path) -> None:
    with plugins.backends.registered("misnamed", MisnamedConfig):
        assert cli("check", "scenario=lbt", "backend=scripted", "+backends.x={kind: misnamed}")[0] == 0
        code, out = cli("run", "scenario=lbt", "backend=scripted", "+backends.x={kind: misnamed}", "run.episodes=1",
                        f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert code == 2, out
    assert "its client schola.backends.scripted:NoSuchClient failed to load" in out and "backends.x.kind" in out
    assert "Traceback" not in out
