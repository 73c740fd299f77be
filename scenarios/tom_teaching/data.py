"""Items for teacher explanations: yes/no questions, arithmetic word problems, multiple-choice questions.

Every item, whatever its source, becomes one episode dict:
`{id, split, task, question, query, options, answer, explanation, deceiving_explanation, wrong_answer,
conclusion, student_demos}` — `query` is the question as the prompts show it (`Q: ...`, with `Choice A: ...` lines
for multiple choice), `options` the answers the models' probabilities are over (yes/no; choice labels; for
arithmetic the gold number and three distractors), `conclusion` the phrase before an answer (`So the answer is`).

Sources, in the authors' formats (a file with the real data is `scenario.data.path`, its train file `train_path`):
- StrategyQA (`strategyqa`): `{question, answer: true/false, facts: [...]}`; gold explanation = the facts joined.
- GSM8K (`gsm8k`): `{question, answer: "<worked solution>\\n#### 42"}`; gold explanation = the solution without
  `<<...>>` calculator notes, one sentence per line.
- CommonsenseQA (`commonsenseqa`): `{question: {stem, choices: [{label, text}]}, answerKey}`; an `explanation` field
  (as ECQA adds) is used when present.
- The authors' deceiving explanations (`deceiving_path`, `harmful_explanations.json`): `{question, answer,
  gold_explanation, harmful_explanation: [...], wrong_answer}`: demonstrations for the deceiving teacher.
The bundled data is written in the same formats (plus `deceiving_explanation`/`wrong_answer`) and read by the
same parsers; arithmetic problems are generated, seeded.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schola.data import DataFiles, check_size, replace_surrogates
from schola.errors import ConfigError

Task = Literal["yesno", "arithmetic", "multiple_choice"]
Format = Literal["strategyqa", "gsm8k", "commonsenseqa"]
FORMAT_OF: dict[str, Format] = {"yesno": "strategyqa", "arithmetic": "gsm8k", "multiple_choice": "commonsenseqa"}
BUNDLED = Path(__file__).parent / "bundled"
KEY = "scenario.data.path"


class TomData(BaseModel):
    """`scenario.data` of tom_teaching."""

    model_config = ConfigDict(extra="forbid")
    task: Task = Field("yesno", description="yesno (StrategyQA-like), arithmetic (GSM8K-like), multiple_choice (CQA)")
    test: int | None = Field(
        10, ge=1, description="test items (the first N; null: all, for the bundled items all but the train items)"
    )
    train: int = Field(8, ge=2, description="train items: the student's demonstrations plus the observed pool")
    path: str | None = Field(None, description="test records in the task's format; null: the bundled/generated set")
    train_path: str | None = Field(None, description="train records in the same format (needed with path)")
    deceiving_path: str | None = Field(None, description="deceiving explanations (authors' harmful_explanations.json)")


class Records:
    """Records of a JSON list or JSONL file, each with the line it starts on (for error messages); read through
    `DataFiles`, lone surrogates replaced as every loader replaces them."""

    def __init__(self, path: Path, rows: list[tuple[int, Any]] | None = None, *, key: str = KEY) -> None:
        self.path, self.key = path, key
        self.rows: list[tuple[int, Any]] = rows if rows is not None else []
        if rows is not None:
            return
        text = DataFiles().text(path, key=key)
        try:
            self._parse(text)
        except RecursionError:
            raise ConfigError(f"{path}: values nested too deeply", key=key) from None
        if not self.rows:
            raise ConfigError(f"{path}: no records (the file is empty)", key=key)
        if "\\u" in text:  # only an escape decodes to a surrogate
            self.rows = [(line_no, replace_surrogates(row)) for line_no, row in self.rows]
        for line_no, row in self.rows:
            if not isinstance(row, dict):
                raise self.error(line_no, f"expected a JSON object, got {type(row).__name__}")

    def _parse(self, text: str) -> None:
        if text.lstrip().startswith("["):
            self._json_list(text)
            return
        for line_no, line in enumerate(text.split("\n"), 1):  # not splitlines(): JSON strings may hold U+2028
            if line.strip():
                try:
                    self.rows.append((line_no, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise self.error(line_no, f"invalid JSON ({e.msg}); expected one object per line") from None

    def _json_list(self, text: str) -> None:
        decoder, pos = json.JSONDecoder(), text.index("[") + 1
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text) or text[pos] == "]":
                return
            line_no = text.count("\n", 0, pos) + 1
            try:
                row, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise self.error(e.lineno, f"invalid JSON ({e.msg})") from None
            self.rows.append((line_no, row))

    def error(self, line_no: int, message: str) -> ConfigError:
        return ConfigError(f"{self.path}:{line_no}: {message}", key=self.key)

    def field(self, line_no: int, row: dict[str, Any], name: str, kind: type | tuple[type, ...], expected: str) -> Any:
        """`row[name]`, checked: a missing field or a wrong type is a ConfigError naming file, line and field."""
        if name not in row:
            raise self.error(line_no, f"record has no field '{name}' (expected {expected})")
        value = row[name]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.error(line_no, f"field '{name}' is {type(value).__name__}, expected {expected}")
        return value


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def canonical_number(text: str) -> str:
    """`1,000.50` -> `1000.5`, `18.0` -> `18` (GSM8K answers and distractors compare as these strings)."""
    value = float(re.sub(r"[^0-9.\-]", "", text) or "nan")
    return str(int(value)) if value == int(value) else repr(value)


# -- the three formats --------------------------------------------------------------------------------------
def strategyqa(records: Records, line_no: int, row: dict[str, Any]) -> dict[str, Any]:
    question = records.field(line_no, row, "question", str, "a string")
    answer = records.field(line_no, row, "answer", bool, "true or false")
    facts = records.field(line_no, row, "facts", list, "a list of fact strings")
    if not all(isinstance(f, str) for f in facts):
        raise records.error(line_no, "field 'facts' must hold strings only")
    gold = "yes" if answer else "no"
    item = {"task": "yesno", "question": question, "query": f"Q: {question}", "options": ["yes", "no"]}
    item |= {"answer": gold, "explanation": " ".join(f.strip() for f in facts), "conclusion": "So the answer is"}
    if isinstance(row.get("deceiving_explanation"), str):
        item |= {"deceiving_explanation": row["deceiving_explanation"], "wrong_answer": "no" if answer else "yes"}
    return item | {"source_id": str(row.get("qid", ""))}


def gsm8k(records: Records, line_no: int, row: dict[str, Any]) -> dict[str, Any]:
    question = records.field(line_no, row, "question", str, "a string")
    solution = records.field(line_no, row, "answer", str, 'a worked solution ending "#### <number>"')
    if "####" not in solution or not re.search(r"\d", solution.split("####")[-1]):
        raise records.error(line_no, "field 'answer' has no final \"#### <number>\"")
    work, final = solution.rsplit("####", 1)
    answer = canonical_number(final)
    explanation = worked_explanation(work)
    item = {"task": "arithmetic", "question": question, "query": f"Q: {question}", "answer": answer}
    item |= {"explanation": explanation, "conclusion": "So the answer is"}
    wrong = []
    if isinstance(row.get("deceiving_explanation"), str) and row.get("wrong_answer") is not None:
        wrong = [canonical_number(str(row["wrong_answer"]))]
        item |= {"deceiving_explanation": row["deceiving_explanation"], "wrong_answer": wrong[0]}
    item["options"] = arithmetic_options(answer, work + " " + question, key=question, prefer=wrong)
    return item


def worked_explanation(work: str) -> str:
    """The authors' cleaning: drop `<<...>>` notes, one sentence per line, each ending with a full stop."""
    lines = [ln.strip() for ln in re.sub(r"<<.*?>>", "", work).strip().splitlines() if ln.strip()]
    return " ".join(ln if ln.endswith(".") else ln + "." for ln in lines)


def arithmetic_options(answer: str, text: str, *, key: str, prefer: Sequence[str] = ()) -> list[str]:
    """The gold number and three distractors (`prefer` first, then intermediate results and numbers of the problem,
    then gold ± k), shuffled by the item so that the gold answer has no fixed place."""
    found = [canonical_number(n) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]
    results = [canonical_number(n) for n in re.findall(r"=\s*\$?(\d[\d,]*(?:\.\d+)?)", text)]
    options = [answer]
    gold = float(answer)
    for candidate in [*prefer, *results, *found, *(canonical_number(str(gold + d)) for d in (1, -1, 2, 10, -2, 20))]:
        if candidate not in options and float(candidate) >= 0 and len(options) < 4:
            options.append(candidate)
    random.Random(f"tom/options/{key}").shuffle(options)
    return options


def commonsenseqa(records: Records, line_no: int, row: dict[str, Any]) -> dict[str, Any]:
    question = records.field(line_no, row, "question", dict, "an object {stem, choices}")
    stem = records.field(line_no, question, "stem", str, "question.stem, a string")
    choices = records.field(line_no, question, "choices", list, "question.choices, a list of {label, text}")
    labels = []
    for c in choices:
        if not isinstance(c, dict) or not isinstance(c.get("label"), str) or not isinstance(c.get("text"), str):
            raise records.error(line_no, "field 'question.choices' must hold objects {label: str, text: str}")
        labels.append(c["label"])
    answer = records.field(line_no, row, "answerKey", str, "a choice label such as 'A'")
    if answer not in labels:
        raise records.error(line_no, f"field 'answerKey' is '{answer}', not one of the labels {labels}")
    query = f"Q: {stem}\nAnswer Choices:\n" + "\n".join(f"Choice {c['label']}: {c['text']}" for c in choices)
    item = {"task": "multiple_choice", "question": stem, "query": query, "options": labels, "answer": answer}
    item |= {"explanation": str(row.get("explanation") or ""), "conclusion": "So the correct choice is"}
    if isinstance(row.get("deceiving_explanation"), str) and row.get("wrong_answer") in labels:
        item |= {"deceiving_explanation": row["deceiving_explanation"], "wrong_answer": row["wrong_answer"]}
    return item | {"source_id": str(row.get("id", ""))}


PARSERS: dict[str, Callable[[Records, int, dict[str, Any]], dict[str, Any]]] = {
    "strategyqa": strategyqa,
    "gsm8k": gsm8k,
    "commonsenseqa": commonsenseqa,
}


def read_items(path: Path, task: Task, *, key: str = KEY) -> list[dict[str, Any]]:
    """Every record of `path` as an item; all records are checked before any is returned."""
    return parse(Records(path, key=key), task)


def parse(records: Records, task: Task) -> list[dict[str, Any]]:
    return [PARSERS[FORMAT_OF[task]](records, line_no, row) for line_no, row in records.rows]


def read_deceiving(path: Path, task: Task) -> list[dict[str, Any]]:
    """The authors' `harmful_explanations.json`: the first harmful explanation of each record, with its wrong
    answer, as a demonstration for the deceiving teacher."""
    key = "scenario.data.deceiving_path"
    records = Records(path, key=key)
    items = []
    for line_no, row in records.rows:
        question = records.field(line_no, row, "question", str, "a string")
        answer = records.field(line_no, row, "answer", str, "the gold answer")
        harmful = records.field(line_no, row, "harmful_explanation", list, "a list of deceiving explanations")
        wrong = records.field(line_no, row, "wrong_answer", str, "the answer the explanation argues for")
        if not harmful or not isinstance(harmful[0], str):
            raise records.error(line_no, "field 'harmful_explanation' must be a non-empty list of strings")
        items.append(
            {"query": f"Q: {question}", "answer": answer, "deceiving_explanation": harmful[0], "wrong_answer": wrong}
        )
    return items


# -- generated arithmetic (GSM8K format) ---------------------------------------------------------------------
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jia"]

# question, worked solution, deceiving solution (a plausible wrong step), all as format strings over the numbers
PROBLEMS: list[tuple[str, str, str, Callable[[random.Random], dict[str, int]]]] = [
    (
        "{name} has {a} boxes with {b} pencils in each box and gives away {c} pencils. How many pencils are left?",
        "{name} has {a} * {b} = <<{a}*{b}={ab}>>{ab} pencils.\nAfter giving away {c}, {ab} - {c} = <<{ab}-{c}={r}>>{r}.\n#### {r}",
        "{name} has {a} + {b} = {apb} pencils. After giving away {c}, {apb} - {c} = {w}.",
        lambda g: (lambda a, b: {"a": a, "b": b, "c": g.randint(1, a + b - 1)})(g.randint(2, 9), g.randint(3, 12)),
    ),
    (
        "A train travels {a} km every hour for {b} hours and then {c} km more. How many km does it travel in total?",
        "In {b} hours it travels {a} * {b} = <<{a}*{b}={ab}>>{ab} km.\nWith {c} km more, {ab} + {c} = <<{ab}+{c}={r}>>{r} km.\n#### {r}",
        "In {b} hours it travels {a} + {b} = {apb} km. With {c} km more, {apb} + {c} = {w} km.",
        lambda g: {"a": g.randint(20, 90), "b": g.randint(2, 6), "c": g.randint(5, 60)},
    ),
    (
        "{name} reads {a} pages a day for {b} days and then {c} pages on the last day. How many pages does {name} read?",
        "In {b} days {name} reads {a} * {b} = <<{a}*{b}={ab}>>{ab} pages.\nAdding the last day, {ab} + {c} = <<{ab}+{c}={r}>>{r}.\n#### {r}",
        "In {b} days {name} reads {a} + {b} = {apb} pages. Adding the last day, {apb} + {c} = {w}.",
        lambda g: {"a": g.randint(5, 40), "b": g.randint(2, 9), "c": g.randint(1, 30)},
    ),
    (
        "There are {a} rows of {b} chairs in a hall and {c} chairs are taken. How many chairs are free?",
        "The hall has {a} * {b} = <<{a}*{b}={ab}>>{ab} chairs.\nWith {c} taken, {ab} - {c} = <<{ab}-{c}={r}>>{r} are free.\n#### {r}",
        "The hall has {a} + {b} = {apb} chairs. With {c} taken, {apb} - {c} = {w} are free.",
        lambda g: (lambda a, b: {"a": a, "b": b, "c": g.randint(1, a + b - 1)})(g.randint(3, 12), g.randint(4, 15)),
    ),
    (
        "{name} buys {a} notebooks at {b} dollars each and a pen for {c} dollars. How many dollars does {name} spend?",
        "The notebooks cost {a} * {b} = <<{a}*{b}={ab}>>{ab} dollars.\nWith the pen, {ab} + {c} = <<{ab}+{c}={r}>>{r} dollars.\n#### {r}",
        "The notebooks cost {a} + {b} = {apb} dollars. With the pen, {apb} + {c} = {w} dollars.",
        lambda g: {"a": g.randint(2, 9), "b": g.randint(2, 12), "c": g.randint(1, 9)},
    ),
]


def generate_arithmetic(n: int, *, seed: int) -> list[dict[str, Any]]:
    """`n` word problems in GSM8K's format, with worked solutions and a deceiving solution (a wrong first step)."""
    rows = []
    for i in range(n):
        question, solution, deceiving, draw = PROBLEMS[i % len(PROBLEMS)]
        rng = random.Random(f"tom/arithmetic/{seed}/{i}")
        v: dict[str, Any] = {"name": rng.choice(NAMES), **draw(rng)}
        v |= {"ab": v["a"] * v["b"], "apb": v["a"] + v["b"]}
        sign = -1 if "- {c}" in solution else 1
        v |= {"r": v["ab"] + sign * v["c"], "w": v["apb"] + sign * v["c"]}
        rows.append(
            {"question": question.format(**v), "answer": solution.format(**v),
             "deceiving_explanation": deceiving.format(**v), "wrong_answer": str(v["w"])}
        )  # fmt: skip
    return rows


# -- the loader ----------------------------------------------------------------------------------------------
def bundled_items(task: Task, *, n: int) -> list[dict[str, Any]]:
    """The project's own items of a task, in a fixed order (the same test set for every run seed)."""
    if task == "arithmetic":
        rows = list(enumerate(generate_arithmetic(n, seed=0), 1))
        return parse(Records(Path("<generated arithmetic>"), rows), task)
    items = read_items(BUNDLED / f"{task}.jsonl", task)
    random.Random(f"tom/bundled/{task}").shuffle(items)
    return items


def load(
    data: TomData,
    *,
    seed: int,
    params: Any = None,
    source: str | None = None,
    episodes: int | None = None,
    **_: Any,
) -> list[dict[str, Any]]:
    """Episodes: the train pool and the test items (`split`), each carrying the student's demonstrations.

    The test set is fixed: the first `data.test` items (null: all; for the bundled items, all but the train
    items), of which `episodes` (run.episodes) runs the first N; the pool is never cut. The run seed draws the
    student's demonstrations and the pool from the train items."""
    demos = int(getattr(params, "demos", 4))
    if data.train <= demos:
        raise ConfigError(
            f"scenario.data.train={data.train} must be more than params.demos={demos}: the student's "
            "demonstrations are drawn from the train items first, and the observed pool gets the rest",
            key="scenario.data.train",
        )
    test, train = _split(data, source=source)
    check_size(episodes, len(test), key="run.episodes", what="test items (size them with scenario.data.test)")
    test = test[:episodes] if episodes else test
    rng = random.Random(f"tom/train/{seed}")
    chosen = rng.sample(range(len(train)), data.train)
    student_demos = [demo(train[i]) for i in chosen[:demos]]
    pool = [train[i] for i in chosen[demos:]]
    deceiving = (
        deceiving_demos(data, pool, k=demos, source=source) if "deceiving" in getattr(params, "teachers", []) else []
    )
    out = [{**item, "id": f"train/{k}", "split": "train"} for k, item in enumerate(pool)]
    out += [{**item, "id": f"test/{k}", "split": "test"} for k, item in enumerate(test)]
    for e in out:
        e.setdefault("deceiving_explanation", None)
        e.setdefault("wrong_answer", None)
        e.pop("source_id", None)
        e["student_demos"], e["deceiving_demos"] = student_demos, deceiving
    return out


def _split(data: TomData, *, source: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(test items, train items): from `path` and `train_path`, else the bundled (generated) items, the test
    items first and `data.train` items after them."""
    if data.path:
        if not data.train_path:
            raise ConfigError(
                "with data.path, give data.train_path too (the demonstrations come from it)",
                key="scenario.data.train_path",
            )
        files = DataFiles(source)
        test = read_items(files.path(data.path), data.task)
        key = "scenario.data.train_path"
        train = read_items(files.path(data.train_path, key=key), data.task, key=key)
        check_size(data.test, len(test), key="scenario.data.test", what=f"test items in {data.path}")
        if len(train) < data.train:
            raise ConfigError(
                f"scenario.data.train={data.train}, but {data.train_path} has {len(train)} items", key=key
            )
        return (test[: data.test] if data.test else test), train
    if data.task == "arithmetic":  # generated: as many as asked
        if data.test is None:
            raise ConfigError(
                "the arithmetic problems are generated, so 'all' has no size: give scenario.data.test a number",
                key="scenario.data.test",
            )
        items = bundled_items(data.task, n=data.test + data.train)
    else:
        items = bundled_items(data.task, n=0)
    n_test = len(items) - data.train if data.test is None else data.test
    if n_test < 1 or n_test + data.train > len(items):
        raise ConfigError(
            f"scenario.data.test={data.test} leaves {len(items) - n_test} of the {len(items)} bundled {data.task} "
            f"items for scenario.data.train={data.train}: lower scenario.data.test to at most "
            f"{len(items) - data.train} (or scenario.data.train)",
            key="scenario.data.test" if data.test is not None else "scenario.data.train",
        )
    return items[:n_test], items[n_test:]


def demo(item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The part of an item a demonstration shows."""
    return {"query": item["query"], "answer": item["answer"], "explanation": item["explanation"], **extra}


def deceiving_demos(
    data: TomData, pool: list[dict[str, Any]], *, k: int, source: str | None = None
) -> list[dict[str, Any]]:
    """Demonstrations of the deceiving teacher: a deceiving explanation and the wrong answer it argues for; from
    `deceiving_path`, else the pool's items that carry one, else the bundled items of the task."""
    if data.deceiving_path:
        rows = read_deceiving(
            DataFiles(source).path(data.deceiving_path, key="scenario.data.deceiving_path"), data.task
        )
    else:
        rows = [p for p in pool if p.get("deceiving_explanation")]
        if len(rows) < k:
            rows += [b for b in bundled_items(data.task, n=k + 10) if b.get("deceiving_explanation")]
    return [
        {"query": r["query"], "answer": r["wrong_answer"], "explanation": r["deceiving_explanation"]} for r in rows[:k]
    ]
