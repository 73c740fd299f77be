"""A self-collaboration persona: one participant of a multi-persona collaboration, with a name and a profile.

With `speaker: <state key>`, one role plays every participant a model chose at run time: at each turn the episode
state's `<key>` holds `{name, profile}` of who speaks now, and the persona answers with that participant's own
system prompt (so each participant is a separate agent, and its replies are cached apart from the others')."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from schola import templates
from schola.roles import ActRequest, Reply, Role, RoleConfig

if TYPE_CHECKING:  # autogen_core loads when a role is built (as in schola.roles), not for `schola check`
    from autogen_core.models import ChatCompletionClient


class PersonaConfig(RoleConfig):
    title: str | None = Field(None, description="the name the persona speaks as (default: the role's name)")
    speaker: str | None = Field(None, description="a state key holding {name, profile} of the participant speaking")


class Persona(Role):
    """A participant that speaks as `title`, with `persona` as its profile (its expertise or needs)."""

    Config: ClassVar[type[RoleConfig]] = PersonaConfig
    config: PersonaConfig
    system_prompt: ClassVar[str] = (
        "You are {{ name }}{% if persona %}: {{ persona }}{% endif %}. "
        "You take part in a collaboration with other participants; speak only as {{ name }}."
    )
    sees_state: ClassVar[bool] = True

    def __init__(self, name: str, config: RoleConfig, client: ChatCompletionClient | None, *, seed: int = 0) -> None:
        from autogen_core.models import SystemMessage

        super().__init__(name, config, client, seed=seed)
        self.title = self.config.title or name
        self.system = self.system_for(self.title, config.persona)
        self._system = [SystemMessage(content=self.system)] if self.system.strip() else []
        self._voices: dict[tuple[str, str], Role] = {}

    def system_for(self, title: str, profile: str) -> str:
        """The system prompt of a participant: the role's template with its name and profile."""
        return templates.render(self.config.system or self.system_prompt, {"name": title, "persona": profile})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "title": self.title}

    def voice(self, title: str, profile: str) -> Role:
        """The participant `title` as a role of its own (same backend and sampling, its own system prompt)."""
        key = (title, profile)
        if key not in self._voices:
            # The system prompt is passed as a value, never as a template: model-chosen names stay plain text.
            update = {"system": "{{ persona }}", "persona": self.system_for(title, profile)}
            self._voices[key] = Role(self.name, self.config.model_copy(update=update), self.client, seed=self.seed)
        return self._voices[key]

    async def act(self, request: ActRequest) -> Reply:
        """Answer as the participant named in `state[speaker]`, or as this persona itself."""
        state = request.state
        speaker = state.get(self.config.speaker) if state is not None and self.config.speaker else None
        if not isinstance(speaker, Mapping):
            return await super().act(request)
        title = str(speaker.get("name") or self.title)
        profile = str(speaker.get("profile") or "")
        return await self.voice(title, profile).act(request)
