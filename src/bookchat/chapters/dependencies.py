"""What the chapter routes depend on: the chapter service the lifespan built, the variant each
request asks for, the language-model gate, the generation rate limit, the token budget the
rewrite is charged to, and who may send their own text."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from bookchat.accounts.dependencies import OptionalUser, get_optional_user
from bookchat.accounts.models import User
from bookchat.books.dependencies import CurrentBook
from bookchat.chapters import personalize, translate
from bookchat.chapters.schemas import ChapterSource, PersonalizeCreate, TranslateCreate
from bookchat.chapters.service import ChapterRequest, ChapterService
from bookchat.core.config import Settings
from bookchat.core.errors import LLMUnavailable, Unauthorized
from bookchat.dependencies import (
    ContainerDep,
    SessionDep,
    SettingsDep,
    rate_limited,
    token_budget,
)

SIGN_IN_FOR_CONTENT = (
    "Sign in to send your own text (`content`); without an account, ask for a chapter of the "
    "book by `document_id` or `source_path`."
)
OFFLINE_MESSAGE = (
    "This server answers offline (extractive mode), without a language model. Set "
    "OPENAI_API_KEY (or OPENAI_BASE_URL with LLM_PROVIDER=openai) to enable personalized and "
    "translated chapters."
)


async def get_chapter_service(container: ContainerDep) -> ChapterService:
    """The chapter service the lifespan built."""
    return container.chapters


ChapterServiceDep = Annotated[ChapterService, Depends(get_chapter_service)]


async def require_language_model(chapters: ChapterServiceDep) -> None:
    """503 `llm_unavailable` when the server runs the offline extractive answerer."""
    if chapters.offline:
        raise LLMUnavailable(OFFLINE_MESSAGE)


# Offline first (no point counting a request that cannot be served), then the limit, counted
# per signed-in reader, else per client address: RATE_LIMIT_GENERATION, one budget for both.
GENERATION_GUARDS = [
    Depends(require_language_model),
    Depends(
        rate_limited("generation", lambda s, _: s.rate_limit_generation, after=get_optional_user)
    ),
]


# Each route's body is declared here only, so FastAPI validates it once (a body declared by the
# route too would be validated twice, and each error reported twice). An invalid body is a 400
# before any profile is looked up.


def check_content_sender(source: ChapterSource, reader: User | None, settings: Settings) -> None:
    """401 for ad-hoc `content` from a caller who is not signed in, unless
    ALLOW_ANONYMOUS_CHAPTER_CONTENT: any text sent is the operator's model bill, where a
    chapter of the book is bounded and cached."""
    if (
        source.content is not None
        and reader is None
        and not settings.allow_anonymous_chapter_content
    ):
        raise Unauthorized(SIGN_IN_FOR_CONTENT, headers={"WWW-Authenticate": "Bearer"})


# The rewrite's model calls are charged to the reader or address, per kind for the metrics.
PERSONALIZE_BUDGET = Depends(token_budget("personalize", after=get_optional_user))
TRANSLATE_BUDGET = Depends(token_budget("translate", after=get_optional_user))


async def get_personalize_request(
    payload: PersonalizeCreate,
    db: SessionDep,
    reader: OptionalUser,
    settings: SettingsDep,
    book: CurrentBook,
    _budget: None = PERSONALIZE_BUDGET,
) -> ChapterRequest:
    """The chapter for the reader's profile: 401 without a reader or a profile to use, 400 when
    the profile says nothing to personalize for."""
    check_content_sender(payload, reader, settings)
    variant = await personalize.variant_for(db, payload.profile, reader, settings, book.title)
    return ChapterRequest(source=payload, variant=variant, book=book.slug)


async def get_translate_request(
    payload: TranslateCreate,
    reader: OptionalUser,
    settings: SettingsDep,
    book: CurrentBook,
    _budget: None = TRANSLATE_BUDGET,
) -> ChapterRequest:
    """The chapter in the target language."""
    check_content_sender(payload, reader, settings)
    variant = translate.variant_for(payload.target_language, book.title)
    return ChapterRequest(source=payload, variant=variant, book=book.slug)


PersonalizeRequest = Annotated[ChapterRequest, Depends(get_personalize_request)]
TranslateRequest = Annotated[ChapterRequest, Depends(get_translate_request)]
