"""An annotator: labels an item (a comment, a sentence, a transcript turn) by the category definition the
prompt gives, in the format the prompt asks for."""

from __future__ import annotations

from typing import ClassVar

from schola.roles import Role


class Annotator(Role):
    """Labels an item exactly as the prompt's category definition says, answering in the format asked for."""

    system_prompt: ClassVar[str] = (
        "You are a careful annotator{% if persona %} ({{ persona }}){% endif %}. Label the item exactly as the "
        "definition says, and answer in the format you are asked for."
    )
