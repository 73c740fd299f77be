"""Shared by the reliability tests: `schola(...)` in-process with its output captured, and the scenario texts the
fuzz and hostile-output tests start from."""

from __future__ import annotations

import contextlib
import io
import resource
import signal
import time
from pathlib import Path

import pytest

from schola.cli import main
from tests.conftest import SCRIPTED
from tests.unit.test_cli import PEER_REVIEW

CONF = Path(__file__).parents[2] / "conf" / "scenario"


class TookTooLong(BaseException):
    """A command ran past its time limit (an unbounded input); raised in the middle of it by SIGALRM."""


def schola(*args: str, limit_s: float = 60.0, limit_mb: int = 2048) -> tuple[int, str, float]:
    """`schola ARGS` in-process: (exit code, stdout + stderr, seconds). An exception escaping main() is a crash;
    past `limit_s` the command is interrupted with TookTooLong, and past `limit_mb` more memory it gets a
    MemoryError (an unbounded input must not take the machine's memory, the other tests' included)."""

    def interrupt(*_: object) -> None:
        raise TookTooLong(f"schola {' '.join(args)[:300]} took more than {limit_s:g} s")

    buffer = io.StringIO()
    start = time.monotonic()
    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, limit_s, 1.0)  # again every second: a handler's exception can be swallowed
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (in_use + limit_mb * 2**20, hard))
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            code = main(list(args))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, buffer.getvalue(), time.monotonic() - start


@pytest.fixture(scope="session")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The scenario texts mutants start from: the README's example and every bundled scenario that `check`
    accepts as a file of its own right now."""
    folder = tmp_path_factory.mktemp("bases")
    found = {"readme": PEER_REVIEW}
    for path in sorted(CONF.glob("*.yaml")):
        copy = folder / path.name
        copy.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
        if schola("check", str(copy), *SCRIPTED)[0] == 0:
            found[path.stem] = copy.read_text(encoding="utf-8")
    assert {"readme", "lbt"} <= set(found), found.keys()
    return found
