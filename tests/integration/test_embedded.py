"""The real embedded model (SmolLM2-135M through llama-cpp-python). Select with -m embedded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import UserMessage

from schola.backends.cache import Cache
from schola.backends.embedded import EmbeddedClient, default_model_path
from schola.types import CallInfo

pytestmark = pytest.mark.embedded
MSG = [UserMessage(content="Name a colour.", source="user")]


def args(sample: int, **kw: Any) -> dict[str, Any]:
    return {"schola": CallInfo(role="student", sample=sample, seed=0), "temperature": 0.9, "max_tokens": 16, **kw}


async def test_embedded_model_answers_and_counts_tokens() -> None:
    client = EmbeddedClient()
    out = await client.create(MSG, extra_create_args=args(0))
    assert isinstance(out.content, str) and out.content.strip()
    assert 0 < out.usage.completion_tokens <= 16 and out.usage.prompt_tokens > 5
    assert out.finish_reason in ("stop", "length")
    assert client.count_tokens(MSG) > 3


async def test_samples_differ_a_rerun_repeats_and_the_cache_serves_it(tmp_path: Path) -> None:
    plain = EmbeddedClient()
    first = [(await plain.create(MSG, extra_create_args=args(i))).content for i in range(3)]
    again = [(await plain.create(MSG, extra_create_args=args(i))).content for i in range(3)]
    assert first == again  # seeded per (run seed, sample)
    assert len(set(first)) > 1
    cached = EmbeddedClient(cache=Cache(tmp_path))
    await cached.create(MSG, extra_create_args=args(0))
    hit = await cached.create(MSG, extra_create_args=args(0))
    assert hit.cached and hit.content == first[0]


def test_model_identity_is_the_files_sha256() -> None:
    digest = hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    assert EmbeddedClient().identity == f"gguf:{digest}"


def test_lbt_runs_end_to_end_on_the_embedded_model(cli: Any, tmp_path: Path) -> None:
    code, out = cli(
        "run", "scenario=lbt", "backend=embedded", "scenario.data.problems=1", "scenario.roles.teacher.samples=2",
        "scenario.roles.teacher.sampling.max_tokens=32", "scenario.roles.students.0.sampling.max_tokens=24",
        f"hydra.run.dir={tmp_path / 'r'}",
    )  # fmt: skip
    assert code == 0, out
    lines = [json.loads(x) for x in (tmp_path / "r" / "transcript.jsonl").read_text().splitlines()]
    assert len(lines) == 2 + 2 * 3
    assert all(t["completion_tokens"] > 0 for t in lines)
    rows = json.loads((tmp_path / "r" / "metrics.json").read_text())["metrics"]
    assert {r["labels"].get("rule") for r in rows if r["name"] == "accuracy"} == {"MAJ", "MAX", "SUM", "AVG"}


async def test_option_probabilities_come_from_the_models_logits() -> None:
    from autogen_core.models import SystemMessage

    client = EmbeddedClient()
    question = [SystemMessage(content="Answer with yes or no."),
                UserMessage(content="Is Paris the capital of France? Answer yes or no.", source="user")]  # fmt: skip
    found = await client.option_probs(question, ["yes", "no"], info=CallInfo(role="student"))
    assert found is not None
    probs, source = found
    assert source == "logprobs" and sum(probs.values()) == pytest.approx(1.0)
    assert 0.0 < probs["yes"] < 1.0 and 0.0 < probs["no"] < 1.0  # both are among the first token's top choices
    again = await client.option_probs(question, ["yes", "no"], info=CallInfo(role="student"))
    assert again == found  # deterministic: the logits, not a sample
    reply = await client.create(question, extra_create_args=args(0, temperature=0.0))
    assert reply.content  # the model still answers normally after the logits were read


async def test_a_prompt_longer_than_the_context_is_a_clear_backend_error() -> None:
    from schola.errors import BackendError

    client = EmbeddedClient({"n_ctx": 256})
    with pytest.raises(BackendError, match="does not fit the model's context.*backend.n_ctx"):
        await client.create([UserMessage(content="word " * 2000, source="user")], extra_create_args=args(0))
