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
import json
import sys
from pathlib import Path
from typing import Any

from schola.errors import BackendError, ConfigError, ScholaError

# A record needs one of these field sets (TRL's dataset formats).
FORMATS: dict[str, list[tuple[str, ...]]] = {
    "sft": [("messages",), ("prompt", "completion"), ("text",)],
    "dpo": [("prompt", "chosen", "rejected")],
}
DEFAULT_LR = {"sft": 2e-5, "dpo": 5e-6}


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
    p.add_argument("--steps", type=int, default=-1, help="optimizer steps; -1: --epochs over the data")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=4, help="per device")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 2e-5 sft, 5e-6 dpo)")
    p.add_argument("--beta", type=float, default=0.1, help="DPO's beta")
    p.add_argument("--max-length", type=int, default=512, help="tokens per example (truncated beyond)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft), merged into the checkpoint")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--gradient-checkpointing", action="store_true", help="less memory, slower steps (large models)")
    p.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's choice)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available")
    p.add_argument("--seed", type=int, default=0)
    return p


def read_export(path: Path, method: str) -> list[dict[str, Any]]:
    """The records of an export, each checked for the fields `method` needs; a bad line is a ConfigError naming
    the file, the line and the field."""
    from schola.data import read_rows

    if not path.is_file():
        raise ConfigError(f"no such export: {path}", key="data")
    wanted = " or ".join("/".join(f) for f in FORMATS[method])
    records = []
    for where, record in read_rows(path, key="data"):
        fields = next((f for f in FORMATS[method] if set(f) <= record.keys()), None)
        if fields is None:
            missing = [k for k in FORMATS[method][0] if k not in record]
            raise ConfigError(f"{where}: record has no field '{missing[0]}' (a {method} record needs {wanted})", key="data")
        for field in fields:
            if not _text_or_messages(record[field]):
                raise ConfigError(
                    f"{where}: field '{field}' must be text or a list of {{role, content}} messages", key="data"
                )
        records.append(record)
    if not records:
        raise ConfigError(f"{path}: the export has no records", key="data")
    return records


def _text_or_messages(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    )


def plot_loss(history: list[dict[str, Any]], path: Path) -> list[tuple[int, float]]:
    """The training loss per logged step as a PNG; returns the (step, loss) points."""
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
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
    (out / "log.json").write_text(json.dumps(history, indent=1) + "\n")
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
    args = parser().parse_args(argv)
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
