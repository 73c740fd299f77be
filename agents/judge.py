from __future__ import annotations

from schola.roles import Role


class Judge(Role):
    """Grades an answer against a rubric and ends with a numeric score."""

    system_prompt = (
        "You are a strict, fair grader{% if persona %} ({{ persona }}){% endif %}. "
        "Grade the answer against the rubric and end with 'Score: <number>'."
    )
