"""Chat endpoints (HTTP only: validation in, one service call, a schema out)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from bookchat.chat.schemas import ChatCreate, ChatRead
from bookchat.chat.service import ChatService
from bookchat.core.deps import ContainerDep, SessionDep
from bookchat.core.openapi import error_responses


def get_chat_service(container: ContainerDep) -> ChatService:
    return ChatService(
        settings=container.settings,
        model=container.providers.chat,
        retriever=container.retriever,
    )


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]

router = APIRouter(tags=["chat"])


@router.post(
    "/chat",
    response_model=ChatRead,
    responses=error_responses(400, 502, 503, 504),
)
async def create_chat_message(
    payload: ChatCreate, db: SessionDep, service: ChatServiceDep
) -> ChatRead:
    """Ask a question and get one answer, grounded in the book or in the selected text."""
    return await service.answer(db, payload)


seed_router = APIRouter(include_in_schema=False)
seed_router.add_api_route("/chat", create_chat_message, methods=["POST"], response_model=ChatRead)
