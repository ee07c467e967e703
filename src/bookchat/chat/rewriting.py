"""Follow-up rewriting: "and who gets them?" means nothing to the search index on its own, so a
follow-up becomes a standalone search query before retrieval."""

from __future__ import annotations

import structlog

from bookchat.chat import prompts
from bookchat.core.errors import AppError
from bookchat.providers.base import ChatMessage, ChatModel, ChatPrompt

logger = structlog.get_logger(__name__)

REWRITE_MAX_TOKENS = 64


async def standalone_query(
    model: ChatModel, *, title: str, question: str, history: list[ChatMessage]
) -> str:
    """A follow-up made standalone for retrieval: rewritten by the language model when there
    is one, else (or if that fails) the previous question joined to this one."""
    if not history:
        return question
    if model.mode == "generative":
        prompt = ChatPrompt(
            messages=prompts.rewrite_messages(title=title, question=question, history=history),
            question=question,
            temperature=0.0,
            max_tokens=REWRITE_MAX_TOKENS,
        )
        try:
            rewritten = (await model.complete(prompt)).text.strip().strip('"').strip()
        except AppError as exc:
            logger.warning("chat.rewrite_failed", code=exc.code)
        else:
            if rewritten:
                return rewritten.splitlines()[0]
    previous = next((m.content for m in reversed(history) if m.role == "user"), "")
    return f"{previous} {question}".strip()
