"""`schola view` without a browser: what the HTML file holds (self-contained, escaped, redacted, compressed), the
graph layout with call counts, runs that finished, stopped and resumed, sweeps, and the command's exit codes."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from schola.store import read_jsonl
from schola.view import build_html, main, script_json, write_report
from schola.view.layout import layout, step_of
from schola.view.payload import roles_of
from tests.browser.runs import HOSTILE, PAYLOADS, hostile_spec, loop_spec, quiz_spec, run, synthetic_run, write_yaml

DATA_BLOCK = re.compile(r'<script type="application/json" id="schola-data">(.*?)</script>', re.S)


def payload(html: str) -> dict[str, Any]:
    def no_nan(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(DATA_BLOCK.search(html).group(1), parse_constant=no_nan)  # type: ignore[union-attr]


def unpack(block: str) -> Any:
    return json.loads(gzip.decompress(base64.b64decode(block)))


def details(run: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in run["episodes"]["chunks"]:
        out |= unpack(block)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-episode quiz finished, stopped by the budget, and stopped then resumed (each with its own cache)."""
    root = tmp_path_factory.mktemp("runs")
    quiz = write_yaml(root / "quiz.yaml", quiz_spec(4))
    run(quiz, root / "finished", cache=root / "c1")
    run(quiz, root / "stopped", "budget.max_requests=5", cache=root / "c2")
    run(quiz, root / "resumed", "budget.max_requests=5", cache=root / "c3")
    run(quiz, root / "resumed", "budget.max_requests=100", f"resume={root / 'resumed'}", cache=root / "c3")
    return root


@pytest.fixture(scope="module")
def finished(runs: Path) -> tuple[Path, dict[str, Any]]:
    return runs / "finished", payload(write_report(runs / "finished").read_text(encoding="utf-8"))


def test_a_run_report_is_one_self_contained_file_whose_only_script_is_allowed_by_hash(runs: Path) -> None:
    html = write_report(runs / "finished").read_text(encoding="utf-8")
    assert html.count("<script") == 2 and "<link" not in html and "@import" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)  # type: ignore[union-attr]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp and "img-src data:" in csp
    assert not list((runs / "finished").glob("*.tmp"))


def test_the_run_page_carries_status_metrics_usage_and_personas(finished: tuple[Path, dict[str, Any]]) -> None:
    run_dir, page = finished
    run = page["runs"][0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert page["kind"] == "run" and run["status"]["status"] == "finished"
    ledger = json.loads((run_dir / "ledger.json").read_text())
    assert run["metrics"] == metrics["metrics"] and run["usage"] == {k: v for k, v in ledger.items() if k != "wall_s"}
    untimed = {k: v for k, v in run["usage"]["total"].items() if k not in ("latency_s", "queue_s")}
    assert untimed == metrics["usage"]["total"]  # the ledger's usage, timings included (metrics.json has none)
    assert run["roles"]["students.0"] == {"role": "student", "persona": "a careful student", "backend": "default"}
    assert run["roles"]["hasty"]["persona"] == "a hasty student"
    assert yaml.safe_load(run["config_yaml"])["scenario"]["name"] == "quiz"


def test_episodes_are_indexed_with_tokens_and_steps_from_the_transcript(finished: tuple[Path, dict[str, Any]]) -> None:
    run_dir, page = finished
    run = page["runs"][0]
    index = unpack(run["episodes"]["index"])
    lines = read_jsonl(run_dir / "transcript.jsonl")
    tokens: Counter[str] = Counter()
    for line in lines:
        tokens[line["episode"]] += line["prompt_tokens"] + line["completion_tokens"]
    assert [e["id"] for e in index] == ["q0", "q1", "q2", "q3"]
    assert {e["id"]: e["tokens"] for e in index} == dict(tokens)
    assert all(e["steps"] == 3 and e["status"] == "finished" for e in index)  # the tutor, then two students
    # every third answer is off by one, so the students' answers to q0 and q3 are wrong
    assert [e["scores"]["correct{student=hasty}"] for e in index] == [0.0, 1.0, 1.0, 0.0]
    conversation = details(run)["q1"]["steps"]
    assert [s["node"] for s in conversation] == [s["node"] for s in lines if s["episode"] == "q1"]
    assert sorted(s["node"] for s in conversation) == ["ask[0].solve", "ask[1].solve", "explain"]
    assert details(run)["q1"]["inputs"]["question"] == "What is 1 + 1?"


def test_the_graph_has_every_step_with_its_call_count(finished: tuple[Path, dict[str, Any]]) -> None:
    graph = finished[1]["runs"][0]["graphs"][0]
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {"explain", "ask", "ask.solve", "ask.ok"}
    assert nodes["explain"]["calls"] == 4 and nodes["ask.solve"]["calls"] == 8  # 4 episodes x 2 students
    assert nodes["ask.ok"]["calls"] == 0 and nodes["ask.ok"]["detail"] == "score · numeric_match"
    edges = {(e["from"], e["to"]): e["kind"] for e in graph["edges"]}
    assert edges == {("explain", "ask"): "next", ("ask", "ask.solve"): "map", ("ask.solve", "ask.ok"): "next"}
    assert nodes["ask.ok"]["y"] > nodes["ask.solve"]["y"] > nodes["ask"]["y"] > nodes["explain"]["y"]
    assert nodes["ask.solve"]["x"] > nodes["ask"]["x"]  # a map's steps sit right of it


def test_what_follows_a_map_is_placed_after_its_steps() -> None:
    steps = [{"id": "m", "kind": "map", "over": {"k": "range(2)"}, "collect": {"rs": "r"},
              "steps": [{"id": "a", "kind": "agent", "role": "x", "prompt": "p", "output": "r"}]},
             {"id": "j", "kind": "join", "inputs": ["rs"], "output": "n"}]  # fmt: skip
    nodes = {n["id"]: n for n in layout(steps, {})["nodes"]}
    assert nodes["j"]["y"] > nodes["m.a"]["y"] > nodes["m"]["y"]


def test_a_route_back_is_a_loop_edge_and_stats_match_by_step() -> None:
    steps = loop_spec()["graph"]
    lines = [{"node": "tutor_says", "latency_s": 0.2}, {"node": "tutor_says", "latency_s": 0.4}]
    from schola.view.layout import node_stats

    g = layout(steps, node_stats(lines))
    edges = {(e["from"], e["to"]): e["kind"] for e in g["edges"]}
    assert edges == {("tutor_says", "learner_says"): "next", ("learner_says", "more"): "next",
                     ("more", "tutor_says"): "loop", ("more", "wrap"): "route"}  # fmt: skip
    tutor = next(n for n in g["nodes"] if n["id"] == "tutor_says")
    assert tutor["calls"] == 2 and tutor["mean_latency_s"] == pytest.approx(0.3)
    assert "error" in layout([{"id": "x", "kind": "nope"}], {})


def test_step_of_drops_map_item_indices() -> None:
    assert step_of("teach[1].exam[12].solve") == "teach.exam.solve" and step_of("ask") == "ask"


def test_group_members_are_named_as_the_engine_names_them() -> None:
    roles = roles_of({"roles": {"t": {"role": "teacher"}, "s": [{"role": "student", "persona": "p"}, {"name": "bo"}]}})
    assert list(roles) == ["t", "s.0", "bo"] and roles["s.0"]["persona"] == "p"


def test_script_json_cannot_close_or_comment_out_its_script_tag() -> None:
    value = {"t": "</script><!--<script>\u2028&amp;", "</SCRIPT>": [1, 2.5, None]}
    text = script_json(value)
    assert not set(text) & {"<", ">", "&", "\u2028"} and json.loads(text) == value


def test_hostile_strings_are_carried_as_data_and_never_as_markup(tmp_path: Path) -> None:
    run_dir = run(write_yaml(tmp_path / "h.yaml", hostile_spec()), tmp_path / "r", cache=tmp_path / "c")
    html = build_html(run_dir)
    assert len(re.findall("</script", html, re.I)) == 2  # the two closing tags of the page's own blocks
    for token in ("<img", "<svg", "<!--", "<a "):
        assert token not in html, token
    assert not set(DATA_BLOCK.search(html).group(1)) & {"<", ">", "&"}  # type: ignore[union-attr]
    run_page = payload(html)["runs"][0]
    assert run_page["description"] == HOSTILE and run_page["roles"]["student"]["persona"] == HOSTILE
    assert run_page["caption"] == HOSTILE
    assert [e["id"] for e in unpack(run_page["episodes"]["index"])] == [PAYLOADS[1], "plain"]
    assert details(run_page)[PAYLOADS[1]]["steps"][0]["text"].startswith(HOSTILE)


def test_secrets_are_redacted_again_in_config_and_transcript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = synthetic_run(tmp_path / "r", 3)
    monkeypatch.setenv("VIEW_TEST_KEY", "zz-env-secret-value-42")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["backend"] |= {"api_key": "sk-live-abcdef0123456789", "api_key_env": "VIEW_TEST_KEY",
                          "headers": {"X-Token": "hdr-secret-777"}, "base_url": "https://user:pw-secret-9@host/v1"}  # fmt: skip
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    lines = read_jsonl(run_dir / "transcript.jsonl")
    lines[0]["prompt"] = "the key is zz-env-secret-value-42"
    (run_dir / "transcript.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    html = build_html(run_dir)
    everything = html + json.dumps(details(payload(html)["runs"][0]))
    for secret in ("sk-live-abcdef0123456789", "zz-env-secret-value-42", "hdr-secret-777", "pw-secret-9"):
        assert secret not in everything, secret
    assert "the key is ***" in everything and "VIEW_TEST_KEY" in everything


def test_nan_values_become_null_and_plots_are_inlined(tmp_path: Path) -> None:
    run_dir = synthetic_run(tmp_path / "r", 2)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["metrics"][0]["value"] = float("nan")
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    (run_dir / "accuracy.png").write_bytes(png)
    run_page = payload(build_html(run_dir))["runs"][0]
    assert run_page["metrics"][0]["value"] is None
    assert run_page["plots"][0]["name"] == "accuracy.png"
    assert base64.b64decode(run_page["plots"][0]["uri"].removeprefix("data:image/png;base64,")) == png


def test_a_large_run_travels_compressed_in_blocks_of_a_hundred(tmp_path: Path) -> None:
    run_dir = synthetic_run(tmp_path / "r", 2000)
    html = build_html(run_dir)
    raw = (run_dir / "transcript.jsonl").stat().st_size + (run_dir / "results.jsonl").stat().st_size
    run_page = payload(html)["runs"][0]
    assert len(run_page["episodes"]["chunks"]) == 20 and len(unpack(run_page["episodes"]["index"])) == 2000
    assert len(html.encode()) < raw / 4, (len(html), raw)
    assert set(unpack(run_page["episodes"]["chunks"][19])) == {f"e{i}" for i in range(1900, 2000)}


def test_a_stopped_run_shows_its_unfinished_episodes_and_how_to_continue(runs: Path) -> None:
    run_page = payload(build_html(runs / "stopped"))["runs"][0]
    assert run_page["status"]["status"] == "budget" and "resume=" in run_page["status"]["hint"]
    index = unpack(run_page["episodes"]["index"])
    finished = {r["episode"] for r in read_jsonl(runs / "stopped" / "results.jsonl")}
    started = {t["episode"] for t in read_jsonl(runs / "stopped" / "transcript.jsonl")}
    assert started - finished  # the budget stopped it mid-episode
    assert {e["id"] for e in index if e["status"] == "unfinished"} == started - finished
    assert {e["id"] for e in index if e["status"] == "finished"} == finished


def test_a_resumed_run_shows_every_episode_once_and_finished(runs: Path) -> None:
    run_page = payload(build_html(runs / "resumed"))["runs"][0]
    index = unpack(run_page["episodes"]["index"])
    assert run_page["status"]["status"] == "finished"
    assert sorted(e["id"] for e in index) == ["q0", "q1", "q2", "q3"]
    assert {e["status"] for e in index} == {"finished"} and all(e["steps"] == 3 for e in index)


def test_view_of_a_sweep_compares_its_runs(tmp_path: Path, cli_out: Any) -> None:
    quiz = write_yaml(tmp_path / "quiz.yaml", quiz_spec(3))
    for seed in (0, 1):
        run(quiz, tmp_path / "sweep" / str(seed), f"seed={seed}", cache=tmp_path / "c")
    code, out = cli_out(str(tmp_path / "sweep"), "--out", str(tmp_path / "s.html"))
    assert code == 0 and "written:" in out
    page = payload((tmp_path / "s.html").read_text(encoding="utf-8"))
    assert page["kind"] == "sweep" and [r["name"] for r in page["runs"]] == ["0", "1"]
    assert page["sweep"]["varying"] == ["seed"]
    assert {(r["run"], r["seed"]) for r in page["sweep"]["rows"]} == {
        ("0", 0),
        ("1", 1),
        ("pooled over 2 seeds", "pooled"),
    }
    assert page["sweep"]["plot"].startswith("data:image/png;base64,iVBOR")


@pytest.fixture
def cli_out(capsys: pytest.CaptureFixture[str]) -> Any:
    def call(*args: str) -> tuple[int, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return call


def test_bad_paths_and_flags_exit_2_with_a_message_and_no_file(tmp_path: Path, cli_out: Any) -> None:
    code, out = cli_out(str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere is not a folder" in out
    (tmp_path / "empty").mkdir()
    code, out = cli_out(str(tmp_path / "empty"))
    assert code == 2 and "no runs" in out and not (tmp_path / "empty" / "report.html").exists()
    run_dir = synthetic_run(tmp_path / "r", 1)
    code, out = cli_out(str(run_dir), "--out", str(tmp_path))
    assert code == 2 and "is a folder" in out
    code, out = cli_out(str(run_dir), "--out", str(tmp_path / "missing" / "x.html"))
    assert code == 2 and "does not exist" in out
    (run_dir / "metrics.json").write_text("{not json")
    code, out = cli_out(str(run_dir))
    assert code == 2 and "metrics.json" in out and not (run_dir / "report.html").exists()
    assert cli_out(str(run_dir), "--bogus")[0] == 2


def test_calls_made_by_run_level_stages_are_listed_apart(tmp_path: Path) -> None:
    run_dir = synthetic_run(tmp_path / "r", 2)
    stage_call = {"episode": "-stage-", "round": 0, "node": "-", "agent": "tutor", "prompt": "rank", "text": "1 > 0",
                  "prompt_tokens": 5, "completion_tokens": 3, "latency_s": 0.5, "cached": False}  # fmt: skip
    with open(run_dir / "transcript.jsonl", "a") as f:
        f.write(json.dumps(stage_call) + "\n")
    run_page = payload(build_html(run_dir))["runs"][0]
    index = unpack(run_page["episodes"]["index"])
    assert [(e["id"], e["status"], e["tokens"]) for e in index][-1] == ("-stage-", "stage", 8)
    assert run_page["graphs"][-1] == {
        "name": "outside the graph",
        "calls": {"-": {"calls": 1, "mean_latency_s": 0.5, "mean_queue_s": 0.0}},
    }
