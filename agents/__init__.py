"""Built-in roles. They register through the `schola.roles` entry points, exactly as plugins do."""

from schola.agents.judge import Judge
from schola.agents.student import Student
from schola.agents.teacher import Teacher

__all__ = ["Judge", "Student", "Teacher"]
