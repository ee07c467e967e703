"""Translated chapters: one answer, or Server-Sent Events while the chapter is written."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sse_starlette import EventSourceResponse

from bookchat.content.chapter_api import (
    GENERATION_ERRORS,
    GENERATION_GUARDS,
    ChapterServiceDep,
    stream_responses,
)
from bookchat.core.sse import event_stream
from bookchat.dependencies import SessionDep, SettingsDep
from bookchat.translation.schemas import TranslateCreate, TranslationRead
from bookchat.translation.service import TranslationService


def get_translation_service(
    chapters: ChapterServiceDep, settings: SettingsDep
) -> TranslationService:
    return TranslationService(chapters=chapters, settings=settings)


TranslationServiceDep = Annotated[TranslationService, Depends(get_translation_service)]

router = APIRouter(tags=["translation"])


@router.post(
    "/translate",
    response_model=TranslationRead,
    responses=GENERATION_ERRORS,
    dependencies=GENERATION_GUARDS,
)
async def translate_chapter(
    payload: TranslateCreate, db: SessionDep, service: TranslationServiceDep
) -> TranslationRead:
    """A chapter translated (Urdu by default); code, URLs and identifiers stay as they are."""
    chapter = await service.translate(db, payload)
    return TranslationRead.model_validate(chapter.payload())


@router.post(
    "/translate/stream",
    response_class=EventSourceResponse,
    responses=stream_responses(),
    dependencies=GENERATION_GUARDS,
)
async def stream_translated_chapter(
    payload: TranslateCreate,
    db: SessionDep,
    service: TranslationServiceDep,
    settings: SettingsDep,
) -> EventSourceResponse:
    """The translated chapter as Server-Sent Events, section by section."""
    return event_stream(await service.stream(db, payload), settings)
