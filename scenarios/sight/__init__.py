"""SIGHT (Wang, Wirawarn, Goodman, Demszky; BEA 2023): does an LLM label lecture comments as human annotators do?

Protocol (authors' code: rosewang2008/sight, `prompts/` and `scripts/run_irr.py`):
  1. Comments on MIT OCW math lectures; nine categories: general, confusion, pedagogy, setup, gratitude,
     personal_experience, clarification, non_english, na.
  2. One binary prompt per comment and category, with the playlist and video title as context: zero-shot
     ("If the statement below is true, please respond "true" ..."), 3-shot, or 3-shot with reasoning
     ("Explanation: ... Label: true"), selected by `scenario.variant`.
  3. Two human annotators (simulated with a per-category reliability, or the file's real labels) and one or more
     LLM annotators label every (comment, category): one episode each.
  4. Per category: Cohen's kappa between the humans (IRR) and the mean kappa of a model with each human; the
     paper finds that categories with IRR > 0.9 get model kappa > 0.7, and those with IRR 0.7-0.8 only 0.3-0.5.
     Also Krippendorff's alpha, the correlation of IRR and model kappa across categories, tokens per comment.
"""

from __future__ import annotations

import re
from typing import Any

from schola.scenarios.sight.data import CATEGORIES, SightData, SightParams, load
from schola.scenarios.sight.report import report as report_stage

from schola.scenario import Scenario

__all__ = ["CATEGORIES", "label", "scenario"]

_AFTER_LABEL = re.compile(r"label\s*:", re.I)
_LABEL_IS = re.compile(r"label\s+is\s+\W*(true|false)\b", re.I)
_WORD = re.compile(r"\b(true|false)\b", re.I)
_YES_NO = re.compile(r"\W*(yes|no)\s*(?:[.,!;:]|$)", re.I)  # "No." or "Yes, ..." but not "No idea"


def _first(text: str) -> str | None:
    m = _YES_NO.match(text) or _WORD.search(text)
    return None if m is None else {"yes": "true", "no": "false"}.get(m.group(1).lower(), m.group(1).lower())


def answer_of(text: str) -> str | None:
    """'true' or 'false' from a reply: the first after the last `Label:`, else the last "the label is X", else
    the first true/false in the reply (or a leading yes/no)."""
    parts = _AFTER_LABEL.split(text)
    if len(parts) > 1 and (found := _first(parts[-1])) is not None:
        return found
    if stated := _LABEL_IS.findall(text):
        return str(stated[-1]).lower()
    return _first(text)


def label(reply: Any, *, true_means: int = 1) -> int | None:
    """The 0/1 label of an annotator's reply: a human's label as is; a model's "true"/"false" turned into the
    category's label (`true_means` 0 for non_english, whose prompt asks "Is the comment in English?"). None when
    the reply holds no answer."""
    if reply is None or isinstance(reply, bool):
        return None if reply is None else int(reply)
    if isinstance(reply, int | float):
        return int(reply) if reply in (0, 1) else None
    found = answer_of(str(reply))
    if found is None:
        return None
    return int((found == "true") == bool(true_means))


scenario = Scenario(
    name="sight",
    description=__doc__.splitlines()[0],
    load=load,
    data=SightData,
    params=SightParams,
    scorers={"label": label},
    stages={"report": report_stage},
)
