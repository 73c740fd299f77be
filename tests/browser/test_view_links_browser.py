"""Links to one episode in a real headless Chromium: `report.html#episode=<id>` opens that episode's conversation,
the episode table's copy-link action gives that link (in a sweep's report it names the run too), and on the live
page a link to an episode not yet written opens it once the run writes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from schola.view import main, write_report
from tests.browser.cdp import Chromium
from tests.browser.runs import quiz_spec, run, start_run, write_yaml

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("links")
    quiz = write_yaml(root / "quiz.yaml", quiz_spec(4))
    write_report(run(quiz, root / "one", cache=root / "c"))
    for seed in (0, 1):
        run(quiz, root / "sweep" / str(seed), f"seed={seed}", cache=root / "c")
    assert main([str(root / "sweep"), "--out", str(root / "sweep" / "report.html")]) == 0
    return root


def test_a_hash_link_opens_that_episode(browser: Chromium, runs: Path) -> None:
    browser.open(runs / "one" / "report.html", fragment="episode=q2")
    assert browser.texts("#episode-id") == ["q2"]
    assert browser.eval("document.querySelectorAll('#conversation .step').length") > 0
    browser.open(runs / "one" / "report.html", fragment="episode=nope")  # a stale link says so, over the table
    assert browser.texts("#episode-missing") == ["no episode 'nope' in this run"]
    assert browser.texts("#episodes tbody td:first-child") == ["q0", "q1", "q2", "q3"]
    assert browser.errors() == []


def test_the_copy_link_action_gives_a_link_that_opens_the_episode(browser: Chromium, runs: Path) -> None:
    report = runs / "one" / "report.html"
    browser.open(report, fragment="episodes")
    link = browser.eval("document.querySelector('#episodes tr[data-episode=\"q3\"] button.copy-link').title")
    assert link == report.resolve().as_uri() + "#episode=q3"
    browser.click('#episodes tr[data-episode="q3"] button.copy-link')  # copying does not open the row
    assert browser.texts("#episode-id") == []
    browser.click('#episodes tr[data-episode="q1"]')  # an opened episode's address is its link
    assert browser.eval("location.hash") == "#episode=q1"
    browser.page("Page.navigate", url="about:blank")
    browser.open(report, fragment=link.partition("#")[2])
    assert browser.texts("#episode-id") == ["q3"]
    assert browser.errors() == []


def test_a_sweep_link_names_the_run(browser: Chromium, runs: Path) -> None:
    report = runs / "sweep" / "report.html"
    browser.open(report, fragment="episodes")
    name = browser.eval("document.querySelector('#run-select option:checked').textContent.split(' — ')[0]")
    link = browser.eval("document.querySelector('#episodes tr[data-episode=\"q0\"] button.copy-link').title")
    assert link.endswith(f"#run={name}&episode=q0")
    other = browser.eval("document.querySelector('#run-select option[value=\"1\"]').textContent.split(' — ')[0]")
    browser.open(report, fragment=f"run={other}&episode=q1")
    assert browser.texts("#episode-id") == ["q1"]
    assert browser.eval("document.getElementById('run-select').value") == "1"
    assert browser.errors() == []


def test_a_live_link_opens_the_episode_once_it_is_written(
    browser: Chromium, served: tuple[str, Path], tmp_path: Path
) -> None:
    url, run_dir = served
    proc = start_run(tmp_path, run_dir, 4, latency_s=0.3)  # one request at a time: q3 is written last
    try:
        browser.page("Page.navigate", url=url + "#episode=q3")
        browser.wait_for("document.body && document.body.dataset.ready === '1'", timeout=30)
        browser.wait_for("!!document.getElementById('episode-missing')", timeout=30)
        assert proc.poll() is None, "the run ended before the page waited for the episode"
        browser.wait_for("(document.getElementById('episode-id') || {}).textContent === 'q3'", timeout=60)
        assert proc.wait(timeout=60) == 0
        assert browser.errors() == []
    finally:
        if proc.poll() is None:
            proc.kill()
