"""One run path: the CLI, the Python API, sweeps and resume all build a RunSpec and run it through
`schola.spec.open_run`; every override is parsed by Hydra's grammar; typos get a suggestion and errors about what
was typed name the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import schola
from schola.errors import ConfigError
from schola.spec import RunSpec
from tests.conftest import SCRIPTED

LBT = ["scenario=lbt", *SCRIPTED, "run.episodes=1"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run.episodez=2"], "unknown key run.episodez; did you mean run.episodes?"),
        (["budget.max_request=2"], "did you mean budget.max_requests?"),
        (["backend.max_concurency=2"], "did you mean backend.max_concurrency?"),
        (["scenario.data.problemz=2"], "did you mean scenario.data.problems?"),
        (["+scenario.roles.teacher.persna=x"], "did you mean scenario.roles.teacher.persona?"),
        (["scenario.roles.teacher.sample=2"], "did you mean scenario.roles.teacher.samples?"),
    ],
)  # fmt: skip
def test_a_typo_gets_a_suggestion_naming_the_command_line(cli: Any, args: list[str], expected: str) -> None:
    code, out = cli("check", *LBT, *args)
    assert code == 2 and expected in out and "command line" in out, out
    assert "conf/config.yaml" not in out and "+run.episodez" not in out


def test_a_bad_value_typed_on_the_command_line_names_the_command_line(cli: Any) -> None:
    code, out = cli("check", "scenario=lbt", "backend=openai", "backend.timeout_s=abc")
    assert code == 2 and "command line, key 'backend.timeout_s'" in out and "conf/backend/openai.yaml" not in out, out


@pytest.mark.parametrize("as_type", [str, Path, lambda p: [p], lambda p: (Path(p),)])
def test_the_api_takes_a_config_dir_as_str_path_or_list(tmp_path: Path, as_type: Any) -> None:
    folder = tmp_path / "conf" / "scenario"
    folder.mkdir(parents=True)
    from schola.compose import Composition

    lbt = Composition(["scenario=lbt"], []).path.read_text()
    (folder / "mine.yaml").write_text(lbt.replace("name: lbt", "name: mine", 1))
    result = schola.run("mine", [*SCRIPTED, "run.episodes=1"], config_dir=as_type(str(tmp_path / "conf")),
                        run_dir=tmp_path / "r")  # fmt: skip
    assert result.ok and json.loads((tmp_path / "r" / "metrics.json").read_text())["scenario"] == "mine"


def test_the_api_takes_one_override_as_a_string_and_refuses_non_strings(tmp_path: Path) -> None:
    assert RunSpec.of("lbt", "run.episodes=1").overrides == ("run.episodes=1",)
    with pytest.raises(ConfigError, match="expected strings like 'seed=1', got 7"):
        RunSpec.of("lbt", ["seed=1", 7])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="config_dir: expected a folder"):
        RunSpec.of("lbt", config_dir=[3])  # type: ignore[list-item]


def test_resume_refuses_what_it_would_ignore(tmp_path: Path) -> None:
    run = tmp_path / "r"
    assert schola.run("lbt", [*SCRIPTED, "run.episodes=1"], run_dir=run).ok
    with pytest.raises(ConfigError, match="leave out run_dir"):
        schola.run(resume=run, run_dir=tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="leave out config_dir"):
        schola.run(resume=run, config_dir="conf")
    assert not (tmp_path / "elsewhere").exists()
    assert schola.run(resume=run, overrides=["budget.max_requests=1000"]).ok


def test_every_override_is_parsed_by_hydras_grammar(cli: Any, tmp_path: Path) -> None:
    run = tmp_path / "r"
    assert cli("run", *LBT, f"hydra.run.dir={run}")[0] == 0
    # a mapping and a quoted value, as Hydra reads them, on resume too
    code, out = cli("run", f"resume={run}", "budget={max_requests: 500}", "scenario=lbt", *SCRIPTED)
    assert code == 0, out
    code, out = cli("run", f"resume={run}", "budget.max_requests=1,2")
    assert code == 2 and "sweeps several values" in out
    code, out = cli("run", f"resume={run}", "budget.max_requests=[1")
    assert code == 2 and "command line" in out and "bad override" in out


def test_the_four_entry_points_share_one_run_path(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import schola.api
    import schola.spec

    specs: list[RunSpec] = []
    real = schola.spec.open_run

    def spy(spec: RunSpec) -> Any:
        specs.append(spec)
        return real(spec)

    monkeypatch.setattr(schola.spec, "open_run", spy)
    monkeypatch.setattr(schola.api, "open_run", spy)  # imported by name there
    run = tmp_path / "r"
    assert cli("run", *LBT, f"hydra.run.dir={run}")[0] == 0  # the CLI
    assert cli("run", f"resume={run}", "budget.max_requests=900")[0] == 0  # resume
    assert schola.run("lbt", [*SCRIPTED, "run.episodes=1"], run_dir=tmp_path / "api").ok  # the API
    code, out = cli("run", "-m", *LBT, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}")  # a sweep's jobs
    assert code == 0, out
    assert len(specs) == 5, (specs, out)
    assert [s.resume is not None for s in specs] == [False, True, False, False, False]
    assert [s.job is not None for s in specs] == [False, False, False, True, True]
    assert {s.scenario for s in specs} == {"lbt", None}
