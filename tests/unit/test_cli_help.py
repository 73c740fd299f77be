"""A CLI that explains its keys (issue 20): `schola run --help` lists the config groups and every top-level key
with its default and a line; `schola check --cfg` prints the composed config, secrets redacted; `schola show
RUN_DIR --episode ID` prints one episode's transcript; `schola list` says a whole line about every plugin."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import schola
from schola import plugins
from schola.cli import describe
from schola.schema import Config

SCRIPTED = ["scenario=lbt", "backend=scripted"]


def test_run_help_lists_the_config_groups_and_every_key_with_its_default(cli: Any) -> None:
    from schola.schema import config_keys

    code, out = cli("run", "--help")
    assert code == 0
    conf = Path(schola.__file__).parent.parent / "conf"
    for group, default in (("scenario", "lbt"), ("backend", "embedded")):
        assert f"  {group}={default}  " in out
        names = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        assert f"one of: {', '.join(names)}" in out
    keys = [(k, v, about) for k, v, about in config_keys(Config) if k.split(".")[0] not in ("scenario", "backend")]
    assert len(keys) >= 15 and ("run.episodes", "null", "run the first N episodes; null: all") in keys
    for key, default, about in keys:
        assert about, f"{key} has no description in schola/schema.py"
        assert re.search(rf"^  {re.escape(key)}={re.escape(default)} +{re.escape(about)}$", out, re.M), key
    assert ("cache.enabled", "true", "answer a request seen before from the response cache") in keys
    code, out = cli("check", "-h")  # check takes the same keys
    assert code == 0 and "  budget.max_requests=null " in out


def test_check_cfg_prints_the_composed_config_with_secrets_redacted(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-0123456789abcdef")
    code, out = cli("check", *SCRIPTED, "run.episodes=2", "scenario.caption=see sk-live-0123456789abcdef", "--cfg")
    assert code == 0, out
    composed = yaml.safe_load(out)
    assert composed["backend"]["kind"] == "scripted" and composed["run"]["episodes"] == 2
    assert composed["scenario"]["name"] == "lbt" and composed["scenario"]["caption"] == "see ***"
    assert "sk-live" not in out and not out.startswith("ok:")
    code, out = cli("check", *SCRIPTED, "run.episodes=0", "--cfg")  # a bad config is still a ConfigError
    assert code == 2 and "run.episodes" in out and "Traceback" not in out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("show")
    schola.run("lbt", [*SCRIPTED[1:], "run.episodes=2", f"cache.dir={root / 'cache'}"], run_dir=root / "run")
    return root / "run"


def test_show_episode_prints_that_episodes_transcript(cli: Any, run_dir: Path) -> None:
    results = [r for r in map(yaml.safe_load, (run_dir / "results.jsonl").read_text().splitlines())]
    first, second = (str(r["episode"]) for r in results[:2])
    lines = [t for t in map(yaml.safe_load, (run_dir / "transcript.jsonl").read_text().splitlines())]
    mine = [t for t in lines if str(t["episode"]) == first]
    code, out = cli("show", str(run_dir), "--episode", first)
    assert code == 0, out
    assert out.startswith(f"episode {first} · round 0 · finished · {len(mine)} replies")
    heads = [line for line in out.splitlines() if line.startswith("── ")]
    assert [h.split(" · ")[0][3:] for h in heads] == [t["node"] for t in mine]
    for t in mine:
        assert t["text"].splitlines()[0] in out and t["prompt"].splitlines()[0] in out
    assert not any(t["text"] in out for t in lines if str(t["episode"]) == second and t["text"] not in
                   {m["text"] for m in mine})  # fmt: skip
    for key in results[0]["scores"]:
        assert f"  {key} = " in out
    code, out = cli("show", str(run_dir), "--episode", "no-such")
    assert code == 2 and "--episode" in out and "no episode 'no-such'" in out and first in out


def test_show_episode_of_a_folder_that_is_no_run(cli: Any, tmp_path: Path) -> None:
    code, out = cli("show", str(tmp_path), "--episode", "x")
    assert code == 2 and "is not a run directory" in out and "Traceback" not in out


ENDS = re.compile(r"[.?!)]$")


def test_every_registered_plugin_has_a_description_that_ends() -> None:
    for kind, reg in plugins.ALL.items():
        for name in reg.names():
            line = reg.about(name)
            if line is None:
                line = describe(kind, reg.get(name))
            said = line.split(" [scorers: ")[0]
            assert said and "\n" not in said and ENDS.search(said), f"{kind} {name}: {said!r}"


def test_a_scenarios_listed_description_is_the_one_it_runs_with() -> None:
    fresh = plugins.Registry("scenarios")  # nothing loaded yet: each read from its source
    for name in fresh.names():
        listed = fresh.about(name)
        assert listed is not None and listed == describe("scenarios", plugins.scenarios.get(name)), name


def test_summary_is_the_first_sentence_whole() -> None:
    from schola.plugins import summary

    wrapped = "Grades an answer (Li et al., 2024) against a rubric and ends\n    with a score. More here.\n\nBody."
    assert summary(wrapped) == "Grades an answer (Li et al., 2024) against a rubric and ends with a score."
    long = "Which one is closer to a reference: `d` = MAE(a) - MAE(b) (negative: a is closer) " + "with more " * 20
    assert summary(long) == "Which one is closer to a reference."
    assert summary(None) == ""
