"""`schola train sft|dpo EXPORT.jsonl --model MODEL`: TRL's SFTTrainer or DPOTrainer on a Schola export.

This closes the loop the teaching scenarios open: simulate -> export (lbt M2, arte, comd) -> train -> run the
checkpoint in the same scenario (`backend=transformers backend.model=<checkpoint>`). MODEL is a Hugging Face
model directory or a GGUF file (default: the embedded SmolLM2, dequantized once and cached). Runs on the CPU
at toy scale and on a GPU when there is one; `--lora` trains LoRA adapters (peft) and merges them into the
saved checkpoint. Prints a progress bar, writes `loss.png` and `log.json`, and ends with the checkpoint's path.
Needs the train extra: pip install 'schola[train]'.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schola.errors import BackendError, ConfigError, ScholaError
from schola.store import write_atomic

# A record needs one of these field sets (TRL's dataset formats).
FORMATS: dict[str, list[tuple[str, ...]]] = {
    "sft": [("messages",), ("prompt", "completion"), ("text",)],
    "dpo": [("prompt", "chosen", "rejected")],
}
DEFAULT_LR = {"sft": 2e-5, "dpo": 5e-6}
#: Most characters of text one record may hold: ~250k tokens, beyond any --max-length (which truncates). A larger
#: record is a broken export, and would sit in tokenisation for minutes before being cut.
MAX_RECORD_CHARS = 1_000_000
MESSAGES = "a non-empty list of {role, content} messages"


def number(
    kind: type[int] | type[float], low: float, *, strict: bool = False, also: int | None = None
) -> Callable[[str], Any]:
    """An argparse type: a finite `kind` >= `low` (> `low` when `strict`), or `also`; a bad value exits 2 naming
    the flag, before torch is imported."""
    bound = f"{'>' if strict else '>='} {low:g}" + (f" (or {also})" if also is not None else "")

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if value == also or (math.isfinite(value) and (value > low if strict else value >= low)):
            return value
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'} {bound}, not {text!r}"
        )

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="schola train",
        description="Fine-tune a model on a Schola export with TRL (SFT or DPO).",
        epilog="example: schola train dpo runs/.../dpo_lbt.jsonl --model out/base --steps 2 --batch-size 2",
    )
    p.add_argument("method", choices=["sft", "dpo"], help="sft: SFTTrainer; dpo: DPOTrainer")
    p.add_argument("data", help="an export: <run dir>/<name>.jsonl")
    p.add_argument(
        "--model", default=None, help="a Hugging Face model directory or a GGUF file (default: the embedded SmolLM2)"
    )
    p.add_argument("--out", default=None, help="output directory (default: <export's folder>/train-<method>-<name>)")
    p.add_argument(
        "--steps", type=number(int, 1, also=-1), default=-1, help="optimizer steps; -1: --epochs over the data"
    )
    p.add_argument("--epochs", type=number(float, 0, strict=True), default=1.0)
    p.add_argument("--batch-size", type=number(int, 1), default=4, help="per device")
    p.add_argument("--grad-accum", type=number(int, 1), default=1, help="gradient accumulation steps")
    p.add_argument(
        "--lr", type=number(float, 0, strict=True), default=None, help="learning rate (default: 2e-5 sft, 5e-6 dpo)"
    )
    p.add_argument("--beta", type=number(float, 0, strict=True), default=0.1, help="DPO's beta")
    p.add_argument("--max-length", type=number(int, 1), default=512, help="tokens per example (truncated beyond)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft), merged into the checkpoint")
    p.add_argument("--lora-r", type=number(int, 1), default=8)
    p.add_argument("--lora-alpha", type=number(int, 1), default=16)
    p.add_argument("--gradient-checkpointing", action="store_true", help="less memory, slower steps (large models)")
    p.add_argument("--threads", type=number(int, 1), default=None, help="torch's CPU threads (default: torch's choice)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available")
    p.add_argument("--seed", type=int, default=0)
    return p


def read_export(path: Path, method: str) -> list[dict[str, Any]]:
    """The records of an export, each checked for the fields `method` needs, all in the format of the first one
    (TRL trains on one format); a bad line is a ConfigError naming the file, the line and the field."""
    from schola.data import read_rows

    if not path.exists():
        raise ConfigError(f"no such export: {path}", key="data")
    wanted = " or ".join("/".join(f) for f in FORMATS[method])
    records: list[dict[str, Any]] = []
    first: tuple[str, tuple[str, ...], str] | None = None  # (where, fields, form) of the first record
    for where, record in read_rows(path, key="data"):  # a folder or a device is named as such here
        fields = next((f for f in FORMATS[method] if set(f) <= record.keys()), None)
        if fields is None:
            missing = [k for k in FORMATS[method][0] if k not in record]
            raise ConfigError(
                f"{where}: record has no field '{missing[0]}' (a {method} record needs {wanted})", key="data"
            )
        form = record_form(where, record, fields)
        first = first or (where, fields, form)
        if (fields, form) != first[1:]:
            raise ConfigError(
                f"{where}: fields {'/'.join(fields)} written as {form}, but {first[0]} has {'/'.join(first[1])} written "
                f"as {first[2]}: every record of an export needs the same format",
                key="data",
            )
        records.append(record)
    if not records:
        raise ConfigError(f"{path}: the export has no records", key="data")
    return records


def record_form(where: str, record: dict[str, Any], fields: tuple[str, ...]) -> str:
    """`text` or `messages`: how a record's fields are written (all alike); a ConfigError naming the field that
    is neither, or the record that mixes them or is larger than MAX_RECORD_CHARS."""
    forms, size = set(), 0
    for field in fields:
        value = record[field]
        if isinstance(value, str) and field != "messages":
            forms.add("text")
            size += len(value)
        elif _messages(value) and field != "text":
            forms.add("messages")
            size += sum(len(m["content"]) for m in value)
        else:
            expected = {"messages": MESSAGES, "text": "text"}.get(field, f"text or {MESSAGES}")
            raise ConfigError(f"{where}: field '{field}' must be {expected}", key="data")
    if len(forms) > 1:
        raise ConfigError(
            f"{where}: fields {', '.join(fields)} mix text and message lists; write them all as text or all as messages",
            key="data",
        )
    if size > MAX_RECORD_CHARS:
        raise ConfigError(
            f"{where}: the record holds {size:,} characters of text, over the limit of {MAX_RECORD_CHARS:,} "
            "(schola.train.MAX_RECORD_CHARS); --max-length truncates far below that",
            key="data",
        )
    return forms.pop()


def _messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
        )
    )


def plot_loss(history: list[dict[str, Any]], path: Path) -> list[tuple[int, float]]:
    """The training loss per logged step as a PNG at `path` (`write_atomic`: never through a link); returns the
    (step, loss) points."""
    points = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    if points:
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(path.parent.name)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, png.getvalue())
    return points


def checkpointing_key(transformers: Any) -> str:
    """Transformers 5 renamed gradient checkpointing to activation checkpointing (the old name warns)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def train(args: argparse.Namespace) -> Path:
    """Train as `args` say; returns the saved checkpoint's directory."""
    from schola.backends.transformers import hf_model_dir, need

    data = Path(args.data)
    records = read_export(data, args.method)
    torch, transformers, trl, datasets = (need(m) for m in ("torch", "transformers", "trl", "datasets"))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no GPU is available", key="device")
    cpu = args.device == "cpu" or not torch.cuda.is_available()
    out = Path(args.out) if args.out else data.parent / f"train-{args.method}-{data.stem}"
    source = hf_model_dir(args.model)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    bf16 = not cpu and torch.cuda.is_bf16_supported()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(source), dtype=torch.bfloat16 if bf16 else torch.float32
    )
    peft_config = None
    if args.lora:
        peft = need("peft")
        peft_config = peft.LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    common = {
        "output_dir": str(out / "trainer"),
        "max_steps": args.steps,
        "num_train_epochs": args.epochs,
        "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": args.grad_accum,
        "learning_rate": args.lr or DEFAULT_LR[args.method],
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": cpu,
        "bf16": bf16,
        "seed": args.seed,
        "max_length": args.max_length,
        "disable_tqdm": False,
        checkpointing_key(transformers): args.gradient_checkpointing,
    }
    dataset = datasets.Dataset.from_list(records)
    if args.method == "dpo":
        config = trl.DPOConfig(beta=args.beta, **common)
        trainer = trl.DPOTrainer(
            model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
        )
    else:
        config = trl.SFTConfig(**common)
        trainer = trl.SFTTrainer(
            model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
        )
    trainer.train()
    checkpoint = out / "checkpoint"
    trained = trainer.model
    if args.lora:
        trained = trained.merge_and_unload()  # a plain checkpoint: any backend loads it without peft
    trained.save_pretrained(str(checkpoint))
    tokenizer.save_pretrained(str(checkpoint))
    history = trainer.state.log_history
    write_atomic(out / "log.json", json.dumps(history, indent=1) + "\n")
    points = plot_loss(history, out / "loss.png")
    first, last = (points[0][1], points[-1][1]) if points else (float("nan"), float("nan"))
    print(
        f"trained {args.method} on {len(records)} records: {trainer.state.global_step} steps, loss {first:.4f} -> {last:.4f}"
    )
    print(f"loss curve: {out / 'loss.png'}")
    print(f"checkpoint: {checkpoint}")
    return checkpoint


def main(argv: list[str]) -> int:
    """`schola train ...` in-process; returns the exit code (0 ok, 2 bad input or missing extra, 3 model)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse printed the usage error (or --help)
        return 0 if e.code in (0, None) else 2
    try:
        train(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BackendError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if "pip install" in str(e) else e.exit_code
    except ScholaError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
