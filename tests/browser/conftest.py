"""Headless Chromium for the viewer's browser tests: one browser per session, skipped with the reason when no
Chromium is installed (`make test` installs Debian's `chromium`); and `served`, the live viewer on a run folder."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from schola.view import page
from schola.view.serve import make_server
from tests.browser.cdp import Chromium, find_chromium


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium: install it (apt-get install -y chromium; make test does) or set SCHOLA_CHROMIUM")
    browser = Chromium(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.close()


@pytest.fixture
def browser(chromium: Chromium) -> Chromium:
    chromium.events.clear()
    return chromium


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`schola view --serve` on an empty run folder (a run started into it shows up live): (its URL, the folder)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    server = make_server(run_dir, 0, page)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", run_dir
    server.shutdown()
    server.server_close()
