"""The extension contracts: a role answers one request object, a scorer returns a Score record, arguments are
bound to signatures before the run, and what a plugin's own code raises is that plugin's bug."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from autogen_core.models import UserMessage

from schola import plugins
from schola.backends.base import ScholaClient
from schola.backends.scripted import ScriptedClient
from schola.errors import BackendError, NoLogprobs
from schola.roles import ActRequest, Reply, Role, RoleConfig
from schola.scorers import Score
from schola.types import CallInfo
from tests.conftest import read_jsonl

ECHO = ["backend=scripted"]


def write(tmp_path: Path, scenario: dict[str, Any]) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return str(path)


def qa(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "qa",
        "data": {"records": [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(2)]},
        "roles": {"student": {"role": "student"}},
        "graph": [{"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"}, *steps],
        **extra,
    }  # fmt: skip


class Echo(Role):
    """A role without a model written against ActRequest: it reads the fields it knows and nothing else."""

    class Config(RoleConfig):
        backend: str | None = None

    sees_state = True

    async def act(self, request: ActRequest) -> Reply:
        assert request.state is not None
        return Reply(text=f"{request.prompt} #{request.sample} for {request.state['episode_id']}")


class Legacy(Role):
    """A role as the README told plugin authors to write one before ActRequest."""

    class Config(RoleConfig):
        backend: str | None = None

    async def act(self, prompt, *, sample=0, sampling=None):  # type: ignore[no-untyped-def,override]
        return Reply(text=prompt)


def test_a_role_answers_one_request_object(tmp_path: Path, cli: Any) -> None:
    spec = qa()
    spec["roles"] = {"student": {"role": "echo_test"}}
    with plugins.roles.registered("echo_test", Echo):
        code, out = cli("run", write(tmp_path, spec), *ECHO, f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    texts = [t["text"] for t in read_jsonl(tmp_path / "r" / "transcript.jsonl")]
    assert sorted(texts) == ["What is 0 + 1? #0 for q0", "What is 1 + 1? #0 for q1"]


def test_a_role_written_before_the_request_object_is_refused_naming_what_to_write(tmp_path: Path, cli: Any) -> None:
    spec = qa()
    spec["roles"] = {"student": {"role": "legacy_test"}}
    with plugins.roles.registered("legacy_test", Legacy):
        code, out = cli("check", write(tmp_path, spec), *ECHO)
    assert code == 2, out
    assert "test_contracts:Legacy" in out and "act(self, request: ActRequest)" in out
    assert "scenario.roles.student" in out and "Traceback" not in out


def scorer_bug(reply: str) -> float:
    return float(int(None))  # type: ignore[call-overload]  # "int() argument must be ...": the scorer's own bug


def test_a_type_error_inside_a_scorer_is_that_plugins_bug_not_the_steps_arguments(tmp_path: Path, cli: Any) -> None:
    spec = qa({"id": "grade", "kind": "score", "scorer": "bug_test", "inputs": {"reply": "reply"}, "output": "g"})
    with plugins.scorers.registered("bug_test", scorer_bug):
        assert cli("check", write(tmp_path, spec), *ECHO)[0] == 0  # the step's arguments bind
        code, out = cli("run", write(tmp_path, spec), *ECHO, f"hydra.run.dir={tmp_path / 'r'}")
        assert code == 1, out
        assert "test_contracts:scorer_bug" in out and "TypeError" in out and "grade" in out
        code, out = cli("run", "--debug", write(tmp_path, spec), *ECHO, f"hydra.run.dir={tmp_path / 'd'}")
    assert code == 1 and "Traceback" in out and "in scorer_bug" in out, out


def test_wrong_scorer_and_stage_arguments_are_found_by_check(tmp_path: Path, cli: Any) -> None:
    spec = qa({"id": "ok", "kind": "score", "scorer": "numeric_match", "inputs": {"prediction": "reply", "target": "answer"},
               "params": {"strictly": True}, "output": "correct"})  # fmt: skip
    code, out = cli("check", write(tmp_path, spec), *ECHO)
    assert code == 2 and "scorer 'numeric_match' takes no strictly" in out, out
    spec = qa({"id": "ok", "kind": "score", "scorer": "numeric_match", "inputs": {"prediction": "reply", "target": "answer"},
               "output": "correct"}, stages=[{"fn": "paired_difference", "metric": "correct", "label": "phase", "a": "x", "b": "y", "resamples": 9}])  # fmt: skip
    code, out = cli("check", write(tmp_path, spec), *ECHO)
    assert code == 2 and "stage 'paired_difference' takes no resamples" in out and "scenario.stages[0]" in out, out


def test_a_score_is_a_record_whose_answer_and_explanation_stay_with_the_episode(tmp_path: Path, cli: Any) -> None:
    spec = qa(
        {"id": "ok", "kind": "score", "scorer": "numeric_match", "inputs": {"prediction": "reply", "target": "answer"},
         "output": "correct"},
        {"id": "judged", "kind": "score", "scorer": "llm_judge", "inputs": {"answer": "reply"},
         "params": {"rubric": "right"}, "output": "quality"},
        roles={"student": {"role": "student"}, "judge": {"role": "judge"}},
        scripted=[{"match": "Rubric", "reply": "Fine. Score: 7"}, {"match": "What is", "reply": "The answer is {{ numbers(prompt)[0] + 1 }}"}],
    )  # fmt: skip
    code, out = cli("run", write(tmp_path, spec), *ECHO, f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    first = read_jsonl(tmp_path / "r" / "results.jsonl")[0]
    assert first["scores"] == {"correct": 1.0, "quality": 0.7}
    assert first["score_details"] == {
        "correct": [{"answer": "1"}],
        "quality": [{"answer": "7", "explanation": "Fine. Score: 7"}],
    }


def bare(reply: str) -> float:
    """A scorer written before Score: a bare number is still a score."""
    return 0.5


def parsed(reply: str) -> list[str]:
    return reply.split()


def test_a_call_step_keeps_a_value_a_bare_number_still_scores_and_value_records_a_loop_count(
    tmp_path: Path, cli: Any
) -> None:
    spec = qa(
        {"id": "words", "kind": "call", "fn": "parsed_test", "inputs": {"reply": "reply"}, "output": "words"},
        {"id": "half", "kind": "score", "scorer": "bare_test", "inputs": {"reply": "reply"}, "output": "half"},
        {"id": "again", "kind": "route", "routes": [{"when": "true", "to": "ask"}], "max_iters": 2, "default": "passes"},
        {"id": "passes", "kind": "score", "scorer": "value", "inputs": {"value": "dialogue | length"}, "output": "passes",
         "after": []},
    )  # fmt: skip
    with plugins.scorers.registered("parsed_test", parsed), plugins.scorers.registered("bare_test", bare):
        code, out = cli("run", write(tmp_path, spec), *ECHO, f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 0, out
    first = read_jsonl(tmp_path / "r" / "results.jsonl")[0]
    assert first["outputs"]["words"] == ["What", "is", "0", "+", "1?"]
    assert first["scores"] == {"half": 0.5, "passes": 3.0}  # 3 passes through the loop; a call step records nothing


def test_an_in_process_plugin_survives_unregistering_another() -> None:
    plugins.scorers.register("a_test", bare)
    plugins.scorers.register("b_test", parsed)
    plugins.scorers.unregister("a_test")
    assert "b_test" in plugins.scorers.names() and "a_test" not in plugins.scorers.names()
    assert plugins.scorers.get("b_test") is parsed
    assert plugins.scorers.origin("b_test") == "registered in-process"
    plugins.scorers.unregister("b_test")
    assert "b_test" not in plugins.scorers.names() and "numeric_match" in plugins.scorers.names()


def test_a_score_value_is_a_number() -> None:
    assert Score(True).value is True and Score(None).details() == {}
    try:
        Score("C")  # type: ignore[arg-type]
    except TypeError as e:
        assert "number" in str(e)
    else:
        raise AssertionError("Score('C') was accepted")


class Refusing(ScriptedClient):
    """A backend with logprobs whose logprobs request fails with `error`."""

    has_logprobs = True

    def __init__(self, error: Exception) -> None:
        super().__init__({"kind": "scripted"})
        self.error = error

    async def _top_logprobs(self, messages: Any, sampling: Any, info: CallInfo) -> Any:
        raise self.error


async def test_a_server_without_logprobs_is_told_apart_by_type_not_by_words() -> None:
    messages = [UserMessage(content="Yes or no?", source="user")]
    ask = ScholaClient.option_probs  # the base class's: the scripted backend has its own
    lacking = Refusing(NoLogprobs("http://x: HTTP 400: unsupported parameter"))
    assert await ask(lacking, messages, ["yes", "no"], info=CallInfo()) is None and not lacking.has_logprobs
    down = Refusing(BackendError("http://x: HTTP 404 (is the model 'logprobs-7b' served there?)"))
    with pytest.raises(BackendError, match="404"):
        await ask(down, messages, ["yes", "no"], info=CallInfo())
