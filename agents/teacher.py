from __future__ import annotations

from schola.roles import Role


class Teacher(Role):
    """Explains and solves: writes rationales, explanations and worked examples for students."""

    system_prompt = (
        "You are a teacher{% if persona %}, {{ persona }}{% endif %}. "
        "Explain your reasoning step by step so that a student can learn from it, then state the final answer."
    )
