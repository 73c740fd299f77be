"""`schola view --serve` in a real headless Chromium while a scripted run (each request slowed) goes on in another
process: the episode count grows on the open page, and an episode that finished mid-run opens as a conversation
before the run ends."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.browser.cdp import Chromium
from tests.browser.runs import start_run

pytestmark = pytest.mark.browser
EPISODES = 6
FINISHED = "[...document.querySelectorAll('#episodes tbody tr')].filter((r) => r.cells[2].textContent === 'finished')"


def test_the_live_page_shows_episodes_as_they_finish(
    browser: Chromium, served: tuple[str, Path], tmp_path: Path
) -> None:
    url, run_dir = served
    proc = start_run(tmp_path, run_dir, EPISODES, latency_s=0.4)  # 3 requests an episode: about 1.2 s each
    try:
        browser.page("Page.navigate", url=url + "#episodes")
        browser.wait_for("document.body && document.body.dataset.ready === '1'", timeout=30)
        counts: list[int] = []
        while proc.poll() is None and len(counts) < 200:
            counts.append(browser.eval(f"{FINISHED}.length"))
            if counts[-1] >= 1:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before the page showed an episode"
        # an episode that finished while the run goes opens as its conversation
        eid = browser.eval(f"{FINISHED}[0].dataset.episode")
        browser.eval(f"{FINISHED}[0].click()")
        browser.wait_for("document.querySelectorAll('#conversation .step').length > 0")
        assert browser.texts("#episode-id") == [eid]
        assert proc.poll() is None, "the run ended before the episode was shown"
        # the page follows the run: the open episode stays open as others finish, then back to the table
        browser.wait_for("document.getElementById('live').textContent.startsWith('live · checked')")
        assert browser.texts("#episode-id") == [eid]
        browser.click("#back")
        seen: list[int] = []
        while proc.poll() is None:
            seen.append(browser.eval(f"{FINISHED}.length"))
            time.sleep(0.2)
        assert proc.wait(timeout=60) == 0
        assert len(set(seen)) >= 2 and seen == sorted(seen), seen  # it grew on the open page
        browser.wait_for(f"{FINISHED}.length === {EPISODES}", timeout=15)
        browser.click("#tab-run")
        browser.wait_for("document.getElementById('run-status').textContent === 'finished'", timeout=15)
        assert browser.errors() == []  # no CSP violation (the page fetches from its own server only), no exception
    finally:
        if proc.poll() is None:
            proc.kill()
