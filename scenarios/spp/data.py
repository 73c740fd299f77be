"""The three SPP tasks' data: generated (seeded) or read from the authors' JSONL files.

- `trivia_creative_writing`: `{topic, questions, answers: [[alias, ...], ...], question_ids}`; generated from the
  authored pool in `trivia.yaml` (N = `questions`, the paper's N=5 and N=10).
- `codenames`: `{idx, word_list, target_words}`; generated boards from `codenames_lexicon.yaml` (the targets share
  a category).
- `logic_grid_puzzle`: the BIG-bench record `{idx, inputs, targets, multiple_choice_targets,
  multiple_choice_scores}`; generated puzzles with a unique solution (`logic_grid.py`).

Each episode carries its `task`, its `gold` answer and its `phases`: the steps of the task, each with the task
statement in the authors' words (trivia: one writer; logic: one solver; codenames: the spymaster, then the
guesser, whose statement keeps a `{hint_word}` slot for the spymaster's hint).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from schola.scenarios.spp.logic_grid import CATEGORIES, MAX_HOUSES, generate_puzzle

from schola.data import DataFiles, check_size
from schola.errors import ConfigError

Task = Literal["trivia_creative_writing", "codenames", "logic_grid_puzzle"]
HERE = Path(__file__).parent
GENERATED = 3  # episodes generated when data.items is null

# The task statements of the authors' prompts (prompts/*.py in their repository), as str.format templates.
STATEMENTS = {
    "writer": "Write a short and coherent story about {topic} that incorporates the answers to the following {n} "
    "questions: {questions}",
    "spymaster": "Try to find a single word hint that can accurately represent and link the {n} given words: "
    '"{target_words}". The key is to select a hint that does not cause confusion with other words from the '
    "following list: {word_list}.",
    "guesser": 'Try to identify the {n} words best associated with the word "{hint_word}" from the following '
    "list: {word_list}. Your answer should be a comma-separated list of words.",
}


class SppData(BaseModel):
    """`scenario.data` of spp: which task, and the sizes of the generated data (or the authors' file)."""

    model_config = ConfigDict(extra="forbid")
    task: Task = "trivia_creative_writing"
    path: str | None = Field(None, description="the authors' JSONL file for this task instead of generated data")
    items: int | None = Field(
        None, ge=1, le=2_000, description="episodes: N generated, or the first N of path; null: 3 generated, or all"
    )
    questions: int = Field(5, ge=1, le=44, description="trivia: questions per story (paper: N=5 and N=10)")
    words: int = Field(10, ge=2, le=128, description="codenames: words on a board (paper: 9-25)")
    targets: int = Field(2, ge=1, le=8, description="codenames: target words (paper: 1-4)")
    houses: int = Field(3, ge=2, le=MAX_HOUSES, description="logic grid: houses (paper: 2-5)")
    characteristics: int = Field(2, ge=1, le=len(CATEGORIES), description="logic grid: characteristics per house")

    @model_validator(mode="after")
    def _sizes(self) -> SppData:
        if self.targets >= self.words:
            raise ValueError(f"targets ({self.targets}) must be fewer than words ({self.words})")
        return self


# -- the authors' record formats -------------------------------------------------------------------------------
class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")
    idx: int | None = None


class TriviaRecord(_Record):
    topic: str
    questions: list[str] = Field(min_length=1)
    answers: list[list[str]]
    question_ids: list[str] | None = None

    @field_validator("answers")
    @classmethod
    def _aligned(cls, answers: list[list[str]], info: ValidationInfo) -> list[list[str]]:
        questions = info.data.get("questions", [])
        if len(answers) != len(questions):
            raise ValueError(f"{len(answers)} alias lists for {len(questions)} questions")
        if any(not aliases for aliases in answers):
            raise ValueError("every question needs at least one alias")
        return answers


class CodenamesRecord(_Record):
    word_list: list[str] = Field(min_length=2)
    target_words: list[str] = Field(min_length=1)

    @field_validator("target_words")
    @classmethod
    def _on_board(cls, targets: list[str], info: ValidationInfo) -> list[str]:
        missing = [w for w in targets if w not in info.data.get("word_list", [])]
        if missing:
            raise ValueError(f"{missing} are not in word_list")
        return targets


class LogicGridRecord(_Record):
    inputs: str
    targets: list[str] = Field(min_length=1)
    multiple_choice_targets: list[str] = Field(min_length=1)
    multiple_choice_scores: list[int]

    @field_validator("multiple_choice_scores")
    @classmethod
    def _scores(cls, scores: list[int], info: ValidationInfo) -> list[int]:
        if len(scores) != len(info.data.get("multiple_choice_targets", [])):
            raise ValueError("needs one score per multiple_choice_targets entry")
        return scores


RECORDS: dict[str, type[_Record]] = {
    "trivia_creative_writing": TriviaRecord,
    "codenames": CodenamesRecord,
    "logic_grid_puzzle": LogicGridRecord,
}


def episode(task: str, record: _Record, index: int) -> dict[str, Any]:
    """An episode from one validated record: its fields, the gold answer and the task's phases."""
    fields = record.model_dump(exclude_none=True)
    ident = str(record.idx if record.idx is not None else index)
    if isinstance(record, TriviaRecord):
        n, questions = len(record.questions), " ".join(record.questions)
        phases = [
            {"name": "writer", "statement": STATEMENTS["writer"].format(topic=record.topic, n=n, questions=questions)}
        ]
        gold: Any = record.answers
    elif isinstance(record, CodenamesRecord):
        shown = {"n": len(record.target_words), "word_list": ", ".join(record.word_list)}
        phases = [
            {
                "name": "spymaster",
                "statement": STATEMENTS["spymaster"].format(target_words=", ".join(record.target_words), **shown),
            },
            {"name": "guesser", "statement": STATEMENTS["guesser"].format(hint_word="{hint_word}", **shown)},
        ]
        gold = record.target_words
    else:
        assert isinstance(record, LogicGridRecord)
        phases = [{"name": "solver", "statement": record.inputs.replace("\nA:", "")}]
        gold = record.targets[0]
    return {**fields, "id": ident, "task": task, "gold": gold, "phases": phases}


def read_file(path: Path, task: str) -> list[dict[str, Any]]:
    """Episodes from the authors' JSONL (or a JSON list); the first bad record is a ConfigError naming the file,
    its line (its item in a JSON list) and the field."""
    model = RECORDS[task]
    expected = ", ".join(n for n in model.model_fields if n != "idx")
    try:
        numbered = DataFiles().rows(path)
    except ConfigError as e:
        raise ConfigError(e.detail, key=e.key, file=str(path)) from None
    episodes, seen = [], set()
    for index, (where, row) in enumerate(numbered):
        try:
            record = model.model_validate(row)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "record"
            message = err["msg"].removeprefix("Value error, ")
            raise _error(path, where, f"field '{field}': {message} ({task} records have {expected})") from None
        ep = episode(task, record, index)
        if ep["id"] in seen:
            raise _error(path, where, f"field 'idx': duplicate idx {ep['id']}")
        seen.add(ep["id"])
        episodes.append(ep)
    return episodes


def _error(path: Path, where: str, message: str) -> ConfigError:
    """`where`: `file:line` (or `file: item i`) of a record."""
    return ConfigError(f"{where}: {message}", key="scenario.data.path", file=str(path))


# -- generated data ---------------------------------------------------------------------------------------------
def _bundled(name: str) -> Any:
    return DataFiles().document(HERE / name)


def generate_trivia(rng: random.Random, *, questions: int) -> dict[str, Any]:
    pool = _bundled("trivia.yaml")
    if questions > len(pool["questions"]):
        raise ConfigError(f"at most {len(pool['questions'])} questions per story", key="scenario.data.questions")
    picked = rng.sample(pool["questions"], questions)
    return {
        "topic": rng.choice(pool["topics"]),
        "questions": [q["question"] for q in picked],
        "answers": [q["answers"] for q in picked],
        "question_ids": [q["id"] for q in picked],
    }


def generate_board(rng: random.Random, *, words: int, targets: int) -> dict[str, Any]:
    lexicon: dict[str, list[str]] = _bundled("codenames_lexicon.yaml")
    category = rng.choice(sorted(lexicon))
    others = [w for c in sorted(lexicon) if c != category for w in lexicon[c]]
    if targets > len(lexicon[category]) or words - targets > len(others):
        raise ConfigError("the board is larger than the lexicon", key="scenario.data.words")
    target_words = rng.sample(lexicon[category], targets)
    word_list = rng.sample(target_words + rng.sample(others, words - targets), words)
    return {"word_list": word_list, "target_words": target_words}


def generate(data: SppData, seed: int) -> list[dict[str, Any]]:
    """`data.items` (null: 3) episodes of `data.task`; the same seed gives the same data."""
    episodes = []
    for i in range(data.items or GENERATED):
        rng = random.Random(f"spp/{data.task}/{seed}/{i}")
        if data.task == "trivia_creative_writing":
            row = generate_trivia(rng, questions=data.questions)
        elif data.task == "codenames":
            row = {"idx": i, **generate_board(rng, words=data.words, targets=data.targets)}
        else:
            row = {"idx": i, **generate_puzzle(rng, houses=data.houses, characteristics=data.characteristics)[0]}
        episodes.append(episode(data.task, RECORDS[data.task].model_validate(row), i))
    return episodes


def load(data: SppData, *, seed: int, source: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """Episodes of `scenario.data`: the authors' file at `path`, else generated ones."""
    if data.path:
        items = read_file(DataFiles(source).path(data.path), data.task)
        check_size(data.items, len(items), key="scenario.data.items", what=f"items in {data.path}")
        return items[: data.items] if data.items else items
    return generate(data, seed)
