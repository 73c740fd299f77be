"""Headless Chromium for the viewer's browser tests: one browser per session, skipped with the reason when no
Chromium is installed (`make test` installs Debian's `chromium`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
