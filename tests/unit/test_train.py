"""`schola train` and the transformers backend, on a tiny random Llama made here (no download, seconds on a CPU).
The real embedded model's closed loop is tests/integration/test_teach_to_train.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import UserMessage

from schola.errors import BackendError, ConfigError
from schola.train import main, plot_loss, read_export
from schola.types import CallInfo

pytest.importorskip("trl")
WORDS = [
    "the",
    "answer",
    "is",
    "yes",
    "no",
    "one",
    "two",
    "three",
    "four",
    "five",
    "plus",
    "equals",
    "what",
    "sort",
    "count",
    "a",
    "b",
    "c",
]
CHAT = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer random Llama with a word-level tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny")
    specials = ["<pad>", "<eos>", "<unk>", "user", "assistant", "system", ":"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tokenizer.chat_template = CHAT
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_an_export_with_a_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}, {"prompt": "p", "chosen": "c"}]
    )
    with pytest.raises(ConfigError, match=r"d\.jsonl:2: record has no field 'rejected'"):
        read_export(path, "dpo")
    assert len(read_export(write(tmp_path / "s.jsonl", [{"prompt": "p", "completion": "c"}]), "sft")) == 1
    write(tmp_path / "s.jsonl", [{"messages": [{"role": "user"}]}])
    with pytest.raises(ConfigError, match=r"s\.jsonl:1: field 'messages' must be a non-empty list"):
        read_export(tmp_path / "s.jsonl", "sft")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: invalid JSON"):
        read_export(tmp_path / "bad.jsonl", "sft")


def test_bad_input_exits_2_with_one_line_and_no_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "d.jsonl", [{"prompt": "p", "chosen": "c"}])
    assert main(["dpo", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "d.jsonl:1: record has no field 'rejected'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["sft", str(tmp_path / "missing.jsonl")]) == 2


def test_a_missing_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "trl", None)  # as if trl were not installed: importing it fails
    path = write(tmp_path / "s.jsonl", [{"prompt": "p", "completion": "c"}])
    assert main(["sft", str(path)]) == 2
    assert "pip install 'schola[train]'" in capsys.readouterr().err


def test_the_loss_curve_has_a_point_per_logged_step(tmp_path: Path) -> None:
    history = [{"loss": 0.9, "step": 1}, {"loss": 0.7, "step": 2}, {"train_runtime": 3.0, "step": 2}]
    assert plot_loss(history, tmp_path / "loss.png") == [(1, 0.9), (2, 0.7)]
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("method", "records", "extra"),
    [
        (
            "sft",
            [{"messages": [{"role": "user", "content": "one plus one"}, {"role": "assistant", "content": "two"}]}] * 4,
            [],
        ),
        (
            "dpo",
            [
                {
                    "prompt": [{"role": "user", "content": "what is one plus one"}],
                    "chosen": [{"role": "assistant", "content": "the answer is two"}],
                    "rejected": [{"role": "assistant", "content": "the answer is five"}],
                }
            ]
            * 4,
            ["--lora"],
        ),
    ],
)
def test_train_saves_a_checkpoint_a_log_and_a_loss_curve(
    tiny: Path,
    tmp_path: Path,
    method: str,
    records: list[dict[str, Any]],
    extra: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write(tmp_path / f"{method}.jsonl", records)
    code = main(
        [
            method,
            str(data),
            "--model",
            str(tiny),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--lr",
            "1e-3",
            "--device",
            "cpu",
            *extra,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    run = tmp_path / f"train-{method}-{method}"
    assert f"checkpoint: {run / 'checkpoint'}" in out
    assert (run / "checkpoint" / "config.json").is_file() and (run / "loss.png").is_file()
    losses = [h["loss"] for h in json.loads((run / "log.json").read_text()) if "loss" in h]
    assert len(losses) == 2
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(run / "checkpoint")  # a plain model: LoRA merged
    base = AutoModelForCausalLM.from_pretrained(tiny)
    assert not hasattr(trained, "peft_config")
    changed = [n for n, p in trained.state_dict().items() if not p.equal(base.state_dict()[n])]
    assert changed  # the weights moved


# -- the transformers backend -------------------------------------------------------------------------
def args(sample: int = 0, **kw: Any) -> dict[str, Any]:
    return {"schola": CallInfo(role="student", sample=sample, seed=0), "temperature": 0.0, "max_tokens": 6, **kw}


async def test_concurrent_requests_are_answered_in_one_batch_like_one_at_a_time(tiny: Path) -> None:
    from schola.backends.transformers import TransformersClient

    client = TransformersClient({"model": str(tiny), "device": "cpu", "batch_wait_s": 0.05})
    prompts = ["what is one plus one", "sort a b c", "count one two three"]
    alone = [
        (await client.create([UserMessage(content=p, source="user")], extra_create_args=args())).content
        for p in prompts
    ]
    model, _, _ = client._loaded()
    calls: list[int] = []
    generate = model.generate

    def counting(**kw: Any) -> Any:
        calls.append(kw["input_ids"].shape[0])
        return generate(**kw)

    model.generate = counting
    try:
        together = await asyncio.gather(
            *[client.create([UserMessage(content=p, source="user")], extra_create_args=args()) for p in prompts]
        )
    finally:
        model.generate = generate
    assert calls == [3]  # one generate call for the three requests
    assert [r.content for r in together] == alone  # left padding changes nothing under greedy decoding
    assert all(r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 3 for r in together)


async def test_the_backend_caches_stops_and_knows_its_checkpoint(tiny: Path, tmp_path: Path) -> None:
    import shutil

    from schola.backends.cache import Cache
    from schola.backends.transformers import TransformersClient, cut_at_stop

    assert cut_at_stop("two three four", ["three", "x"]) == ("two ", True) and cut_at_stop("a", []) == ("a", False)
    client = TransformersClient({"model": str(tiny), "device": "cpu"}, cache=Cache(tmp_path / "cache"))
    msg = [UserMessage(content="what is one plus one", source="user")]
    first = await client.create(msg, extra_create_args=args())
    again = await client.create(msg, extra_create_args=args())
    assert again.cached and again.content == first.content and not first.cached
    probs = await client.option_probs(msg, ["yes", "no"], info=CallInfo(role="student"))
    assert probs is not None and probs[1] == "logprobs" and sum(probs[0].values()) == pytest.approx(1.0)
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    assert TransformersClient({"model": str(copy)}).identity == client.identity  # same bytes, same model
    (copy / "config.json").write_text(
        (copy / "config.json").read_text().replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-05')
    )
    assert TransformersClient({"model": str(copy)}).identity != client.identity


async def test_a_request_queued_behind_other_batches_is_timed_from_its_own_batch(tiny: Path) -> None:
    """Five requests, one batch at a time, 0.4 s a batch, timeout_s=1: the last waits 1.6 s behind the others,
    which counted against its timeout (it was a BackendError); only its own batch counts now."""
    import time

    from schola.backends.transformers import TransformersClient

    client = TransformersClient({"model": str(tiny), "device": "cpu", "max_batch_size": 1, "timeout_s": 1.0,
                                 "max_retries": 0})  # fmt: skip
    model, _, _ = client._loaded()
    generate = model.generate

    def slow(**kw: Any) -> Any:
        time.sleep(0.4)
        return generate(**kw)

    model.generate = slow
    try:
        prompts = ["what is one plus one", "sort a b c", "count one two three", "the answer is", "what is two"]
        replies = await asyncio.gather(
            *[client.create([UserMessage(content=p, source="user")], extra_create_args=args()) for p in prompts]
        )
    finally:
        model.generate = generate
    assert len(replies) == 5 and all(isinstance(r.content, str) for r in replies)


@pytest.mark.parametrize("how", ["closed", "timed out"])
async def test_a_generate_nobody_waits_for_stops_at_its_next_token(how: str, tiny: Path) -> None:
    """A 240-token generate at 0.1 s a token (24 s): once its request timed out or the client closed (a run stopped
    by an error), the worker thread is free within seconds, so the process can exit (it lingered minutes)."""
    import time

    from schola.backends.transformers import _WORKER, TransformersClient

    client = TransformersClient({"model": str(tiny), "device": "cpu", "timeout_s": 0.5 if how == "timed out" else 60,
                                 "max_retries": 0})  # fmt: skip
    model, _, _ = client._loaded()
    generate = model.generate
    hook = model.register_forward_hook(lambda *_: time.sleep(0.1))
    model.generate = lambda **kw: generate(**kw, min_new_tokens=kw["max_new_tokens"])
    loop = asyncio.get_running_loop()
    try:
        msg = [UserMessage(content="what is one plus one", source="user")]
        request = asyncio.ensure_future(client.create(msg, extra_create_args=args(max_tokens=240)))
        await asyncio.sleep(1.0)
        if how == "closed":
            await client.close()
        with pytest.raises((BackendError, asyncio.CancelledError)):
            await asyncio.wait_for(request, 10)
        start = time.monotonic()
        await loop.run_in_executor(_WORKER, lambda: None)  # waits for the generate to end
        assert time.monotonic() - start < 5
    finally:
        hook.remove()
        model.generate = generate


def test_a_model_that_is_not_there_is_a_backend_error(tmp_path: Path) -> None:
    from schola.backends.transformers import hf_model_dir

    with pytest.raises(BackendError, match="model not found"):
        hf_model_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match=r"no config\.json"):
        hf_model_dir(tmp_path / "empty")
