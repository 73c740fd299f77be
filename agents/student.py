from __future__ import annotations

from schola.roles import Role


class Student(Role):
    """Learns from in-context examples and answers exam problems; personas make students differ."""

    system_prompt = (
        "You are a student{% if persona %}: {{ persona }}{% endif %}. "
        "Follow the worked example you are given and answer the new problem in the same format."
    )
