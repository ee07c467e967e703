"""What the chapter routes depend on: the chapter service the lifespan built, the variant each
request asks for, the language-model gate and the generation rate limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from bookchat.accounts.dependencies import OptionalUser, get_optional_user
from bookchat.chapters import personalize, translate
from bookchat.chapters.schemas import PersonalizeCreate, TranslateCreate
from bookchat.chapters.service import ChapterRequest, ChapterService
from bookchat.core.errors import LLMUnavailable
from bookchat.dependencies import ContainerDep, SessionDep, SettingsDep, rate_limited

OFFLINE_MESSAGE = (
    "This server answers offline (extractive mode), without a language model. Set "
    "OPENAI_API_KEY (or OPENAI_BASE_URL with LLM_PROVIDER=openai) to enable personalized and "
    "translated chapters."
)


def get_chapter_service(container: ContainerDep) -> ChapterService:
    """The chapter service the lifespan built."""
    return container.chapters


ChapterServiceDep = Annotated[ChapterService, Depends(get_chapter_service)]


def require_language_model(chapters: ChapterServiceDep) -> None:
    """503 `llm_unavailable` when the server runs the offline extractive answerer."""
    if chapters.offline:
        raise LLMUnavailable(OFFLINE_MESSAGE)


# Offline first (no point counting a request that cannot be served), then the limit, counted
# per signed-in reader, else per client address: RATE_LIMIT_GENERATION, one budget for both.
GENERATION_GUARDS = [
    Depends(require_language_model),
    Depends(rate_limited("generation", lambda s: s.rate_limit_generation, after=get_optional_user)),
]


# Each route's body is declared here only, so FastAPI validates it once (a body declared by the
# route too would be validated twice, and each error reported twice). An invalid body is a 400
# before any profile is looked up.


async def get_personalize_request(
    payload: PersonalizeCreate, db: SessionDep, reader: OptionalUser, settings: SettingsDep
) -> ChapterRequest:
    """The chapter for the reader's profile: 401 without a reader or a profile to use, 400 when
    the profile says nothing to personalize for."""
    variant = await personalize.variant_for(db, payload.profile, reader, settings)
    return ChapterRequest(source=payload, variant=variant)


async def get_translate_request(payload: TranslateCreate, settings: SettingsDep) -> ChapterRequest:
    """The chapter in the target language."""
    variant = translate.variant_for(payload.target_language, settings.book_title)
    return ChapterRequest(source=payload, variant=variant)


PersonalizeRequest = Annotated[ChapterRequest, Depends(get_personalize_request)]
TranslateRequest = Annotated[ChapterRequest, Depends(get_translate_request)]
