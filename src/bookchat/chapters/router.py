"""Personalized and translated chapters: one answer, or Server-Sent Events while the chapter is
written."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sse_starlette import EventSourceResponse

from bookchat.accounts.dependencies import OptionalUser
from bookchat.chapters.dependencies import (
    GENERATION_ERRORS,
    GENERATION_GUARDS,
    ChapterServiceDep,
    stream_responses,
)
from bookchat.chapters.personalize import PersonalizationService
from bookchat.chapters.schemas import (
    PersonalizationRead,
    PersonalizeCreate,
    TranslateCreate,
    TranslationRead,
)
from bookchat.chapters.translate import TranslationService
from bookchat.core.sse import event_stream
from bookchat.dependencies import SessionDep, SettingsDep


def get_personalization_service(
    chapters: ChapterServiceDep, settings: SettingsDep
) -> PersonalizationService:
    return PersonalizationService(chapters=chapters, settings=settings)


PersonalizationServiceDep = Annotated[PersonalizationService, Depends(get_personalization_service)]


def get_translation_service(
    chapters: ChapterServiceDep, settings: SettingsDep
) -> TranslationService:
    return TranslationService(chapters=chapters, settings=settings)


TranslationServiceDep = Annotated[TranslationService, Depends(get_translation_service)]

router = APIRouter()


@router.post(
    "/personalize",
    response_model=PersonalizationRead,
    responses=GENERATION_ERRORS,
    dependencies=GENERATION_GUARDS,
    tags=["personalization"],
)
async def personalize_chapter(
    payload: PersonalizeCreate,
    db: SessionDep,
    service: PersonalizationServiceDep,
    reader: OptionalUser,
) -> PersonalizationRead:
    """A chapter rewritten for the reader's profile: same facts, headings, code and links."""
    chapter = await service.personalize(db, payload, reader)
    return PersonalizationRead.model_validate(chapter.payload())


@router.post(
    "/personalize/stream",
    response_class=EventSourceResponse,
    responses=stream_responses(),
    dependencies=GENERATION_GUARDS,
    tags=["personalization"],
)
async def stream_personalized_chapter(
    payload: PersonalizeCreate,
    db: SessionDep,
    service: PersonalizationServiceDep,
    settings: SettingsDep,
    reader: OptionalUser,
) -> EventSourceResponse:
    """The personalized chapter as Server-Sent Events, section by section."""
    return event_stream(await service.stream(db, payload, reader), settings)


@router.post(
    "/translate",
    response_model=TranslationRead,
    responses=GENERATION_ERRORS,
    dependencies=GENERATION_GUARDS,
    tags=["translation"],
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
    tags=["translation"],
)
async def stream_translated_chapter(
    payload: TranslateCreate,
    db: SessionDep,
    service: TranslationServiceDep,
    settings: SettingsDep,
) -> EventSourceResponse:
    """The translated chapter as Server-Sent Events, section by section."""
    return event_stream(await service.stream(db, payload), settings)
