"""Bodies shared by the personalized and translated chapter APIs."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

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
        pattern=r"\S",
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
