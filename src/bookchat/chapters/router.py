"""Chapters rewritten by a language model, personalized or translated: each as one answer, or as
Server-Sent Events while the chapter is written."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sse_starlette import EventSourceResponse

from bookchat.chapters.dependencies import (
    GENERATION_GUARDS,
    ChapterServiceDep,
    PersonalizeRequest,
    TranslateRequest,
)
from bookchat.chapters.schemas import PersonalizationRead, TranslationRead
from bookchat.core.openapi import error_responses
from bookchat.core.sse import event_stream
from bookchat.dependencies import SessionDep, SettingsDep

GENERATION_ERRORS = error_responses(400, 401, 404, 413, 429, 502, 503, 504)
STREAM_DOC = """Server-Sent Events, each `data:` a JSON object: `start` {document_id, variant,
cached, model, sections, ...} → `token` {text} (whole sections, in order; their concatenation is
the chapter) → `done` (the same object as the one-piece answer), or `error` {code, message}.
A comment ping keeps proxies from closing the stream while a section is being written."""
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": STREAM_DOC},
    **error_responses(400, 401, 404, 413, 429, 503),
}

router = APIRouter(dependencies=GENERATION_GUARDS)


@router.post(
    "/personalize",
    response_model=PersonalizationRead,
    responses=GENERATION_ERRORS,
    tags=["personalization"],
)
async def personalize_chapter(
    chapter_request: PersonalizeRequest,
    db: SessionDep,
    chapters: ChapterServiceDep,
) -> PersonalizationRead:
    """A chapter rewritten for the reader's profile: same facts, headings, code and links."""
    chapter = await chapters.generate(db, chapter_request)
    return PersonalizationRead.model_validate(chapter.payload())


@router.post(
    "/personalize/stream",
    response_class=EventSourceResponse,
    responses=STREAM_RESPONSES,
    tags=["personalization"],
)
async def stream_personalized_chapter(
    chapter_request: PersonalizeRequest,
    db: SessionDep,
    chapters: ChapterServiceDep,
    settings: SettingsDep,
) -> EventSourceResponse:
    """The personalized chapter as Server-Sent Events, section by section."""
    return event_stream(await chapters.stream(db, chapter_request), settings)


@router.post(
    "/translate",
    response_model=TranslationRead,
    responses=GENERATION_ERRORS,
    tags=["translation"],
)
async def translate_chapter(
    chapter_request: TranslateRequest,
    db: SessionDep,
    chapters: ChapterServiceDep,
) -> TranslationRead:
    """A chapter translated (Urdu by default); code, URLs and identifiers stay as they are."""
    chapter = await chapters.generate(db, chapter_request)
    return TranslationRead.model_validate(chapter.payload())


@router.post(
    "/translate/stream",
    response_class=EventSourceResponse,
    responses=STREAM_RESPONSES,
    tags=["translation"],
)
async def stream_translated_chapter(
    chapter_request: TranslateRequest,
    db: SessionDep,
    chapters: ChapterServiceDep,
    settings: SettingsDep,
) -> EventSourceResponse:
    """The translated chapter as Server-Sent Events, section by section."""
    return event_stream(await chapters.stream(db, chapter_request), settings)
