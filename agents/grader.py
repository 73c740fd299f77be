"""A grader: compares an answer with a reference answer (and a rubric, when the prompt gives one), reasons step by
step and ends with a grade. With a persona it can also play a peer grader (hasty, lenient, ...)."""

from __future__ import annotations

from typing import ClassVar

from schola.roles import Role


class Grader(Role):
    """Grades an answer against the reference (and rubric) it is given and ends with 'Grade: <number>'."""

    system_prompt: ClassVar[str] = (
        "You are a fair grader{% if persona %} ({{ persona }}){% endif %}. Compare the answer with what you are "
        "given, think step by step, and end with 'Grade: <number>'."
    )
