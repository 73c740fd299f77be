"""SIGHT comments and their category definitions; one episode per (comment, category).

- `generator: comments`: comments written for Schola (`comments.yaml`), each with its true categories; per
  category, `per_category` comments positive for it are drawn (seeded). Simulated humans start from these gold
  labels.
- `path`: the authors' annotation CSV (`data/annotations/sample_dataset.csv` of rosewang2008/sight), taken as it
  is: columns in any order, a leading `datasplit`, quoted newlines, commas and emoji in comments, labels `1.0` /
  `0.0` / empty (missing, not 0), ids written as floats (`54.0`), categories beyond the nine (`bookmark`), model
  columns (`annotator_openaichat_v74_general`), stray unnamed columns, a comment repeated on another row (its
  labels fill the first row's blanks; a conflict is an error). Every `annotator_<name>_<category>` column
  is kept as that annotator's recorded labels, so a human role with `recorded: H1` gives the file's real labels.
  Space- and tab-separated files (the authors' `sight_dataset.csv`) are read too.
"""

from __future__ import annotations

import csv
import io
import random
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schola.data import DataFiles, csv_errors
from schola.errors import ConfigError

HERE = Path(__file__).parent
CATEGORIES = [
    "general", "confusion", "pedagogy", "setup", "gratitude", "personal_experience", "clarification", "non_english", "na",
]  # fmt: skip
# Categories of the authors' rubric that the paper's agreement analysis leaves out; their columns are skipped.
OTHER_CATEGORIES = {"bookmark", "potential_mistake"}
REQUIRED = ("comment", "comment_id", "video_name", "playlist_name")


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str
    answer: Literal["true", "false"] = Field(description="the answer in the prompt's own terms")
    why: str = Field(description="the reasoning shown in the few-shot-with-reasoning prompt")


class Definition(BaseModel):
    """A category: the authors' criterion and task question, and three labelled examples."""

    model_config = ConfigDict(extra="forbid")
    criterion: str = Field(description="'the comment ...': the statement the zero-shot prompt asks about")
    question: str = Field(description="the task question of the few-shot prompts")
    true_means: Literal[0, 1] = Field(1, description="the label a 'true' answer gives (0 for non_english)")
    examples: list[Example] = Field(default_factory=list)


@cache
def bundled_definitions() -> dict[str, dict[str, Any]]:
    return DataFiles().document(HERE / "categories.yaml")  # type: ignore[no-any-return]


class SightParams(BaseModel):
    """`scenario.params` of sight."""

    model_config = ConfigDict(extra="forbid")
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES), description="categories to annotate")
    definitions: dict[str, Definition] = Field(
        default_factory=dict,
        validate_default=True,
        description="category definitions; merged over the bundled nine (add or edit one)",
    )

    @field_validator("definitions", mode="before")
    @classmethod
    def _merge(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            raise ValueError("definitions: expected a mapping of category -> {criterion, question, ...}")
        merged = {k: dict(v) for k, v in bundled_definitions().items()}
        for name, override in (value or {}).items():
            if override is not None and not isinstance(override, dict):
                raise ValueError(f"definitions.{name}: expected a mapping (criterion, question, true_means, examples)")
            merged[str(name)] = {**merged.get(str(name), {}), **(override or {})}
        return merged

    @model_validator(mode="after")
    def _known(self) -> SightParams:
        unknown = [c for c in self.categories if c not in self.definitions]
        if unknown:
            raise ValueError(f"unknown category {', '.join(unknown)}; defined: {', '.join(self.definitions)}")
        if not self.categories or len(set(self.categories)) != len(self.categories):
            raise ValueError("categories must be a non-empty list without repeats")
        return self


class SightData(BaseModel):
    """`scenario.data` of sight."""

    model_config = ConfigDict(extra="forbid")
    generator: Literal["comments"] | None = "comments"
    per_category: int | None = Field(
        None, ge=1, description="generated comments drawn per category (positive for it); null: 2; not with path"
    )
    path: str | None = Field(None, description="the authors' annotation CSV instead of the generator")
    split: str | None = Field(None, description="keep only rows whose `datasplit` is this (train, test, ...)")
    humans: list[str] = Field(
        default_factory=lambda: ["H1", "H2"], description="annotators whose columns the file must have ([] for none)"
    )


# ---- the generated set ----------------------------------------------------------------------


def generate(categories: list[str], *, per_category: int, seed: int) -> list[dict[str, Any]]:
    """Per category, `per_category` comments positive for it (each comment once); one episode per comment and
    category, with the comment's gold label for that category."""
    bank = DataFiles().document(HERE / "comments.yaml")
    rng = random.Random(f"sight/{seed}")
    chosen: list[dict[str, Any]] = []
    for category in categories:
        positives = [c for c in bank["comments"] if category in c["labels"] and c not in chosen]
        if len(positives) < per_category:
            raise ConfigError(
                f"only {len(positives)} more bundled comments are positive for '{category}'; "
                f"per_category={per_category} is too many",
                key="scenario.data.per_category",
            )
        chosen += rng.sample(positives, per_category)
    chosen.sort(key=lambda c: c["id"])
    return [
        {
            "id": f"{c['id']}/{category}", "comment_id": c["id"], "comment": c["comment"], **bank["videos"][c["video"]],
            "category": category, "gold": int(category in c["labels"]), "recorded": {},
        }
        for c in chosen
        for category in categories
    ]  # fmt: skip


# ---- the authors' annotation file -------------------------------------------------------------


def _error(file: Path, message: str) -> ConfigError:
    return ConfigError(message, key="scenario.data.path", file=str(file))


def _label(value: str | None, *, file: Path, where: str) -> int | None:
    text = (value or "").strip()
    if text == "" or text.lower() == "nan":
        return None
    try:
        number = float(text)
    except ValueError:
        number = {"true": 1.0, "false": 0.0}.get(text.lower(), -1.0)
    if number not in (0.0, 1.0):
        raise _error(file, f"{where}: label {text!r} is not 1.0, 0.0 or empty")
    return int(number)


def _comment_id(value: str | None, *, file: Path, where: str) -> str:
    text = (value or "").strip()
    if not text:
        raise _error(file, f"{where}: empty comment_id")
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def annotator_columns(header: list[str], known: set[str], *, file: Path) -> dict[str, tuple[str, str]]:
    """`annotator_<name>_<category>` columns -> (name, category); the category is the longest known suffix
    (`annotator_openaichat_v74_personal_experience` -> openaichat_v74, personal_experience)."""
    out = {}
    for column in header:
        if not column.startswith("annotator_"):
            continue
        rest = column[len("annotator_") :]
        category = max((c for c in known | OTHER_CATEGORIES if rest.endswith("_" + c)), key=len, default=None)
        if category is None:
            raise _error(
                file,
                f"row 1 (header), column '{column}': unknown category (expected annotator_<name>_<category> with a "
                f"category of {', '.join(sorted(known | OTHER_CATEGORIES))})",
            )
        if category in known:
            out[column] = (rest[: -len(category) - 1], category)
    return out


def _delimiter(first_line: str) -> str:
    return next((d for d in (",", "\t") if d in first_line), " ")


def _merge_repeat(
    first: dict[str, Any], base: dict[str, Any], recorded: dict[str, dict[str, int | None]], *, file: Path, where: str
) -> None:
    """A comment id seen again: the same comment, whose labels fill the first row's blanks; anything that
    disagrees is an error naming both rows."""
    for key, value in base.items():
        if value != first["base"][key]:
            raise _error(file, f"{where}, column '{key}': comment {base['comment_id']} differs from row {first['row']}")
    for category, labels in recorded.items():
        for name, label in labels.items():
            known = first["recorded"][category][name]
            if label is not None and known is not None and label != known:
                column = f"annotator_{name}_{category}"
                raise _error(file, f"{where}, column '{column}': comment {base['comment_id']} is labelled "
                                   f"{known} in row {first['row']}")  # fmt: skip
            if known is None:
                first["recorded"][category][name] = label


def load_annotations(
    path: Path, categories: list[str], known: set[str], *, humans: list[str], split: str | None
) -> list[dict[str, Any]]:
    """Episodes (comment x category) from the authors' annotation file, with every annotator's recorded labels."""
    text = DataFiles().text(path)
    if not text.strip():
        raise _error(path, f"empty file (expected a header row: {', '.join(REQUIRED)}, annotator_H1_<category>, ...)")
    with csv_errors(path):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_delimiter(text.splitlines()[0]))
        header = [h for h in (reader.fieldnames or []) if h is not None]
        missing = [c for c in REQUIRED if c not in header] + (
            ["datasplit"] if split and "datasplit" not in header else []
        )
        columns = annotator_columns(header, known, file=path)
        have = {(name, cat) for name, cat in columns.values()}
        missing += [f"annotator_{h}_{c}" for h in humans for c in categories if (h, c) not in have]
        if missing:
            raise _error(path, f"row 1 (header): missing column(s) {', '.join(missing)}")
        comments: dict[str, dict[str, Any]] = {}
        for row_number, row in enumerate(reader, 2):
            where = f"row {row_number} (line {reader.line_num})"
            if split and (row.get("datasplit") or "").strip() != split:
                continue
            cid = _comment_id(row.get("comment_id"), file=path, where=f"{where}, column 'comment_id'")
            recorded: dict[str, dict[str, int | None]] = {}
            for column, (name, category) in columns.items():
                label = _label(row.get(column), file=path, where=f"{where}, column '{column}'")
                recorded.setdefault(category, {})[name] = label
            base = {
                "comment_id": cid, "comment": row.get("comment") or "", "video_id": (row.get("video_id") or "").strip(),
                "video_name": row.get("video_name") or "", "playlist_name": row.get("playlist_name") or "",
            }  # fmt: skip
            if cid in comments:  # the authors' full file repeats some comments: one comment, its labels merged
                _merge_repeat(comments[cid], base, recorded, file=path, where=where)
            else:
                comments[cid] = {"base": base, "recorded": recorded, "row": row_number}
    if not comments:
        raise _error(path, "no rows" + (f" with datasplit '{split}'" if split else ""))
    return [
        {"id": f"{c['base']['comment_id']}/{cat}", **c["base"], "category": cat, "gold": None,
         "recorded": c["recorded"].get(cat, {})}
        for c in comments.values()
        for cat in categories
    ]  # fmt: skip


def load(
    data: SightData, *, params: SightParams, seed: int, source: str | None = None, **_: Any
) -> list[dict[str, Any]]:
    if data.path:
        if data.per_category is not None:  # it would be ignored: the file says which comments are annotated
            raise ConfigError(
                f"per_category={data.per_category} draws generated comments; with scenario.data.path every comment "
                "of the file runs: leave scenario.data.per_category null (run.episodes=N runs the first N)",
                key="scenario.data.per_category",
            )
        file = DataFiles(source).path(data.path)
        return load_annotations(file, params.categories, set(params.definitions), humans=data.humans, split=data.split)
    return generate(params.categories, per_category=data.per_category or 2, seed=seed)
