"""Helpers of benchmarks/gpu/run.sh: write the prompts, time the curl loop, and summarize both clients.

bench.py prompts --n 1024 --words 256 --out DIR        DIR/prompts.jsonl (Schola) and DIR/bodies/<i>.json (curl)
bench.py timed --out FILE --n 1024 -- CMD ...          runs CMD, writes {"duration", "completed"} to FILE
bench.py summarize --out DIR --engine vllm --concurrency 64 256
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))
from _common import save

WORDS = ["time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child", "world", "school", "state", "family", "student", "group", "country", "problem", "hand", "part", "place", "case", "week", "company", "system", "program", "question", "work", "number", "night", "point", "home", "water", "room", "mother", "area", "money", "story", "fact", "month", "lot", "right", "study", "book", "eye", "job", "word", "business", "issue", "side", "kind"]  # fmt: skip


def prompts(n: int, words: int, out: Path, *, model: str, max_tokens: int) -> None:
    """`n` prompts of `words` random words (seeded; no two share a prefix, so no server prefix cache helps)."""
    rng = random.Random(0)
    (out / "bodies").mkdir(parents=True, exist_ok=True)
    with open(out / "prompts.jsonl", "w") as f:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(words))
            f.write(json.dumps({"id": f"p{i}", "prompt": text}) + "\n")
            body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                    "ignore_eos": True}  # fmt: skip
            (out / "bodies" / f"{i + 1}.json").write_text(json.dumps(body))


def timed(out: Path, n: int, command: list[str]) -> int:
    start = time.perf_counter()
    code = subprocess.call(command)
    out.write_text(json.dumps({"duration": time.perf_counter() - start, "completed": n if code == 0 else 0,
                               "returncode": code}))  # fmt: skip
    return code


def summarize(out: Path, engine: str, concurrency: list[int]) -> dict[str, Any]:
    """Requests/s of Schola (its runs' wall time, attached to the warm server) and of the native client."""
    rows: dict[str, Any] = {}
    for c in concurrency:
        metrics = json.loads((out / f"schola-c{c}" / "metrics.json").read_text())
        wall = json.loads((out / f"schola-c{c}" / "ledger.json").read_text())["wall_s"]  # timings live in the ledger
        done = metrics["episodes"]["finished"]
        schola = {"requests": done, "seconds": wall, "rps": done / wall,
                  "output_tokens_per_s": metrics["usage"]["total"]["completion_tokens"] / wall}  # fmt: skip
        native_raw = json.loads((out / f"native-c{c}.json").read_text())
        native = {"requests": native_raw["completed"], "seconds": native_raw["duration"],
                  "rps": native_raw["completed"] / native_raw["duration"]}  # fmt: skip
        if "output_throughput" in native_raw:  # vllm bench serve
            native["output_tokens_per_s"] = native_raw["output_throughput"]
        rows[str(c)] = {"schola": schola, "native": native, "ratio": schola["rps"] / native["rps"]}
    managed = out / "schola-managed" / "metrics.json"
    result = {
        "engine": engine, "native_client": "vllm bench serve" if engine == "vllm" else "curl loop (xargs -P)",
        "by_concurrency": rows, "target": 0.9, "targets_met": all(r["ratio"] >= 0.9 for r in rows.values()),
        "managed_server_run": json.loads(managed.read_text()).get("status") if managed.exists() else None,
    }  # fmt: skip
    save("gpu", result)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("prompts")
    a.add_argument("--n", type=int, required=True)
    a.add_argument("--words", type=int, required=True)
    a.add_argument("--model", required=True)
    a.add_argument("--max-tokens", type=int, required=True)
    a.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("timed")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--n", type=int, required=True)
    t.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("summarize")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--engine", required=True)
    s.add_argument("--concurrency", type=int, nargs="+", required=True)
    args = p.parse_args()
    if args.what == "prompts":
        prompts(args.n, args.words, args.out, model=args.model, max_tokens=args.max_tokens)
    elif args.what == "timed":
        sys.exit(timed(args.out, args.n, [c for c in args.command if c != "--"]))
    else:
        summarize(args.out, args.engine, args.concurrency)


if __name__ == "__main__":
    main()
