"""The BoX instruction format and its data: the authors' instruction file, the instances, and the prompts of every
comparison arm.

The BoX prompt, as In-BoXBART's README feeds it to the model (one example shown there; several are written one
after another inside the outer brackets):

    Instruction: Definition: <definition>, Positive Examples: [[input: <x1>, output: <y1>, explanation: <e1>] ];
    Instance: input: <x>, output: ?

(one line). Comparison arms:
- `instruction`: the BoX prompt with k positive examples (k = 0 is zero-shot: the definition alone);
- `single_task`: only this task's k demonstrations as `input: ..., output: ...` lines, then the instance — the
  prompt a single-task model would learn from, without a definition;
- `no_instruction`: the input alone — the paper's multi-task baseline without instructions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from schola.data import DataFiles
from schola.errors import ConfigError

Arm = Literal["instruction", "single_task", "no_instruction"]
ARMS: tuple[Arm, ...] = ("instruction", "single_task", "no_instruction")
BUNDLED = "instructions.yaml"
log = logging.getLogger("schola")


@dataclass(frozen=True)
class Example:
    input: str
    output: str
    explanation: str = ""


@dataclass(frozen=True)
class Task:
    name: str
    definition: str
    examples: tuple[Example, ...]
    prompt: str = ""


def _joined(value: Any) -> str:
    """An output as one string: several labels are joined by ", "."""
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _field(entry: dict[str, Any], name: str) -> Any:
    """A key as the authors spell it ("Definition:") or without its colon, in any case."""
    for key, value in entry.items():
        if str(key).strip().rstrip(":").strip().lower() == name:
            return value
    return None


def parse_instructions(obj: Any, *, file: str, key: str = "scenario.data.instructions") -> dict[str, Task]:
    """Tasks from an instruction file's content: `{task: {"Definition:", "Examples": [...], "Prompt"}}`."""

    def bad(message: str) -> ConfigError:
        return ConfigError(f"{file}: {message}", key=key, file=file)

    if not isinstance(obj, dict) or not obj:
        raise bad('expected a JSON object mapping each task to {"Definition:": ..., "Examples": [...], "Prompt": ...}')
    tasks = {}
    for name, entry in obj.items():
        if not isinstance(entry, dict):
            raise bad(f"task '{name}': expected an object with Definition:, Examples and Prompt")
        definition = _field(entry, "definition")
        if not isinstance(definition, str) or not definition.strip():
            raise bad(f"task '{name}': field 'Definition:' is missing or empty")
        raw = _field(entry, "examples") or _field(entry, "positive examples") or []
        if not isinstance(raw, list):
            raise bad(f"task '{name}': field 'Examples' must be a list of {{input, output, explanation}}")
        examples = []
        for i, ex in enumerate(raw):
            for required in ("input", "output"):
                if not isinstance(ex, dict) or _field(ex, required) is None:
                    raise bad(f"task '{name}': Examples[{i}] has no field '{required}'")
            explanation = _field(ex, "explanation") or _field(ex, "reason") or ""
            examples.append(Example(str(_field(ex, "input")), _joined(_field(ex, "output")), str(explanation)))
        prompt = _field(entry, "prompt")
        tasks[str(name)] = Task(str(name), " ".join(definition.split()), tuple(examples), str(prompt or ""))
    return tasks


def load_instructions(path: str | None, *, source: str | None) -> dict[str, Task]:
    """The tasks of the authors' instruction file (JSON, or YAML of the same layout); None: the bundled tasks."""
    data_files, key = DataFiles(source), "scenario.data.instructions"
    if path is None:
        return parse_instructions(data_files.document(Path(__file__).parent / BUNDLED, key=key), file=BUNDLED)
    file = data_files.path(path, key=key)
    return parse_instructions(data_files.document(file, key=key), file=str(file))


def load_instances(path: str, tasks: dict[str, Task], *, source: str | None) -> list[dict[str, Any]]:
    """Instances `{task, input, output}` from a JSONL file; `output` a string or a list of labels."""
    data_files = DataFiles(source)
    file = data_files.path(path)
    out = []
    for i, (_, row) in enumerate(data_files.rows(file), 1):  # none: an error, not the tasks' examples instead
        for name in ("task", "input", "output"):
            if row.get(name) in (None, "", []):
                raise ConfigError(f"{file}: record {i} has no field '{name}'", key="scenario.data.path", file=str(file))
        if row["task"] not in tasks:
            known = ", ".join(sorted(tasks))
            raise ConfigError(
                f"{file}: record {i}: field 'task' is '{row['task']}', which the instruction file does not define "
                f"(it has: {known})", key="scenario.data.path", file=str(file),
            )  # fmt: skip
        out.append({"task": str(row["task"]), "input": str(row["input"]), "output": _joined(row["output"])})
    return out


# -- prompts -----------------------------------------------------------------------------------
def instruction_prompt(task: Task, x: str, demos: tuple[Example, ...] | list[Example]) -> str:
    """The BoX prompt: definition, positive examples (input, output, explanation), then the instance."""
    parts = [f"Definition: {task.definition}"]
    if demos:
        shown = "".join(f"[input: {e.input}, output: {e.output}, explanation: {e.explanation}] " for e in demos)
        parts.append(f"Positive Examples: [{shown}]")
    return "Instruction: " + ", ".join(parts) + f"; Instance: input: {x}, output: ?"


def single_task_prompt(x: str, demos: tuple[Example, ...] | list[Example]) -> str:
    """This task's demonstrations only, then the instance: no definition, no explanations."""
    return "".join(f"input: {e.input}, output: {e.output}\n" for e in demos) + f"input: {x}, output:"


def prompts(task: Task, x: str, demos: list[Example], *, arms: list[Arm], shots: list[int]) -> list[dict[str, Any]]:
    """Every comparison arm's prompt for one instance: `{arm, shots, text}`, `shots` the examples it shows. A k
    the task cannot give (fewer demonstrations) runs with all it has, labelled so, and only once."""
    given = sorted({min(k, len(demos)) for k in shots})
    out = []
    if "instruction" in arms:
        out += [{"arm": "instruction", "shots": k, "text": instruction_prompt(task, x, demos[:k])} for k in given]
    if "single_task" in arms:
        out += [{"arm": "single_task", "shots": k, "text": single_task_prompt(x, demos[:k])} for k in given if k > 0]
    if "no_instruction" in arms:
        out.append({"arm": "no_instruction", "shots": 0, "text": x})
    return out


def episodes(
    tasks: dict[str, Task], instances: list[dict[str, Any]], *, arms: list[Arm], shots: list[int]
) -> list[dict[str, Any]]:
    """One episode per instance, carrying every arm's prompt. A task without instances is tested on its own
    positive examples, leave-one-out: each example with the others as demonstrations."""
    by_task: dict[str, list[dict[str, Any]]] = {name: [] for name in tasks}
    for inst in instances:
        by_task[inst["task"]].append(inst)
    out, short = [], {}
    for name, task in tasks.items():
        if by_task[name]:
            items = [
                (f"{name}/{i}", inst["input"], inst["output"], list(task.examples))
                for i, inst in enumerate(by_task[name])
            ]
        else:
            items = [
                (f"{name}/example{i}", ex.input, ex.output, [e for j, e in enumerate(task.examples) if j != i])
                for i, ex in enumerate(task.examples)
            ]
        if items and (fewest := min(len(demos) for *_, demos in items)) < max(shots):
            short[name] = fewest
        for episode_id, x, gold, demos in items:
            out.append({
                "id": episode_id, "task": name, "input": x, "output": gold,
                "prompts": prompts(task, x, demos, arms=arms, shots=shots),
            })  # fmt: skip
    if short:  # said at check: these tasks' rows carry fewer shots than asked
        log.warning(
            "scenario.params.shots=%d cannot be given to %d of %d tasks, which have too few examples (their rows are "
            "labelled with the shots given): %s", max(shots), len(short), len(tasks),
            ", ".join(f"{name} (at most {k})" for name, k in short.items()),
        )  # fmt: skip
    return out
