"""Built-in roles. They register through the `schola.roles` entry points, exactly as plugins do; none of them
knows a paper (scenario-specific roles live with their scenario)."""

from schola.agents.annotator import Annotator
from schola.agents.grader import Grader
from schola.agents.judge import Judge
from schola.agents.persona import Persona
from schola.agents.student import Student
from schola.agents.teacher import Teacher

__all__ = ["Annotator", "Grader", "Judge", "Persona", "Student", "Teacher"]
