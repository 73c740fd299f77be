"""Solo Performance Prompting (Wang et al., NAACL 2024): one model, many personas, cognitive synergy.

The SPP prompt asks a model to (1) identify the participants who will contribute to a task (personas it chooses),
(2) start a multi-round collaboration in which the personas give critical comments and detailed suggestions, and
(3) finish the collaboration and present the final answer; two demonstrations show the shape (`Participants:`,
`Start collaboration!`, persona turns, `Finish collaboration!`, `Final answer:`). Variants: `spp`, `spp_profile`
(personas with profiles), `spp_fixed_persona` ("AI Assistant (you)" and "Expert" only); baselines `standard`,
`cot` and `self_refine` (one round of feedback and refinement). `spp_multi` runs the collaboration for real:
the model names the participants, then each persona is a separate agent (the `persona` role, its own system
prompt) taking turns in a bounded loop until one says "Finish collaboration!", and the assistant gives the final
answer. Tasks (`scenario.data.task`): Trivia Creative Writing (N=5 or 10), Codenames Collaborative (a spymaster
step, then a guesser step) and Logic Grid Puzzle, each scored as the authors score it (`scoring.py`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from schola.scenarios.spp.data import SppData, load
from schola.scenarios.spp.scoring import participants, task_score, unwrap

from schola.scenario import Scenario
from schola.scorers import Score

Phase = Literal["writer", "spymaster", "guesser", "solver"]


class PhaseFormat(BaseModel):
    """The authors' wording around one step's task statement, per prompt variant."""

    model_config = ConfigDict(extra="forbid")
    standard: str = Field(description="appended to the statement by the standard prompt")
    cot: str = Field(description="appended by the chain-of-thought prompt")
    final: str = Field(description='SPP: how to present the answer ("present your final solution with ...")')
    feedback: str = Field(description="self_refine: the feedback instruction")
    refine: str = Field(description="self_refine: the refinement instruction")


class SppParams(BaseModel):
    """`scenario.params` of spp."""

    model_config = ConfigDict(extra="forbid")
    demonstrations: str = Field("", description="the SPP instruction and its two demonstrations (set per variant)")
    formats: dict[Phase, PhaseFormat] = Field(description="per task step: the authors' answer formats")
    max_turns: int = Field(4, ge=1, le=12, description="spp_multi: persona turns per collaboration (loop bound 12)")
    max_personas: int = Field(3, ge=1, le=8, description="spp_multi: participants besides the AI Assistant")
    answer_cue: bool = Field(
        False,
        description="spp, spp_profile, spp_fixed_persona: end the prompt with the format reminder and 'Final answer:'",
    )


def answer(reply: str, task: str, variant: str) -> dict[str, Any]:
    """Scorer `spp.answer`: the final answer in a reply, `{"text", "parsed"}`."""
    return unwrap(reply, task=task, variant=variant)


def score(task: str, answers: list[dict[str, Any]], gold: Any) -> Score:
    """Scorer `spp.score`: the task's metric on the last answer (the story, the guesses, the house); 0 when any
    answer of the episode (for codenames: the hint or the guesses) could not be parsed, saying which."""
    unparsed = [i for i, a in enumerate(answers) if not a["parsed"]]
    if task == "codenames" and len(answers) == 1 and unparsed == [0]:  # the guess step skipped an unparsed hint
        return Score(0.0, explanation="the spymaster's hint was not found in its reply: the guesser was not asked")
    if not answers or unparsed:
        why = f"answer {unparsed[0] + 1} of {len(answers)} was not found in its reply" if answers else "no answer"
        return Score(0.0, explanation=why)
    return Score(task_score(task, str(answers[-1]["text"]), gold))


def parsed(answers: list[dict[str, Any]]) -> float:
    """Scorer `spp.parsed`: 1.0 when every answer of the episode was found in its reply (the parse rate's unit)."""
    return float(bool(answers) and all(a["parsed"] for a in answers))


def cast(reply: str, max_personas: int = 3) -> dict[str, Any]:
    """Scorer `spp.cast` (spp_multi): the participants the model named, in speaking order."""
    return participants(reply, max_personas=max_personas)


scenario = Scenario(
    name="spp",
    description=__doc__.splitlines()[0],
    load=load,
    data=SppData,
    params=SppParams,
    scorers={"answer": answer, "score": score, "parsed": parsed, "cast": cast},
)
