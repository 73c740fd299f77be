"""`schola view` pages in a real headless Chromium: the run page, an episode's conversation, filtering and sorting,
loop iterations, the graph, a sweep, stopped and resumed runs, a 10,000-episode run, and XSS payloads that stay
inert with and without the page's Content-Security-Policy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from schola.store import read_jsonl
from schola.view import write_report
from tests.browser.cdp import Chromium
from tests.browser.runs import HOSTILE, PAYLOADS, hostile_spec, loop_spec, quiz_spec, run, synthetic_run, write_yaml

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reports of real runs on the scripted backend (each run with its own cache)."""
    root = tmp_path_factory.mktemp("view")
    quiz4, quiz30 = write_yaml(root / "quiz4.yaml", quiz_spec(4)), write_yaml(root / "quiz30.yaml", quiz_spec(30))
    run(quiz4, root / "finished", cache=root / "c1")
    run(quiz30, root / "quiz30", cache=root / "c1")
    run(quiz4, root / "stopped", "budget.max_requests=5", cache=root / "c2")
    run(quiz4, root / "resumed", "budget.max_requests=5", cache=root / "c3")
    run(quiz4, root / "resumed", "budget.max_requests=100", f"resume={root / 'resumed'}", cache=root / "c3")
    run(write_yaml(root / "loop.yaml", loop_spec()), root / "loop", cache=root / "c1")
    run(write_yaml(root / "hostile.yaml", hostile_spec()), root / "hostile", cache=root / "c1")
    for seed in (0, 1):
        run(quiz4, root / "sweep" / str(seed), f"seed={seed}", cache=root / "c4")
    for name in ("finished", "quiz30", "stopped", "resumed", "loop", "hostile"):
        write_report(root / name)
    return root


def shot(browser: Chromium, path: Path) -> None:
    browser.screenshot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_run_page_shows_status_metrics_and_usage_by_role(browser: Chromium, runs: Path, tmp_path: Path) -> None:
    browser.open(runs / "finished" / "report.html")
    assert browser.texts("#run-status") == ["finished"]
    rows = browser.eval(
        "[...document.querySelectorAll('#metrics tbody tr')].map((r) => [...r.cells].map((c) => c.textContent))"
    )
    expected = [[m["name"], ", ".join(f"{k}={v}" for k, v in m["labels"].items()), f"{m['value']:.3f}",
                 f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]", str(m["n"])]
                for m in json.loads((runs / "finished" / "metrics.json").read_text())["metrics"]]  # fmt: skip
    assert rows == expected and len(rows) == 2
    assert browser.texts("#metrics-caption") == ["correct: a student's answer matches the sum"]
    usage = browser.eval(
        "[...document.querySelectorAll('#usage tbody tr')].map((r) => [...r.cells].slice(0, 4).map((c) => c.textContent))"
    )
    assert ["hasty", "student", "a hasty student", "4"] in usage and [
        "tutor",
        "teacher",
        "a patient tutor",
        "4",
    ] in usage
    assert browser.errors() == []
    shot(browser, tmp_path / "run.png")


def test_an_episode_opens_as_its_conversation_grouped_by_map_item(
    browser: Chromium, runs: Path, tmp_path: Path
) -> None:
    browser.open(runs / "finished" / "report.html", fragment="episodes")
    assert browser.texts("#episodes tbody td:first-child") == ["q0", "q1", "q2", "q3"]
    browser.click('#episodes tr[data-episode="q1"]')
    assert browser.texts("#episode-id") == ["q1"]
    lines = {t["node"]: t for t in read_jsonl(runs / "finished" / "transcript.jsonl") if t["episode"] == "q1"}
    assert browser.texts("#conversation .step .node") == ["explain", "ask[0].solve", "ask[1].solve"]
    assert browser.texts("#conversation .step .agent") == ["tutor", "students.0", "hasty"]
    assert browser.texts("#conversation .step .persona") == ["a patient tutor", "a careful student", "a hasty student"]
    assert browser.texts("#conversation details.map > summary") == ["map ask · 2 items"]
    assert browser.texts("#conversation details.reply pre") == [
        lines[n]["text"] for n in ("explain", "ask[0].solve", "ask[1].solve")
    ]
    assert browser.texts("#conversation details.prompt pre")[0] == lines["explain"]["prompt"]
    assert browser.eval("[...document.querySelectorAll('#conversation details.prompt')].every((d) => !d.open)")
    tokens = f"{lines['explain']['prompt_tokens']} + {lines['explain']['completion_tokens']} tokens"
    assert tokens in browser.texts("#conversation .step:first-child .badge")
    shot(browser, tmp_path / "episode.png")
    browser.click("#back")
    assert len(browser.texts("#episodes tbody tr")) == 4


def test_episodes_filter_by_text_and_score_and_sort(browser: Chromium, runs: Path, tmp_path: Path) -> None:
    results = read_jsonl(runs / "quiz30" / "results.jsonl")
    browser.open(runs / "quiz30" / "report.html", fragment="episodes")
    assert browser.texts("#episode-count") == ["30 of 30 listed · 30 of 30 episodes finished"]
    browser.fill("#filter-text", "+ 3?")
    by_text = [r["episode"] for r in results if "+ 3?" in r["inputs"]["question"]]
    assert by_text == ["q3", "q10", "q17", "q24"]
    assert browser.texts("#episodes tbody td:first-child") == by_text
    browser.fill("#filter-score", "correct{student=hasty}")
    browser.fill("#filter-max", "0")
    wrong = [r["episode"] for r in results if r["scores"]["correct{student=hasty}"] == 0]
    assert len(wrong) == 10  # every third answer is off by one
    assert browser.texts("#episodes tbody td:first-child") == [e for e in by_text if e in wrong] == ["q3", "q24"]
    shot(browser, tmp_path / "filtered.png")
    browser.fill("#filter-text", "")
    assert browser.texts("#episode-count") == ["10 of 30 listed · 30 of 30 episodes finished"]
    browser.fill("#filter-max", "")
    key = "correct{student=hasty}"
    browser.click(f'#episodes th[data-key="score:{key}"]')
    ascending = [r["episode"] for r in sorted(results, key=lambda r: r["scores"][key])]  # stable, as in the page
    assert browser.texts("#episodes tbody td:first-child") == ascending and ascending[:2] == ["q0", "q3"]
    browser.click(f'#episodes th[data-key="score:{key}"]')
    descending = [r["episode"] for r in sorted(results, key=lambda r: -r["scores"][key])]
    assert browser.texts("#episodes tbody td:first-child") == descending and descending[:2] == ["q1", "q2"]


def test_loop_iterations_are_numbered(browser: Chromium, runs: Path, tmp_path: Path) -> None:
    browser.open(runs / "loop" / "report.html", fragment="episodes")
    browser.click('#episodes tr[data-episode="d0"]')
    nodes = browser.texts("#conversation .step .node")
    assert nodes.count("tutor_says") == 3 and nodes.count("learner_says") == 3 and nodes[-1] == "wrap"  # max_iters=2
    badges = browser.eval("[...document.querySelectorAll('#conversation .step')].map((s) => "
                          "[s.querySelector('.node').textContent, (s.querySelector('.iteration') || {}).textContent || ''])")  # fmt: skip
    assert [b for n, b in badges if n == "tutor_says"] == [
        "iteration 0",
        "iteration 1",
        "iteration 2",
    ]  # as `{{ iteration }}`
    assert dict(badges)["wrap"] == ""
    shot(browser, tmp_path / "loop.png")


def test_the_graph_is_drawn_with_call_counts_and_mean_latency(browser: Chromium, runs: Path, tmp_path: Path) -> None:
    browser.open(runs / "finished" / "report.html", fragment="graph")
    assert len(browser.texts("#graph-page svg g.node")) == 4 and len(browser.texts("#graph-page svg path.edge")) == 3
    stats = browser.texts("#graph-page svg text.stats")
    assert len(stats) == 2 and stats[0].startswith("4 calls · service ") and stats[1].startswith("8 calls · service ")
    assert browser.texts("#graph-page svg text.name") == ["explain", "ask", "solve", "ok"]
    shot(browser, tmp_path / "graph.png")


def test_the_sweep_page_puts_runs_side_by_side(browser: Chromium, runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep.html"
    from schola.view import main

    assert main([str(runs / "sweep"), "--out", str(out)]) == 0
    browser.open(out)
    assert browser.eval("[...document.querySelectorAll('#sweep-config tr')].map((r) => [...r.cells].map((c) => c.textContent))") == [
        ["key", "0", "1", "pooled over 2 seeds"], ["seed", "0", "1", "pooled"]]  # fmt: skip
    assert browser.texts("#sweep-metrics thead th") == ["metric", "labels", "0", "1", "pooled over 2 seeds"]
    assert browser.texts("#sweep-page h1")[0].startswith("Sweep: 2 runs ")  # the pooled column is no run
    assert len(browser.texts("#sweep-metrics tbody tr")) == 2
    assert browser.wait_for(
        "(() => { const i = document.querySelector('#sweep-page img'); return i && i.complete && i.naturalWidth > 0; })()"
    )
    shot(browser, tmp_path / "sweep.png")
    browser.fill("#run-select", "1")
    assert browser.texts("#run-summary")[0].startswith(str(runs / "sweep" / "1") + " · ")


def test_a_stopped_run_says_why_and_a_resumed_one_is_whole(browser: Chromium, runs: Path) -> None:
    browser.open(runs / "stopped" / "report.html")
    assert browser.texts("#run-status") == ["budget"]
    assert "resume=" in browser.eval("document.getElementById('run-page').textContent")
    counted = browser.texts("#run-summary")[0].split(" · ")[1]  # one count, one meaning, on both pages
    assert re.fullmatch(r"\d of 4 episodes finished \(.*unfinished.*\)", counted)
    browser.click("#tab-episodes")
    listed = len(browser.texts("#episodes tbody tr"))
    assert browser.texts("#episode-count") == [f"{listed} of {listed} listed · {counted}"]
    assert "unfinished" in browser.texts("#episodes tbody td:nth-child(3)")
    browser.open(runs / "resumed" / "report.html", fragment="episodes")
    assert browser.texts("#episodes tbody td:nth-child(3)") == ["finished"] * 4


def test_a_10000_episode_run_opens_in_seconds(browser: Chromium, tmp_path: Path) -> None:
    report = write_report(synthetic_run(tmp_path / "big", 10_000))
    seconds = browser.open(report, fragment="episodes")
    print(f"\n10,000 episodes: {report.stat().st_size / 1e6:.2f} MB, episodes table ready in {seconds:.2f} s")
    assert seconds < 10
    assert len(browser.texts("#episodes tbody tr")) == 100 and browser.texts("#page-info") == ["page 1 of 100"]
    browser.click("#page-next")
    assert browser.texts("#episodes tbody td:first-child")[0] == "e100"
    browser.fill("#filter-text", "question 9999:")
    assert browser.texts("#episodes tbody td:first-child") == ["e9999"]
    browser.click('#episodes tr[data-episode="e9999"]')
    assert browser.texts("#conversation .step .node") == ["explain", "ask[0].solve", "ask[1].solve"]
    shot(browser, tmp_path / "big.png")


def hostile_page(runs: Path, tmp_path: Path, *, csp: bool) -> Path:
    html = (runs / "hostile" / "report.html").read_text(encoding="utf-8")
    if not csp:  # the DOM discipline alone must hold
        html, removed = re.subn(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
        assert removed == 1
    path = tmp_path / "hostile.html"
    path.write_text(html, encoding="utf-8")
    return path


@pytest.mark.parametrize("csp", [True, False], ids=["with-csp", "without-csp"])
def test_xss_payloads_in_data_and_replies_stay_inert(browser: Chromium, runs: Path, tmp_path: Path, csp: bool) -> None:
    browser.open(hostile_page(runs, tmp_path, csp=csp))
    title = browser.eval("document.title")
    assert title == "hostile · finished · schola view"
    expand = "document.querySelectorAll('details').forEach((d) => { d.open = true; })"
    browser.eval(expand)
    browser.click("#tab-episodes")
    for episode in (PAYLOADS[1], "plain"):
        browser.click(f"#episodes tr[data-episode={json.dumps(episode)}]")
        browser.eval(expand)
        page_text = browser.eval("document.getElementById('conversation').textContent")
        assert all(p in page_text for p in PAYLOADS)  # shown as text, verbatim
        browser.click("#back")
    browser.fill("#filter-text", "<img src=x")
    assert browser.texts("#episode-count") == ["2 of 2 listed · 2 of 2 episodes finished"]
    browser.click('#episodes th[data-key="id"]')
    browser.click("#tab-graph")
    browser.click("#tab-run")
    browser.eval(expand)
    assert browser.texts("#metrics-caption") == [HOSTILE]  # the caption too, as text
    assert browser.eval("window.pwned") is None and browser.eval("document.title") == title
    assert browser.eval("document.querySelectorAll('img, a, iframe, object, embed, svg [onload]').length") == 0
    assert browser.eval("document.scripts.length") == 2
    assert browser.errors() == []  # with the CSP, a blocked handler would have logged a violation
    shot(browser, tmp_path / "hostile.png")
    if not csp:  # the payloads are live when parsed as HTML: the checks above would have seen them run
        browser.eval(f"document.body.insertAdjacentHTML('beforeend', {json.dumps(PAYLOADS[1])})")
        assert browser.wait_for("window.pwned") == "img"
