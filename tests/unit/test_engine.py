"""The engine through YAML scenarios and the Python API: episode identity, rounds, loops with accumulators,
score labels, roles that see the episode, option probabilities, template globals."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import schola
from schola import plugins
from schola.errors import ConfigError
from schola.metrics import MetricRow
from schola.roles import ActRequest, Reply, Role, RoleConfig
from schola.scenario import Scenario
from tests.conftest import read_jsonl

ECHO = ["backend=scripted"]


def write(tmp_path: Path, scenario: dict[str, Any], name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def qa(n: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "name": "qa",
        "data": {"records": [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(n)]},
        "roles": {"student": {"role": "student"}},
        "graph": [
            {"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"},
            {"id": "ok", "kind": "score", "scorer": "numeric_match", "inputs": {"prediction": "reply", "target": "answer"},
             "output": "correct"},
        ],
        **extra,
    }  # fmt: skip


def test_duplicate_episode_ids_are_refused_naming_both_records(tmp_path: Path) -> None:
    spec = qa()
    spec["data"]["records"][2]["id"] = "q0"
    with pytest.raises(ConfigError, match=r"duplicate episode id 'q0' \(records 0 and 2\)") as e:
        schola.run(write(tmp_path, spec), ECHO, run_dir=tmp_path / "r")
    assert str(tmp_path / "s.yaml") in str(e.value)
    spec = qa()
    spec["data"]["records"][1] = {"question": "x", "answer": "1", "id": "0"}  # explicit id = another's row number
    spec["data"]["records"][0].pop("id")
    with pytest.raises(ConfigError, match="duplicate episode id '0'"):
        schola.run(write(tmp_path, spec), ECHO, run_dir=tmp_path / "r2")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


def test_a_data_field_may_not_shadow_a_template_global(tmp_path: Path) -> None:
    spec = qa()
    spec["data"]["records"][0]["roles"] = "oops"
    with pytest.raises(ConfigError, match="roles.*would hide the template globals"):
        schola.run(write(tmp_path, spec), ECHO)


def test_an_output_named_like_a_global_is_refused_by_check(tmp_path: Path, cli: Any) -> None:
    spec = qa()
    spec["graph"][0]["output"] = "seed"
    code, out = cli("check", str(write(tmp_path, spec)), *ECHO)
    assert code == 2 and "writes 'seed', a name every template sees" in out


def test_a_record_lacking_a_field_the_graph_reads_is_found_by_check(tmp_path: Path, cli: Any) -> None:
    spec = qa()
    del spec["data"]["records"][1]["answer"]
    code, out = cli("check", str(write(tmp_path, spec)), *ECHO)
    assert code == 2 and "record 1 (episode 'q1') has no field 'answer'" in out


ROUNDS = Scenario(name="rounds_test", description="a stage that runs a second round of every episode")


async def second_round(ctx: Any) -> list[MetricRow]:
    again = [{**r["inputs"], "id": r["episode"] + "-r2", "question": r["inputs"]["question"] + " Again."} for r in
             ctx.results if r.get("round") == 0]  # fmt: skip
    done = await ctx.run_episodes(again)
    return [MetricRow(name="second_round_episodes", value=float(len(done)), n=len(done))]


ROUNDS.stages["again"] = second_round


@pytest.fixture
def rounds_plugin() -> Any:
    with plugins.scenarios.registered("rounds_test", ROUNDS):
        yield


def test_stage_run_episodes_are_first_class_and_resume_skips_the_finished(
    tmp_path: Path, rounds_plugin: Any, cli: Any
) -> None:
    spec = qa(stages=[{"fn": "rounds_test.again"}], kind="rounds_test")
    path = write(tmp_path, spec)
    run = tmp_path / "r"
    # the budget stops the run inside the second round
    code, out = cli("run", str(path), *ECHO, "budget.max_requests=5", "run.concurrency=1", f"hydra.run.dir={run}")
    assert code == 4, out
    assert [(r["episode"], r["round"]) for r in read_jsonl(run / "results.jsonl")] == [
        ("q0", 0), ("q1", 0), ("q2", 0), ("q0-r2", 1), ("q1-r2", 1),
    ]  # fmt: skip
    code, out = cli("run", f"resume={run}", "budget.max_requests=100")
    assert code == 0, out
    results = read_jsonl(run / "results.jsonl")
    assert [r["episode"] for r in results] == ["q0", "q1", "q2", "q0-r2", "q1-r2", "q2-r2"]
    transcript = read_jsonl(run / "transcript.jsonl")
    assert sorted(t["episode"] for t in transcript) == sorted(r["episode"] for r in results)
    rows = json.loads((run / "metrics.json").read_text())["metrics"]
    by_round = {r["labels"].get("round"): r["n"] for r in rows if r["name"] == "correct"}
    assert by_round == {0: 3, 1: 3}
    assert next(r for r in rows if r["name"] == "second_round_episodes")["value"] == 3.0


def test_a_loop_accumulates_with_init_iteration_and_dialogue(tmp_path: Path) -> None:
    spec = {
        "name": "dialogue",
        "data": {"records": [{"topic": "fractions"}]},
        "init": {"transcript_text": ""},
        "roles": {"tutor": {"role": "teacher"}, "learner": {"role": "student"}},
        "graph": [
            {"id": "tutor_says", "kind": "agent", "role": "tutor", "output": "t",
             "prompt": "turn {{ iteration }} on {{ topic }}; so far {{ dialogue | length }} replies"},
            {"id": "learner_says", "kind": "agent", "role": "learner", "output": "l", "prompt": "reply to: {{ t }}"},
            {"id": "more", "kind": "route", "routes": [{"when": "iteration < 5", "to": "tutor_says"}],
             "max_iters": 2, "default": "wrap"},
            {"id": "wrap", "kind": "agent", "role": "tutor", "output": "summary", "after": [],
             "prompt": "{% for m in dialogue %}{{ m.agent }}: {{ m.text }}\n{% endfor %}"},
        ],
    }  # fmt: skip
    result = schola.run(write(tmp_path, spec), ECHO, run_dir=tmp_path / "r")
    assert result.ok, result.message
    prompts = [t["prompt"] for t in read_jsonl(tmp_path / "r" / "transcript.jsonl")]
    # max_iters=2: the first pass and two loops, each turn numbered, the dialogue growing by two replies a turn
    assert prompts[:5:2] == [
        "turn 0 on fractions; so far 0 replies", "turn 1 on fractions; so far 2 replies",
        "turn 2 on fractions; so far 4 replies",
    ]  # fmt: skip
    summary = prompts[-1]
    assert summary.count("tutor: turn") == 3 and summary.count("learner: reply to:") == 3


class Tutor(Role):
    """Checks its reply against the episode's answer, which the prompt does not carry."""

    sees_state = True

    class Config(RoleConfig):
        backend: str | None = None

    async def act(self, request: ActRequest) -> Reply:
        state = request.state
        assert state is not None
        with pytest.raises(TypeError):
            state["answer"] = "changed"  # type: ignore[index]  # read-only
        return Reply(
            text="right" if state["answer"] in request.prompt else f"no, think again about {state['question']}"
        )


def test_a_role_that_declares_it_sees_the_episode_state_read_only(tmp_path: Path) -> None:
    spec = qa()
    spec["roles"] = {"student": {"role": "student"}, "tutor": {"role": "tutor_test"}}
    spec["graph"].insert(
        1, {"id": "check", "kind": "agent", "role": "tutor", "prompt": "{{ reply }}", "output": "verdict"}
    )
    with plugins.roles.registered("tutor_test", Tutor):
        result = schola.run(write(tmp_path, spec), [*ECHO, "backend.default=The answer is 2"], run_dir=tmp_path / "r")
    assert result.ok, result.message
    verdicts = [e["outputs"]["verdict"] for e in result.episodes]
    assert verdicts == ["no, think again about What is 0 + 1?", "right", "no, think again about What is 2 + 1?"]


def test_score_labels_make_one_metric_and_paired_difference_compares_them(tmp_path: Path) -> None:
    spec = qa(4)
    spec["graph"] = [
        {"id": "before", "kind": "agent", "role": "student", "prompt": "cold: {{ question }}", "output": "b"},
        {"id": "after", "kind": "agent", "role": "student", "prompt": "taught: {{ question }}", "output": "a"},
        {"id": "s1", "kind": "score", "scorer": "numeric_match", "inputs": {"prediction": "b", "target": "answer"},
         "output": "accuracy", "labels": {"phase": "before"}},
        {"id": "s2", "kind": "score", "scorer": "numeric_match", "inputs": {"prediction": "a", "target": "answer"},
         "output": "accuracy", "labels": {"phase": "after"}},
    ]  # fmt: skip
    spec["stages"] = [{"fn": "paired_difference", "metric": "accuracy", "label": "phase", "a": "before", "b": "after"}]
    spec["scripted"] = [{"match": "taught: What is", "reply": "The answer is {{ numbers(prompt)[0] + 1 }}"},
                        {"match": "cold:", "reply": "I do not know."}]  # fmt: skip
    result = schola.run(write(tmp_path, spec), ECHO, run_dir=tmp_path / "r")
    assert result.ok, result.message
    assert result.episodes[0]["scores"] == {"accuracy{phase=after}": 1.0, "accuracy{phase=before}": 0.0}
    assert result.metric("accuracy", phase="before").value == 0.0
    assert result.metric("accuracy", phase="after").value == 1.0
    difference = next(r for r in result.metrics if r.name.endswith("difference"))
    assert difference.value == 1.0 and difference.n == 4


def test_check_finds_the_role_a_scorer_asks(tmp_path: Path, cli: Any) -> None:
    spec = qa()
    spec["graph"].append({"id": "judge_it", "kind": "score", "scorer": "llm_judge", "output": "quality",
                          "inputs": {"answer": "reply"}, "params": {"rubric": "is right"}})  # fmt: skip
    code, out = cli("check", str(write(tmp_path, spec)), *ECHO)
    assert code == 2 and "scorer 'llm_judge' asks role 'judge'" in out, out
    spec["graph"][-1]["params"]["judge"] = "student"
    assert cli("check", str(write(tmp_path, spec)), *ECHO)[0] == 0


def test_a_stage_asking_an_unknown_role_names_the_step(tmp_path: Path) -> None:
    spec = qa()
    spec["graph"][0]["role"] = "{{ 'stu' + 'dent2' }}"
    result = schola.run(write(tmp_path, spec), ECHO, run_dir=tmp_path / "r")
    assert (
        result.status == "config_error" and "step 'ask' of episode 'q0' names unknown role 'student2'" in result.message
    )


def test_option_probabilities_from_a_scripted_backend_and_from_samples(tmp_path: Path) -> None:
    spec = qa(1)
    spec["graph"] = [
        {"id": "yn", "kind": "agent", "role": "student", "prompt": "Is {{ question }} easy?", "output": "r",
         "options": ["yes", "no"], "probs": "p"},
        {"id": "abc", "kind": "agent", "role": "student", "prompt": "Pick: {{ question }}", "output": "r2",
         "options": "['A', 'B', 'C']", "probs": "p2"},
    ]  # fmt: skip
    spec["scripted"] = [{"match": "easy", "reply": "yes", "probs": {"yes": 3, "no": 1}},
                        {"match": "Pick", "reply": "{{ pick(['A', 'A', 'A', 'B']) }}"}]  # fmt: skip
    result = schola.run(write(tmp_path, spec), ECHO, run_dir=tmp_path / "r")
    assert result.ok, result.message
    out = result.episodes[0]["outputs"]
    assert out["p"] == {"p": {"yes": 0.75, "no": 0.25}, "source": "scripted"}
    assert out["p2"]["source"] == "samples" and out["p2"]["p"]["C"] == 0.0
    assert sum(out["p2"]["p"].values()) == pytest.approx(1.0) and out["p2"]["p"]["A"] > out["p2"]["p"]["B"]


def test_variants_merge_over_the_scenario_and_an_unknown_one_is_refused(tmp_path: Path, cli: Any) -> None:
    spec = qa(
        1,
        variant="plain",
        variants={
            "plain": {},
            "polite": {
                "graph": [
                    {
                        "id": "ask",
                        "kind": "agent",
                        "role": "student",
                        "prompt": "Please: {{ question }}",
                        "output": "reply",
                    }
                ]
            },
        },
    )
    path = write(tmp_path, spec)
    result = schola.run(path, [*ECHO, "scenario.variant=polite"], run_dir=tmp_path / "r")
    assert [t["prompt"] for t in read_jsonl(tmp_path / "r" / "transcript.jsonl")] == ["Please: What is 0 + 1?"]
    assert result.ok
    code, out = cli("check", str(path), *ECHO, "scenario.variant=rude")
    assert code == 2 and "unknown variant 'rude'; the scenario has: plain, polite" in out


def test_the_python_api_runs_inside_a_running_event_loop(tmp_path: Path) -> None:
    async def notebook_cell() -> Any:
        return schola.run(write(tmp_path, qa()), ECHO, run_dir=tmp_path / "r")

    result = asyncio.run(notebook_cell())
    assert result.ok and result.status == "finished"
    assert len(result.episodes) == 3
    assert json.loads((tmp_path / "r" / "status.json").read_text())["status"] == "finished"
    frame = result.to_pandas()
    assert list(frame["name"]) == ["correct"] and frame["n"][0] == 3


async def test_arun_awaits_in_the_callers_loop(tmp_path: Path) -> None:
    result = await schola.arun(write(tmp_path, qa(2)), ECHO, run_dir=tmp_path / "r")
    assert result.ok and [e["episode"] for e in result.episodes] == ["q0", "q1"]
    again = await schola.arun(write(tmp_path, qa(2)), ECHO, run_dir=tmp_path / "r2")  # twice in one process
    assert again.ok and again.metric("correct").n == 2


def test_identical_runs_write_identical_results_and_metrics(tmp_path: Path) -> None:
    spec = write(tmp_path, qa(5))
    for name in ("a", "b"):
        assert schola.run(spec, [*ECHO, f"cache.dir={tmp_path / name / 'cache'}"], run_dir=tmp_path / name / "r").ok
    for file in ("results.jsonl", "metrics.json"):
        assert (tmp_path / "a" / "r" / file).read_bytes() == (tmp_path / "b" / "r" / file).read_bytes(), file


def test_a_failing_stage_keeps_the_rows_of_the_stages_before_it_and_hints_resume(tmp_path: Path) -> None:
    def broken(ctx: Any) -> list[MetricRow]:
        raise MemoryError("out of memory in a stage")

    def fine(ctx: Any) -> list[MetricRow]:
        return [MetricRow(name="before_the_failure", value=1.0, n=1)]

    spec = qa(2, stages=[{"fn": "fine_stage"}, {"fn": "broken_stage"}])
    with plugins.stages.registered("broken_stage", broken), plugins.stages.registered("fine_stage", fine):
        result = schola.run(write(tmp_path, spec), ECHO, run_dir=tmp_path / "r")
    assert result.status == "error" and "MemoryError" in result.message
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert status["hint"] == f"continue with: schola run resume={tmp_path / 'r'}"
    assert result.metric("correct").n == 2  # the episodes' rows are there
    assert result.metric("before_the_failure").value == 1.0  # and the rows of the stage that finished


def test_episode_concurrency_defaults_to_filling_every_backend_a_role_uses(tmp_path: Path) -> None:
    from schola.compose import Composition, compose
    from schola.plan import build_plan
    from schola.schema import Files

    def concurrency(*overrides: str) -> int:
        composition = Composition([*ECHO, *overrides], [], str(write(tmp_path, qa(1))))
        raw, choices, _ = compose(composition)
        plan = build_plan(raw, Files.from_choices(choices, composition.file))
        assert plan.config.run.concurrency == (3 if "run.concurrency=3" in overrides else None)  # as given
        return plan.concurrency

    assert concurrency("backend.max_concurrency=64") == 64
    assert concurrency("backend.max_concurrency=2") == 8  # at least 8
    assert concurrency("backend.max_concurrency=64", "run.concurrency=3") == 3  # as set


def test_a_stage_takes_labels_that_mark_every_row_it_returns(tmp_path: Path) -> None:
    spec = qa(3, variant="plain", variants={"plain": {}}, stages=[
        {"fn": "error", "prediction": "scores.correct", "reference": "scores.correct", "labels": {"prompt": "{{ scenario.variant }}"}}])  # fmt: skip
    result = schola.run(write(tmp_path, spec), ECHO, run_dir=tmp_path / "r")
    assert result.ok, result.message
    mae = result.metric("mae")
    assert mae is not None and mae.labels["prompt"] == "plain" and mae.value == 0.0


def test_the_command_line_wins_over_a_variant(tmp_path: Path) -> None:
    spec = qa(
        1,
        variant="plain",
        variants={
            "plain": {},
            "polite": {
                "params": {"greeting": "Please"},
                "graph": [
                    {
                        "id": "ask",
                        "kind": "agent",
                        "role": "student",
                        "prompt": "{{ params.greeting }}: {{ question }}",
                        "output": "reply",
                    }
                ],
            },
        },
    )
    path = write(tmp_path, spec)
    schola.run(path, [*ECHO, "scenario.variant=polite", "+scenario.params.greeting=Kindly"], run_dir=tmp_path / "r")
    assert [t["prompt"] for t in read_jsonl(tmp_path / "r" / "transcript.jsonl")] == ["Kindly: What is 0 + 1?"]


def test_an_options_step_without_generation_answers_with_the_most_likely_option(tmp_path: Path) -> None:
    spec = qa(1)
    spec["graph"] = [{"id": "yn", "kind": "agent", "role": "student", "prompt": "Is {{ question }} easy?", "output": "r",
                      "options": ["yes", "no"], "probs": "p", "generate": False}]  # fmt: skip
    spec["scripted"] = [{"match": "easy", "reply": "a long text nobody asked for", "probs": {"yes": 1, "no": 3}}]
    result = schola.run(write(tmp_path, spec), ECHO, run_dir=tmp_path / "r")
    assert result.ok, result.message
    assert result.episodes[0]["outputs"]["r"] == "no"
    assert result.episodes[0]["outputs"]["p"] == {"p": {"yes": 0.25, "no": 0.75}, "source": "scripted"}
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["usage"]["total"]["requests"] == 0
