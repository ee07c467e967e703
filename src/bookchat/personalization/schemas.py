"""Bodies of the personalized chapter API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from bookchat.accounts.models import SkillLevel
from bookchat.accounts.schemas import LanguageTag, ProfileText
from bookchat.content.chapter_schemas import ONE_SOURCE, ChapterSource, GeneratedRead

# At least one field that changes the chapter (blank text does not count).
_SAYS_SOMETHING: list[JsonValue] = [
    {"required": [name], "properties": {name: {"type": "string", "pattern": r"\S"}}}
    for name in ("software_level", "hardware_level", "background", "goals")
]


class ReaderProfile(BaseModel):
    """Who the chapter is for: the fields of the accounts profile, at least one level,
    background or goals."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"anyOf": _SAYS_SOMETHING}
    )

    software_level: SkillLevel | None = None
    hardware_level: SkillLevel | None = None
    background: ProfileText = Field(
        default=None, description="Free text, e.g. `web developer, no GPU, a Raspberry Pi`."
    )
    goals: ProfileText = None
    preferred_language: LanguageTag | None = Field(
        default=None,
        description="Accepted so a saved profile can be sent as is; personalizing keeps the "
        "chapter's language (use /translate to change it).",
    )


class PersonalizeCreate(ChapterSource):
    """A chapter to personalize; `profile` defaults to the signed-in reader's saved profile."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": ONE_SOURCE,
            "examples": [
                {"source_path": "module-1-ros2/nodes.md"},
                {
                    "document_id": "6f1c1d3e-6a55-4b5e-9f0e-3d1b8f0c2a77",
                    "profile": {
                        "software_level": "advanced",
                        "hardware_level": "beginner",
                        "background": "backend developer, laptop without a GPU",
                    },
                },
            ],
        }
    )

    profile: ReaderProfile | None = Field(
        default=None,
        description="Personalize for this profile instead of the saved one (anonymous callers "
        "only when ALLOW_ANONYMOUS_PERSONALIZATION is on).",
    )


class PersonalizationRead(GeneratedRead):
    """The chapter rewritten for one reader profile; `variant` is the profile's fingerprint."""
