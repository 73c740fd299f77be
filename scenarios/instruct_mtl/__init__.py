"""In-BoXBART: Get Instructions into Biomedical Multi-Task Learning (Parmar et al., NAACL 2022 Findings).

Every task carries an instruction in the BoX format — a definition, positive examples (input, output,
explanation), then `Instance: input: <x>, output: ?` — and one model answers every task. Protocol here, per
instance (an episode):
  1. build the prompt of every comparison arm: with instruction (zero-shot: the definition alone; few-shot: k
     positive examples), single-task (the task's own demonstrations, no definition), and without instruction
     (the input alone);
  2. the student answers each prompt;
  3. score the answer by ROUGE-L, token F1 and exact match, each the best over the gold labels split on ", ".
Then, as a run-level stage: the metrics per task and arm with bootstrap CIs, the paired difference of the
instruction arm against every other arm, and the multi-task SFT sets (with and without instructions) in TRL's
prompt-completion format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from schola.scenarios.instruct_mtl.box import ARMS, Arm, episodes, load_instances, load_instructions
from schola.scenarios.instruct_mtl.metrics import METRICS, exact_match, rouge_l, token_f1
from schola.scenarios.instruct_mtl.tasks import GENERATORS, generate

from schola.errors import ConfigError
from schola.metrics import MetricRow, mean_row
from schola.scenario import Scenario


class InstructData(BaseModel):
    """`scenario.data` of instruct_mtl."""

    model_config = ConfigDict(extra="forbid")
    instructions: str | None = Field(
        None, description='the authors\' instruction file (JSON: task -> {"Definition:", "Examples", "Prompt"}); '
        "null: the bundled biomedical tasks"
    )  # fmt: skip
    path: str | None = Field(None, description="instances, JSONL of {task, input, output}; output a string or a list")
    tasks: list[str] | None = Field(None, description="run only these tasks of the instruction file")
    instances: int = Field(
        3, ge=1, le=2_000, description="generated instances per bundled task (when there is no path; at most 2,000)"
    )


class InstructParams(BaseModel):
    """`scenario.params` of instruct_mtl."""

    model_config = ConfigDict(extra="forbid")
    shots: list[int] = Field([0, 2], min_length=1, description="positive examples per prompt: 0 is zero-shot")
    arms: list[Arm] = Field(list(ARMS), min_length=1, description="instruction, single_task, no_instruction")


def load(
    data: InstructData, *, params: InstructParams, seed: int, source: str | None = None, **_: Any
) -> list[dict[str, Any]]:
    """Episodes: one per instance, each with the prompts of every arm; everything is checked before a run."""
    if any(k < 0 for k in params.shots):
        raise ConfigError("shots must be >= 0", key="scenario.params.shots")
    tasks = load_instructions(data.instructions, source=source)
    if data.tasks:
        unknown = [t for t in data.tasks if t not in tasks]
        if unknown:
            raise ConfigError(
                f"unknown task(s) {', '.join(unknown)}; the instruction file has {', '.join(tasks)}",
                key="scenario.data.tasks",
            )
        tasks = {name: tasks[name] for name in data.tasks}
    if data.path:
        instances = [i for i in load_instances(data.path, tasks, source=source) if i["task"] in tasks]
    elif data.instructions is None:
        instances = [
            inst
            for name, task in tasks.items()
            if name in GENERATORS
            for inst in generate(name, data.instances, seed=seed, avoid={e.input for e in task.examples})
        ]
    else:
        instances = []  # every task is tested on its own examples, leave-one-out
    return episodes(tasks, instances, arms=list(params.arms), shots=sorted(set(params.shots)))


def _replies(record: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
    return list(zip(record["inputs"]["prompts"], record["outputs"].get("replies") or []))


def report(ctx: Any, *, metrics: Sequence[str] = tuple(METRICS), export: bool = True) -> list[MetricRow]:
    """Per task and arm, each metric with its bootstrap CI; the paired difference (instruction arm with the most
    examples minus each other arm) per metric; and the SFT exports."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(
            f"unknown metric(s) {', '.join(unknown)}; expected {', '.join(METRICS)}", key="scenario.stages"
        )
    # values[(arm, shots)][episode] = {metric: value}
    values: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    task_of: dict[str, str] = {}
    for r in ctx.results:
        task_of[r["episode"]] = r["inputs"]["task"]
        for prompt, reply in _replies(r):
            scores = {m: METRICS[m](reply, r["inputs"]["output"]) for m in metrics}
            values.setdefault((prompt["arm"], prompt["shots"]), {})[r["episode"]] = scores
    rows: list[MetricRow] = []
    for (arm, shots), by_episode in sorted(values.items()):
        for task in sorted(set(task_of.values())):
            episodes_of_task = [e for e in by_episode if task_of[e] == task]
            for m in metrics:
                values_of_task = [by_episode[e][m] for e in episodes_of_task]
                rows.append(mean_row(m, values_of_task, seed=ctx.seed, task=task, arm=arm, shots=str(shots)))
    instruction = [key for key in values if key[0] == "instruction"]
    reference = max(instruction, key=lambda key: key[1]) if instruction else None
    if reference is not None:
        for other in sorted(k for k in values if k != reference):
            common = [e for e in values[reference] if e in values[other]]
            for m in metrics if common else ():  # no instance ran both (a task that cannot give k examples)
                diffs = [values[reference][e][m] - values[other][e][m] for e in common]
                rows.append(mean_row(
                    f"{m}_difference", diffs, seed=ctx.seed,
                    arm=f"{reference[0]}/{reference[1]}", versus=f"{other[0]}/{other[1]}",
                ))  # fmt: skip
    if export and ctx.results:
        with_instructions = [
            {"prompt": p["text"], "completion": r["inputs"]["output"]}
            for r in ctx.results
            for p in r["inputs"]["prompts"]
            if (p["arm"], p["shots"]) == reference
        ]
        without = [{"prompt": r["inputs"]["input"], "completion": r["inputs"]["output"]} for r in ctx.results]
        if with_instructions:
            ctx.export("sft_instructions", with_instructions, kind="sft")
        ctx.export("sft_no_instructions", without, kind="sft")
    return rows


scenario = Scenario(
    name="instruct_mtl",
    description=__doc__.splitlines()[0],
    load=load,
    data=InstructData,
    params=InstructParams,
    scorers={"rouge_l": rouge_l, "token_f1": token_f1, "exact_match": exact_match},
    stages={"report": report},
)
