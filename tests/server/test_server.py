"""A real OpenAI-compatible server (python -m llama_cpp.server) on 127.0.0.1, reached the way a vLLM server is.
Select with -m server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import UserMessage

from schola.backends.autogen import AutoGenClient
from schola.backends.embedded import default_model_path
from schola.backends.vllm import VLLMClient
from schola.roles import ActRequest, Role, RoleConfig
from schola.types import CallInfo

pytestmark = pytest.mark.server
MSG = [UserMessage(content="Say hello.", source="user")]
MODEL_INFO = {
    "vision": False,
    "function_calling": False,
    "json_output": False,
    "family": "unknown",
    "structured_output": False,
}
SENTINEL = "sk-SENTINEL-server-0123456789abcdef"


def test_lbt_runs_on_the_litellm_backend_and_the_key_stays_secret(
    cli: Any, tmp_path: Path, llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    code, out = cli(
        "run", "scenario=lbt", "backend=litellm", f"backend.base_url={llama_server}", "scenario.data.problems=1",
        "scenario.roles.teacher.samples=2", "scenario.roles.teacher.sampling.max_tokens=24",
        "scenario.roles.students.0.sampling.max_tokens=16", f"hydra.run.dir={tmp_path / 'r'}",
    )  # fmt: skip
    assert code == 0, out
    lines = [json.loads(x) for x in (tmp_path / "r" / "transcript.jsonl").read_text().splitlines()]
    assert len(lines) == 2 + 2 * 3 and all(t["completion_tokens"] > 0 for t in lines)
    assert SENTINEL not in out
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert SENTINEL not in p.read_text(errors="replace"), p


async def test_vllm_backend_manages_a_server_through_the_same_launcher() -> None:
    client = VLLMClient(
        {
            "model": "smollm2",
            "serve": {
                "command": [
                    "python",
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(default_model_path()),
                    "--model_alias",
                    "smollm2",
                ],
                "ready_path": "/v1/models",
                "startup_timeout_s": 60,
            },
        }
    )
    await client.preflight()
    (proc,) = client.procs
    assert proc.poll() is None
    out = await client.create(MSG, extra_create_args={"schola": CallInfo(role="t"), "max_tokens": 8})
    assert out.content and out.usage.completion_tokens > 0
    await client.close()
    assert proc.poll() is not None  # stopped on close


async def test_autogen_client_as_a_schola_backend(llama_server: str) -> None:
    client = AutoGenClient({"config": {"model": "smollm2", "base_url": llama_server, "model_info": MODEL_INFO}})
    await client.preflight()
    out = await client.create(MSG, extra_create_args={"schola": CallInfo(role="judge"), "max_tokens": 8})
    assert out.content and client.ledger.by_role["judge"].requests == 1
    await client.close()


async def test_a_schola_role_runs_on_an_autogen_client_pointed_at_the_server(llama_server: str) -> None:
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    client = OpenAIChatCompletionClient(model="smollm2", base_url=llama_server, api_key="none", model_info=MODEL_INFO)
    teacher = Role(
        "teacher", RoleConfig(role="teacher", persona="a patient tutor", sampling={"max_tokens": 12}), client
    )
    reply = await teacher.act(ActRequest(prompt="What is 2 + 2?"))
    assert reply.text and reply.completion_tokens > 0
    await client.close()
