"""Labelled features for class-incremental learning: scikit-learn's bundled digits (8x8 images, 10 classes, no
download), or a user's CSV (a label column, every other column a feature) or NPZ (a features array and a labels
array). The classes, sorted, are grouped into tasks of `classes_per_task` consecutive classes — (0, 1), (2, 3),
... as in the authors' class_num_map — and the samples are split, stratified and seeded, into train and test.

Episodes carry a small description of the dataset (never the arrays); roles load it through `load_split`, which
is cached, so a run reads and checks the file once."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from schola.data import DataFiles, csv_errors
from schola.errors import ConfigError

KEY = "scenario.data.path"


class CurriculumData(BaseModel):
    """`scenario.data` of curriculum."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, description="a CSV or NPZ of features and labels; null: scikit-learn's digits")
    label: str = Field("label", description="the CSV label column, or the NPZ labels array")
    features: str = Field("x", description="the NPZ features array (a CSV's features are its other columns)")
    classes_per_task: int = Field(2, ge=1, description="classes per task: 10 classes make 5 tasks of 2")
    test_size: float = Field(0.3, gt=0, lt=1, description="share of each class held out for testing")
    orders: int | None = Field(24, ge=1, description="a seeded sample of the task orders; null: all n! orders")


@dataclass(frozen=True)
class Split:
    """Train and test arrays; labels are class indices 0..C-1; `tasks` holds class indices."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    tasks: tuple[tuple[int, ...], ...]

    def names(self, task: int) -> str:
        return ",".join(self.classes[c] for c in self.tasks[task])


def describe(data: CurriculumData, *, seed: int, source: str | None) -> dict[str, Any]:
    """What an episode carries about its dataset: enough for a role to load the same split."""
    path = str(DataFiles(source).path(data.path).resolve()) if data.path else None
    return {
        "path": path, "label": data.label, "features": data.features,
        "classes_per_task": data.classes_per_task, "test_size": data.test_size, "seed": seed,
    }  # fmt: skip


def load_split(description: dict[str, Any]) -> Split:
    """The split an episode's dataset description names (cached per description)."""
    return _load(json.dumps(description, sort_keys=True))


@lru_cache(maxsize=8)
def _load(key: str) -> Split:
    d = json.loads(key)
    if d["path"] is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, labels = digits.data / 16.0, [str(v) for v in digits.target]
    else:
        x, labels = _read(Path(d["path"]), label=d["label"], features=d["features"])
    return _split(x, labels, d, where=d["path"] or "digits")


def _read(path: Path, *, label: str, features: str) -> tuple[np.ndarray, list[str]]:
    """Features and labels of a NPZ or CSV file, read through `DataFiles` (bounded, a regular file, UTF-8)."""
    if path.suffix.lower() == ".npz":
        try:
            arrays = np.load(io.BytesIO(DataFiles().bytes(path)), allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ConfigError(f"{path}: not a readable NPZ file ({e})", key=KEY, file=str(path)) from None
        for name, field in ((features, "features"), (label, "label")):
            if name not in arrays.files:
                raise ConfigError(
                    f"{path}: no array '{name}' (scenario.data.{field}); the file has {', '.join(arrays.files)}",
                    key=f"scenario.data.{field}", file=str(path),
                )  # fmt: skip
        x, y = arrays[features], arrays[label]
        if x.ndim < 2 or len(x) != len(y):
            raise ConfigError(
                f"{path}: '{features}' must hold one row per label in '{label}' ({x.shape} vs {y.shape})",
                key=KEY,
                file=str(path),
            )
        try:
            return x.reshape(len(x), -1).astype(float), [str(v) for v in y.reshape(-1)]
        except ValueError:
            raise ConfigError(
                f"{path}: array '{features}' is not numeric", key="scenario.data.features", file=str(path)
            ) from None
    if path.suffix.lower() != ".csv":
        raise ConfigError(f"{path}: expected a .csv or .npz file", key=KEY, file=str(path))
    text = DataFiles().text(path)
    with csv_errors(path):
        rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or label not in rows[0]:
        has = ", ".join(rows[0]) if rows else "nothing"
        raise ConfigError(
            f"{path}: no column '{label}' (scenario.data.label); the header has {has}",
            key="scenario.data.label",
            file=str(path),
        )
    header, at = rows[0], rows[0].index(label)
    x, labels = [], []
    for line, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != len(header):
            raise ConfigError(
                f"{path}:{line}: {len(row)} fields, the header has {len(header)}", key=KEY, file=str(path)
            )
        values = []
        for column, cell in zip(header, row):
            if column == label:
                continue
            try:
                values.append(float(cell))
            except ValueError:
                raise ConfigError(
                    f"{path}:{line}: column '{column}' is not a number ({cell!r})", key=KEY, file=str(path)
                ) from None
        x.append(values)
        labels.append(row[at].strip())
    return np.asarray(x, dtype=float), labels


def _split(x: np.ndarray, labels: list[str], d: dict[str, Any], *, where: str) -> Split:
    from sklearn.model_selection import train_test_split

    names = sorted(set(labels), key=lambda v: (len(v), v) if v.lstrip("-").isdigit() else (0, v))
    per_task = d["classes_per_task"]
    if len(names) < 2 * per_task or len(names) % per_task:
        raise ConfigError(
            f"{where}: {len(names)} classes cannot make two or more tasks of {per_task} classes "
            "(scenario.data.classes_per_task must divide the number of classes)",
            key="scenario.data.classes_per_task", file=None if where == "digits" else where,
        )  # fmt: skip
    index = {name: i for i, name in enumerate(names)}
    y = np.asarray([index[v] for v in labels])
    counts = np.bincount(y)
    if counts.min() < 2:
        rare = names[int(counts.argmin())]
        raise ConfigError(
            f"{where}: class '{rare}' has {counts.min()} sample(s); each class needs two or more", key=KEY
        )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=d["test_size"], random_state=d["seed"], stratify=y
    )
    tasks = tuple(tuple(range(i, i + per_task)) for i in range(0, len(names), per_task))
    return Split(x_train, y_train, x_test, y_test, tuple(names), tasks)
