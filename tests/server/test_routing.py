"""Several real OpenAI-compatible servers (python -m llama_cpp.server) for one role: a run survives one of them
being killed mid-run, and the vllm launcher starts one server per GPU and stops exactly what it started.
Select with -m server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from autogen_core.models import UserMessage

from schola.backends.embedded import default_model_path
from schola.backends.vllm import VLLMClient
from schola.types import CallInfo, Ledger
from tests.conftest import read_jsonl

pytestmark = pytest.mark.server


def qa_config(base_urls: list[str], episodes: int) -> dict[str, Any]:
    return {
        "seed": 0,
        "run": {"episodes": None, "concurrency": 4},
        "cache": {"enabled": False},
        "backend": {"kind": "openai", "model": "smollm2", "base_urls": base_urls, "max_concurrency": 4,
                    "max_tokens": 8, "retry_base_s": 0.1, "revive_s": 600},
        "scenario": {
            "name": "qa",
            "data": {"records": [{"id": f"q{i}", "question": f"What is {i} + 1?"} for i in range(episodes)]},
            "roles": {"student": {"role": "student"}},
            "graph": [{"id": "ask", "kind": "agent", "role": "student", "prompt": "{{ question }}", "output": "reply"}],
        },
    }  # fmt: skip


async def test_a_run_over_two_servers_completes_when_one_is_killed_mid_run(
    llama_server: str, spare_llama_server: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    from schola.plan import build_plan
    from schola.runtime import RunDriver
    from schola.schema import Files
    from schola.store import RunStore

    spare, spare_url = spare_llama_server
    killed_at: list[int] = []

    def progress(done: int, total: int, ledger: Ledger) -> None:
        if done >= 4 and runner.engine.clients["default"].endpoints.all[1].served and not killed_at:  # type: ignore[attr-defined]
            spare.kill()  # once it has answered: mid-run, for both servers
            killed_at.append(done)

    runner = RunDriver(build_plan(qa_config([llama_server, spare_url], 16), Files()), RunStore(tmp_path / "r"),
                    progress=progress)  # fmt: skip
    outcome = await runner.execute()
    assert outcome.status == "finished", outcome.message
    assert killed_at and killed_at[0] < 16 and spare.poll() is not None  # killed while episodes were left
    assert sorted(r["episode"] for r in read_jsonl(tmp_path / "r" / "results.jsonl")) == sorted(
        f"q{i}" for i in range(16)
    )
    alive, dead = runner.engine.clients["default"].endpoints.all  # type: ignore[attr-defined]
    assert dead.served > 0 and dead.failures >= 1  # it answered before it died, then was taken out
    assert alive.served + dead.served == 16  # one answer per episode, retries included


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid` (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_one_server_per_gpu_and_close_stops_exactly_those_children_included(llama_server: str) -> None:
    # The server runs under a shell, as a child: stopping only the shell would leave it running.
    shell = f'exec 2>&1; {sys.executable} -m llama_cpp.server "$@" & wait'
    client = VLLMClient({
        "model": "smollm2", "max_tokens": 4,
        "serve": {"command": ["sh", "-c", shell, "sh", "--model", str(default_model_path()), "--model_alias", "smollm2",
                              "--n_ctx", "512"],
                  "gpus": [0, 1], "ready_path": "/v1/models", "startup_timeout_s": 90},
    })  # fmt: skip
    await client.preflight()
    leaders = [p.pid for p in client.procs]
    groups = {pid: group_members(pid) for pid in leaders}
    assert len(leaders) == 2 and all(len(members) >= 2 for members in groups.values())  # shell + server
    visible = set()
    for members in groups.values():
        for pid in members:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            visible |= {v.decode() for v in environ if v.startswith(b"CUDA_VISIBLE_DEVICES=")}
    assert visible == {"CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1"}
    msg = [UserMessage(content="Say hello.", source="user")]
    for i in range(4):
        out = await client.create(msg, extra_create_args={"schola": CallInfo(role="t", sample=i)})
        assert out.usage.completion_tokens > 0
    assert [e.served for e in client.endpoints.all] == [2, 2]
    await client.close()
    every = [pid for members in groups.values() for pid in members]
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in every) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in every if running(pid)]
    assert httpx.get(llama_server + "/models", timeout=5).status_code == 200  # not ours: left alone
