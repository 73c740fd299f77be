"""In-BoXBART's metrics, as the authors' `scripts/evaluation.py` computes them: the gold output is split on ", "
into its labels and each metric is the best over those labels — ROUGE-L (F-measure, Porter stemmer, the
`rouge-score` package), SQuAD token F1 and exact match on normalised text (lower case, no punctuation, no
articles, single spaces)."""

from __future__ import annotations

import re
import string
import sys
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_OUTPUT = re.compile(r"^\s*(?:(?:the\s+)?output(?:\s+is)?\s*:\s*)+", re.IGNORECASE)


def gold_outputs(gold: Any) -> list[str]:
    """The gold labels: a list as given, a string split on ", " (several labels are joined by ", ")."""
    if isinstance(gold, (list, tuple)):
        return [str(g) for g in gold] or [""]
    return str(gold).split(", ")


def answer(reply: str | None) -> str:
    """The model's output: the first non-empty line of its reply, without a leading "output:" (or a chat
    model's "The output is:")."""
    for line in (reply or "").splitlines():
        if text := _OUTPUT.sub("", line).strip():
            return text
    return ""


def normalize(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from absl import logging as absl_logging  # rouge-score logs through absl
    from rouge_score import rouge_scorer

    # absl's handler keeps the sys.stderr of the moment absl was imported; a harness (pytest, a notebook) that
    # swaps and closes sys.stderr would leave it writing to a closed file, which crashed a later Hydra sweep
    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def _rouge_l(prediction: str, gold: str) -> float:
    return float(_rouge().score(gold, prediction)["rougeL"].fmeasure)


def _f1(prediction: str, gold: str) -> float:
    p, g = normalize(prediction).split(), normalize(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _exact(prediction: str, gold: str) -> float:
    return float(normalize(prediction) == normalize(gold))


def _best(metric: Callable[[str, str], float], prediction: str | None, gold: Any) -> float:
    text = answer(prediction)
    return max(metric(text, g) for g in gold_outputs(gold))


def rouge_l(prediction: str | None, gold: Any) -> float:
    """ROUGE-L F-measure of the reply's output against the best gold label."""
    return _best(_rouge_l, prediction, gold)


def token_f1(prediction: str | None, gold: Any) -> float:
    """SQuAD token F1 of the reply's output against the best gold label."""
    return _best(_f1, prediction, gold)


def exact_match(prediction: str | None, gold: Any) -> float:
    """1.0 when the reply's output equals one gold label after normalisation."""
    return _best(_exact, prediction, gold)


METRICS: dict[str, Callable[[str | None, Any], float]] = {
    "rouge_l": rouge_l,
    "token_f1": token_f1,
    "exact_match": exact_match,
}
