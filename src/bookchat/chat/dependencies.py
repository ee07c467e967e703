"""How the chat routes reach what the lifespan built: the chat and conversation services, who
is chatting, the chat rate limit and the token budget its model calls are charged to."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from bookchat.accounts.dependencies import OptionalUser, get_optional_user
from bookchat.accounts.models import User
from bookchat.chat.conversations import ConversationService
from bookchat.chat.service import ChatService
from bookchat.core.errors import Unauthorized
from bookchat.dependencies import ContainerDep, SettingsDep, rate_limited, token_budget


async def get_chat_service(container: ContainerDep) -> ChatService:
    return container.chat


async def get_conversation_service(container: ContainerDep) -> ConversationService:
    return container.conversations


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
ConversationServiceDep = Annotated[ConversationService, Depends(get_conversation_service)]


async def get_chat_reader(user: OptionalUser, settings: SettingsDep) -> User | None:
    """Who is chatting: the signed-in reader, or None; 401 when REQUIRE_AUTH_FOR_CHAT is on."""
    if user is None and settings.require_auth_for_chat:
        raise Unauthorized(
            "Sign in to chat with this book.", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


ChatReader = Annotated[User | None, Depends(get_chat_reader)]
# Counted per signed-in reader, else per client address; after sign-in so it knows which.
CHAT_RATE_LIMIT = Depends(
    rate_limited("chat", lambda _, book: book.rate_limit_chat, after=get_chat_reader)
)
FEEDBACK_RATE_LIMIT = Depends(
    rate_limited("feedback", lambda s, _: s.rate_limit_feedback, after=get_optional_user)
)
# The model calls of a turn (rewrite, answer) are charged to the same reader or address; after
# the rate limit, so a refused request costs nothing.
CHAT_TOKEN_BUDGET = Depends(token_budget("chat", after=get_chat_reader))
