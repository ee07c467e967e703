"""Bodies of the chapter APIs: which chapter (shared), then each variant's request and answer."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from bookchat.accounts.models import SkillLevel
from bookchat.accounts.schemas import LanguageTag, ProfileText
from bookchat.chapters.languages import Direction
from bookchat.core.errors import VISIBLE_TEXT_PATTERN

MAX_CONTENT_CHARS = 200_000
_SOURCES = ("document_id", "source_path", "content")
# "Exactly one source" in JSON Schema: one of the three present and not null.
ONE_SOURCE: list[JsonValue] = [
    {"required": [name], "properties": {name: {"type": "string"}}} for name in _SOURCES
]


class ChapterSource(BaseModel):
    """Which chapter: exactly one of `document_id`, `source_path` or `content`."""

    # A misspelt field must not silently fall back to a default (a language, a profile).
    # Subclasses that set `json_schema_extra` keep `"oneOf": ONE_SOURCE` in it.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": ONE_SOURCE})

    document_id: uuid.UUID | None = Field(default=None, description="A stored document's id.")
    source_path: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="A stored document's path in the book, such as `module-1/nodes.md`.",
    )
    content: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CONTENT_CHARS,
        pattern=VISIBLE_TEXT_PATTERN,
        description=(
            "Markdown to rewrite directly (at most 200,000 characters). Not cached: send a "
            "`document_id` or `source_path` for a chapter of the book."
        ),
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ChapterSource:
        given = [name for name in _SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "Send exactly one of document_id, source_path or content"
                + (f" (got {', '.join(given)})." if given else ".")
            )
        return self


class GeneratedRead(BaseModel):
    """A chapter a language model rewrote, as Markdown."""

    content: str = Field(description="The rewritten chapter (Markdown).")
    document_id: uuid.UUID | None = Field(description="Null when `content` was sent.")
    variant: str = Field(description="The cache variant: a profile fingerprint or a language.")
    cached: bool = Field(description="True when served from the cache (no model call).")
    model: str
    generated_at: datetime


# --- personalized chapters ----------------------------------------------------------------------

# At least one field that changes the chapter (blank text does not count).
_SAYS_SOMETHING: list[JsonValue] = [
    {"required": [name], "properties": {name: {"type": "string", "pattern": VISIBLE_TEXT_PATTERN}}}
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


# --- translated chapters ----------------------------------------------------------------------


class TranslateCreate(ChapterSource):
    """A chapter to translate, and the language to translate it into."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": ONE_SOURCE,
            "examples": [
                {"source_path": "module-1-ros2/nodes.md", "target_language": "ur"},
                {"content": "# Nodes\n\nA node is a process.", "target_language": "pt-BR"},
            ],
        }
    )

    target_language: LanguageTag = Field(
        default="ur", description="A BCP 47 language tag: `ur` (default), `ar`, `es`, `pt-BR`..."
    )


class TranslationRead(GeneratedRead):
    """The chapter translated; code, commands, URLs and identifiers are unchanged."""

    language: str = Field(description="The normalized target language tag.")
    direction: Direction = Field(description="How the front end should lay the text out.")
