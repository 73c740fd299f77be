"""Generic episode scorers, usable from YAML alone: exact match, numeric match, contains, regex, LLM judge, and
the answer extraction they share. Registered through the `schola.scorers` entry points like any plugin's.

A scorer is called with its step's `inputs` and `params` as keyword arguments; one that declares a `ctx`
parameter also gets the episode context (to ask a role, as `llm_judge` does). It returns a `Score`: the value
recorded, and the answer it found and why, kept in `results.jsonl`. A bare number (or None) is accepted as
`Score(value)`, so scorers written before the record keep working."""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from schola import sandbox
from schola.errors import ConfigError
from schola.scenario import uses_roles

_NUM = r"-?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+"
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FINAL = re.compile(r"\[\[\s*final answer\s*\]\]\s*:?\s*(.+)", re.IGNORECASE)
_STATED = re.compile(r"(?:final answer|the answer is|answer\s*:)\s*:?[ \t]*", re.IGNORECASE)
_LEADING_NUMBER = re.compile(r"\$?\s*(" + _NUM + r")")
_NUMBER = re.compile(_NUM)
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")


@dataclass(frozen=True)
class Score:
    """What a scorer returns (inspect's `Score`): the value metrics average, and what it rests on.

    Args:
        value: the score (a number or bool; None: no score, left out of means).
        answer: the answer the scorer read from the output (`numeric_match`'s extracted number).
        explanation: why (a judge's reply).
        metadata: anything else worth keeping with the episode (JSON-serialisable).
    """

    value: float | None
    answer: str | None = None
    explanation: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.value is not None and not isinstance(self.value, numbers.Real):
            raise TypeError(f"Score.value must be a number, a bool or None, not {type(self.value).__name__}")

    def details(self) -> dict[str, Any]:
        """answer, explanation and metadata, those set only (what results.jsonl keeps beside the value)."""
        out = {"answer": self.answer, "explanation": self.explanation, "metadata": self.metadata}
        return {k: v for k, v in out.items() if v}


def _boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, nested braces included."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i = depth = starts[-1]
    depth = 1
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[starts[-1] : i - 1] if depth == 0 else None


def normalize(answer: str) -> str:
    """Canonical text of an answer: no $, \\text{}, spaces, thousands separators or trailing period;
    \\frac{a}{b} as a/b."""
    a = answer.strip().strip("$").strip()
    a = re.sub(r"\\text\s*\{([^{}]*)\}", r"\1", a)
    a = _FRAC.sub(r"(\1)/(\2)", a)
    a = re.sub(r"\\[,!; ]|\\left|\\right", "", a)
    a = re.sub(r"(?<=\d),(?=\d{3}\b)", "", a)
    a = a.rstrip(".").strip()
    a = re.sub(r"\((-?\d+)\)/\((\d+)\)", r"\1/\2", a)
    return re.sub(r"\s+", "", a)


def to_number(answer: str | None) -> Fraction | None:
    """The exact value of a numeric answer (integer, decimal, fraction), or None."""
    if answer is None:
        return None
    a = normalize(answer)
    if not re.fullmatch(r"-?(\d+(\.\d+)?|\.\d+)(/\d+)?", a):
        return None
    try:
        return Fraction(a)
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(text: str | None, *, strict: bool = True) -> str | None:
    """The final answer in a reply: `[[Final Answer]]: $ANS$`, else the last `\\boxed{}`, else
    "the answer is ...", else (when not strict) the last number. None when there is none."""
    if not text:
        return None
    found: str | None = None
    if m := _FINAL.search(text):
        found = m.group(1).strip()
        dollars = re.match(r"\$([^$]*)\$", found)
        found = dollars.group(1) if dollars else found.splitlines()[0]
    elif (b := _boxed(text)) is not None:
        found = b
    elif ms := list(_STATED.finditer(text)):
        # the last statement wins ("The answer is 6, because ... The answer is 11" -> 11); of it, the number it
        # starts with ("6, because 2 + 4" -> 6), else its first sentence
        found = (text[ms[-1].end() :].splitlines() or [""])[0].strip()
        if (b := _boxed(found)) is not None:
            found = b
        elif lead := _LEADING_NUMBER.match(found):
            found = lead.group(1)
        else:
            found = re.split(r"(?<=[^\d])\.(?:\s|$)|;|,\s+(?:because|since|as|so)\b", found)[0]
        if not found.strip(" .:$"):
            return None if strict else (normalize(n[-1]) if (n := _NUMBER.findall(text)) else None)
    if found is not None:
        found = found.strip()
        # "The answer is 42 apples." -> the number, when the phrase holds exactly one
        nums = _NUMBER.findall(found)
        if to_number(found) is None and len(nums) == 1 and not _FRAC.search(found):
            found = nums[0]
        found = normalize(found)
        return found or None
    if not strict and (nums := _NUMBER.findall(text)):
        return normalize(nums[-1])
    return None


def same_answer(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    na, nb = to_number(a), to_number(b)
    if na is not None and nb is not None:
        return na == nb
    return normalize(a).lower() == normalize(b).lower()


def _aliases(target: Any) -> list[Any]:
    """A target that is a list or tuple stands for any of its elements."""
    return list(target) if isinstance(target, (list, tuple)) else [target]


def exact_match(prediction: Any, target: Any, *, ignore_case: bool = True) -> Score:
    """1.0 when `prediction` equals `target` (or any element of a list target), ignoring surrounding spaces."""
    p = str(prediction).strip()
    for t in _aliases(target):
        t = str(t).strip()
        if (p.lower() == t.lower()) if ignore_case else (p == t):
            return Score(1.0)
    return Score(0.0)


def numeric_match(prediction: str | None, target: Any, *, strict: bool = False) -> Score:
    """1.0 when the answer extracted from `prediction` equals `target` (or any element of a list target),
    numerically when both are numbers; the extracted answer is the score's `answer`."""
    found = extract_answer(prediction, strict=strict)
    return Score(float(any(same_answer(found, str(t)) for t in _aliases(target))), answer=found)


def value(value: Any) -> Score:
    """Records a number the episode computed (the passes a loop took, a role's own measure) as a score: a
    number, a bool, a numeric string or None (no score)."""
    if value is None or isinstance(value, numbers.Real):
        return Score(None if value is None else float(value))
    try:
        return Score(float(str(value)))
    except ValueError:
        raise ConfigError(f"scorer 'value' records numbers; got {type(value).__name__} {str(value)[:80]!r}") from None


def contains(text: str | None, target: Any, *, ignore_case: bool = True, word: bool = False) -> Score:
    """1.0 when any of `target` (a string or list of aliases) occurs in `text`. With `word`, only as whole words:
    "ant" does not match "want"; an alias may hold punctuation ("U.S.") and several words ("New York", matched
    across any whitespace). An empty alias matches nothing."""
    hay = text or ""
    flags = re.IGNORECASE if ignore_case else 0
    for alias in (str(t) for t in _aliases(target)):
        if not alias.strip():
            continue
        if word:
            body = r"\s+".join(re.escape(w) for w in alias.split())
            if re.search(rf"(?<!\w){body}(?!\w)", hay, flags):
                return Score(1.0, answer=alias)
        elif (alias.lower() in hay.lower()) if ignore_case else (alias in hay):
            return Score(1.0, answer=alias)
    return Score(0.0)


def regex(text: str | None, *, pattern: str, group: int | None = None) -> Any:
    """1.0/0.0 whether `pattern` matches; with `group`, the matched group's text (None when no match).

    The pattern is a config's, run on a model's reply: its time is bounded (a catastrophic pattern is a
    ConfigError after schola.sandbox.REGEX_TIMEOUT_S, not a blocked run), and `check` refuses one that repeats a
    repetition (`(a+)+`)."""
    m = sandbox.search(pattern, text or "", re.DOTALL)
    if group is None:
        return float(m is not None)
    return m.group(group) if m else None


def _check_regex(params: Mapping[str, Any]) -> None:
    """At `check`: the step's pattern compiles and has no nested quantifier."""
    if isinstance(params.get("pattern"), str):
        sandbox.pattern(params["pattern"], re.DOTALL)


regex.__schola_check__ = _check_regex  # type: ignore[attr-defined]


@uses_roles("judge")
async def llm_judge(
    ctx: Any, *, answer: str, rubric: str, question: str = "", judge: str = "judge", scale: float = 10.0
) -> Score:
    """A judge role grades `answer` against `rubric`: the score after 'Score:' divided by `scale` (None if absent),
    the judge's reply as its explanation."""
    prompt = (
        f"Question:\n{question}\n\nRubric:\n{rubric}\n\nAnswer:\n{answer}\n\nGrade it. End with 'Score: <0-{scale:g}>'."
    )
    reply = (await ctx.act(judge, prompt)).text
    m = re.findall(r"score\s*:\s*(" + _NUM + ")", reply, re.IGNORECASE)
    found = to_number(m[-1]) if m else None
    graded = None if found is None else max(0.0, min(1.0, float(found) / scale))
    return Score(graded, answer=m[-1] if m else None, explanation=reply)
