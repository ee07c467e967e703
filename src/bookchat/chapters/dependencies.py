"""HTTP plumbing shared by the personalized and translated chapter routes: the language-model
gate, the generation rate limit, the chapter service and the event stream."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends

from bookchat.accounts.dependencies import get_optional_user
from bookchat.chapters.service import ChapterService
from bookchat.core.errors import LLMUnavailable
from bookchat.core.openapi import error_responses
from bookchat.dependencies import ContainerDep, rate_limited

OFFLINE_MESSAGE = (
    "This server answers offline (extractive mode), without a language model. Set "
    "OPENAI_API_KEY (or OPENAI_BASE_URL with LLM_PROVIDER=openai) to enable personalized and "
    "translated chapters."
)


def require_language_model(container: ContainerDep) -> None:
    """503 `llm_unavailable` when the server runs the offline extractive answerer."""
    if container.providers.chat.mode == "extractive":
        raise LLMUnavailable(OFFLINE_MESSAGE)


def get_chapter_service(container: ContainerDep) -> ChapterService:
    return ChapterService(
        settings=container.settings,
        model=container.providers.chat,
        sessionmaker=container.sessionmaker,
    )


ChapterServiceDep = Annotated[ChapterService, Depends(get_chapter_service)]

# Offline first (no point counting a request that cannot be served), then the limit, counted
# per signed-in reader, else per client address: RATE_LIMIT_GENERATION, one budget for both.
GENERATION_GUARDS = [
    Depends(require_language_model),
    Depends(rate_limited("generation", lambda s: s.rate_limit_generation, after=get_optional_user)),
]
GENERATION_ERRORS = error_responses(400, 401, 404, 413, 429, 502, 503, 504)

STREAM_DOC = """Server-Sent Events, each `data:` a JSON object: `start` {document_id, variant,
cached, model, sections, ...} → `token` {text} (whole sections, in order; their concatenation is
the chapter) → `done` (the same object as the one-piece answer), or `error` {code, message}.
A comment ping keeps proxies from closing the stream while a section is being written."""


def stream_responses() -> dict[int | str, dict[str, Any]]:
    return {
        200: {"content": {"text/event-stream": {}}, "description": STREAM_DOC},
        **error_responses(400, 401, 404, 413, 429, 503),
    }
