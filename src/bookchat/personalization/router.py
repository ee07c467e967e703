"""Personalized chapters: one answer, or Server-Sent Events while the chapter is written."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sse_starlette import EventSourceResponse

from bookchat.accounts.dependencies import OptionalUser
from bookchat.content.chapter_api import (
    GENERATION_ERRORS,
    GENERATION_GUARDS,
    ChapterServiceDep,
    stream_responses,
)
from bookchat.core.sse import event_stream
from bookchat.dependencies import SessionDep, SettingsDep
from bookchat.personalization.schemas import PersonalizationRead, PersonalizeCreate
from bookchat.personalization.service import PersonalizationService


def get_personalization_service(
    chapters: ChapterServiceDep, settings: SettingsDep
) -> PersonalizationService:
    return PersonalizationService(chapters=chapters, settings=settings)


PersonalizationServiceDep = Annotated[PersonalizationService, Depends(get_personalization_service)]

router = APIRouter(tags=["personalization"])


@router.post(
    "/personalize",
    response_model=PersonalizationRead,
    responses=GENERATION_ERRORS,
    dependencies=GENERATION_GUARDS,
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
