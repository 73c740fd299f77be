"""BIG-Bench-Hard-style tasks: procedural generators, a loader for BBH's json files, and answer matching.

Every item is `{"input", "target"}` as in BBH (`{"examples": [{"input": ..., "target": ...}]}`); the generators
write the same shapes as BBH's boolean_expressions, multistep_arithmetic_two, object_counting and word_sorting.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schola.data import DataFiles
from schola.errors import ConfigError
from schola.scorers import to_number

Item = dict[str, str]


def boolean_expressions(rng: random.Random) -> Item:
    def operand() -> str:
        value = rng.choice(["True", "False"])
        return ("not " if rng.random() < 0.4 else "") + value

    ops = [rng.choice(["and", "or"]) for _ in range(2)]
    parts = [operand() for _ in range(3)]
    grouped = rng.random() < 0.5
    text = (
        f"( {parts[0]} {ops[0]} {parts[1]} ) {ops[1]} {parts[2]}"
        if grouped
        else f"{parts[0]} {ops[0]} {parts[1]} {ops[1]} {parts[2]}"
    )
    value = _bool_eval(text)
    return {"input": f"{text} is", "target": str(value)}


def _bool_eval(expression: str) -> bool:
    """Python's own parse (so its precedence: not > and > or) of True/False/not/and/or/parentheses, without eval."""

    def value(node: ast.expr) -> bool:
        if isinstance(node, ast.BoolOp):
            values = [value(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not value(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return node.value
        raise ValueError(f"not a boolean expression: {expression!r}")

    return value(ast.parse(expression, mode="eval").body)


def multistep_arithmetic(rng: random.Random) -> Item:
    a, b, c, d = (rng.randint(-9, 9) for _ in range(4))
    op1, op2, op3 = rng.choice("+-*"), rng.choice("+-"), rng.choice("+-*")
    left = {"+": a + b, "-": a - b, "*": a * b}[op1]
    right = {"+": c + d, "-": c - d, "*": c * d}[op3]
    value = left + right if op2 == "+" else left - right
    return {"input": f"(({a} {op1} {b}) {op2} ({c} {op3} {d})) =", "target": str(value)}


_OBJECTS = ["chair", "table", "bed", "lamp", "couch", "fridge", "stove", "oven", "microwave", "car", "piano", "drum"]
_NUMBERS = ["a", "two", "three", "four"]


def object_counting(rng: random.Random) -> Item:
    names = rng.sample(_OBJECTS, rng.randint(2, 4))
    counts = [rng.randint(1, 3) for _ in names]
    said = [f"{_NUMBERS[n - 1]} {o}{'s' if n > 1 else ''}" for o, n in zip(names, counts, strict=True)]
    listed = ", ".join(said[:-1]) + f", and {said[-1]}" if len(said) > 2 else " and ".join(said)
    return {"input": f"I have {listed}. How many objects do I have?", "target": str(sum(counts))}


_WORDS = [
    "apple",
    "river",
    "stone",
    "maple",
    "cloud",
    "tiger",
    "lemon",
    "ocean",
    "piano",
    "zebra",
    "grape",
    "delta",
    "kettle",
    "banjo",
    "falcon",
    "hollow",
    "ivory",
    "jacket",
    "nectar",
    "quartz",
]


def word_sorting(rng: random.Random) -> Item:
    words = rng.sample(_WORDS, rng.randint(3, 5))
    return {
        "input": f"Sort the following words alphabetically: List: {' '.join(words)}",
        "target": " ".join(sorted(words)),
    }


GENERATORS: dict[str, Callable[[random.Random], Item]] = {
    "boolean_expressions": boolean_expressions,
    "multistep_arithmetic": multistep_arithmetic,
    "object_counting": object_counting,
    "word_sorting": word_sorting,
}
INSTRUCTIONS = {  # BBH's task descriptions, in short
    "boolean_expressions": "Evaluate the result of a random Boolean expression.",
    "multistep_arithmetic": "Solve multi-step arithmetic problems.",
    "object_counting": "Questions that involve enumerating objects and asking the model to count them.",
    "word_sorting": "Sort a list of words.",
}


def generate(task: str, n: int, seed: int) -> list[Item]:
    """`n` distinct items of a procedural task; the same seed gives the same items."""
    rng = random.Random(f"arte/{task}/{seed}")
    items: dict[str, Item] = {}
    for _ in range(n * 50):
        item = GENERATORS[task](rng)
        items.setdefault(item["input"], item)
        if len(items) == n:
            break
    return list(items.values())


def load_bbh(path: str, *, source: str | None) -> tuple[str, list[Item]]:
    """(task name = file stem, items) from a BBH json file `{"examples": [{"input", "target"}, ...]}`."""
    files = DataFiles(source)
    file = files.path(path, key="scenario.data.paths")
    body = files.document(file, key="scenario.data.paths")
    examples = body.get("examples") if isinstance(body, dict) else None
    if not isinstance(examples, list) or not examples:
        raise ConfigError(
            f'{file}: expected {{"examples": [{{"input", "target"}}, ...]}} (BBH\'s format)', key="scenario.data.paths"
        )
    items = []
    for i, ex in enumerate(examples):
        for field in ("input", "target"):
            if not isinstance(ex, dict) or not isinstance(ex.get(field), (str, int, float)):
                raise ConfigError(f"{file}: examples[{i}] has no field '{field}'", key="scenario.data.paths")
        items.append({"input": str(ex["input"]), "target": str(ex["target"])})
    return Path(file).stem, items


# -- answer matching ------------------------------------------------------------------------------
_PHRASE = re.compile(r"answer is\s*:?\s*(.+)", re.I)
_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9()]+|-?\d+", text.lower()))


def stated(reply: str | None) -> str:
    """What a reply gives as its answer: the rest of the line after "the answer is", else its last line."""
    text = (reply or "").strip()
    found = _PHRASE.findall(text)
    if found:
        return str(found[0]).strip().rstrip(".")
    lines = [x for x in text.splitlines() if x.strip()]
    return lines[-1].strip() if lines else ""


def matches(reply: str | None, target: Any) -> float:
    """1.0 when the reply's answer is the target: numerically for a number, as the first True/False for a
    boolean, as an option letter "(A)", else as the same words in the same order."""
    answer, goal = stated(reply), str(target).strip()
    if to_number(goal) is not None:
        numbers = _NUM.findall(answer) or _NUM.findall(reply or "")
        return float(bool(numbers) and to_number(numbers[0]) == to_number(goal))
    if goal in ("True", "False"):
        words = re.findall(r"\b(true|false)\b", answer.lower())
        return float(bool(words) and words[0] == goal.lower())
    if re.fullmatch(r"\([A-Z]\)", goal):
        letters = re.findall(r"\(([A-Z])\)", answer)
        return float(bool(letters) and letters[0] == goal[1])
    return float(_norm(answer) == _norm(goal) or _norm(answer).startswith(_norm(goal) + " "))
