"""Follow-up rewriting: "and who gets them?" means nothing to the search index on its own, so a
follow-up becomes a standalone search query before retrieval.

A message that stands on its own ("What is the capital of France?") is a new question, even
inside a conversation: it is judged on its own words, so a switch to a topic the book does not
cover is refused instead of being carried by the previous question.
"""

from __future__ import annotations

import asyncio
import re

import structlog

from bookchat.chat import prompts
from bookchat.core.errors import AppError
from bookchat.providers.base import ChatMessage, ChatModel, ChatPrompt

logger = structlog.get_logger(__name__)

REWRITE_MAX_TOKENS = 64

# What marks an English message as leaning on the conversation: a word that points back ("it",
# "those", "the second one"), an opening that continues ("and", "what about"), or too few words
# to be a question of its own ("Why?", "Third").
_POINTS_BACK = re.compile(
    r"\b(?:it|its|it's|they|them|their|theirs|this|that|these|those|he|she|him|her|his|one|ones|"
    r"former|latter|above|previous|earlier|same|other|else)\b",
    re.IGNORECASE,
)
_CONTINUES = re.compile(
    r"^\W*(?:and|but|so|or|then|also|what about|how about|why|why not|more|example)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")
SHORT_MESSAGE_WORDS = 3


def leans_on_conversation(message: str) -> bool:
    """Whether a follow-up needs the conversation to mean anything (English cues)."""
    if len(_WORD.findall(message)) <= SHORT_MESSAGE_WORDS:
        return True
    return bool(_POINTS_BACK.search(message) or _CONTINUES.search(message))


async def standalone_query(
    model: ChatModel,
    *,
    title: str,
    question: str,
    history: list[ChatMessage],
    deadline: float | None = None,
) -> str:
    """A follow-up made standalone for retrieval: rewritten by the language model when there
    is one, else (or if that fails or is late) the previous question joined to this one.

    `deadline` (event loop clock) is the turn's: the rewrite may use at most half of the time
    left, so the answer always has the other half."""
    if not history:
        return question
    if model.mode == "generative":
        prompt = ChatPrompt(
            messages=prompts.rewrite_messages(title=title, question=question, history=history),
            question=question,
            temperature=0.0,
            max_tokens=REWRITE_MAX_TOKENS,
        )
        loop = asyncio.get_running_loop()
        cutoff = None if deadline is None else loop.time() + (deadline - loop.time()) / 2
        try:
            async with asyncio.timeout_at(cutoff):
                rewritten = (await model.complete(prompt)).text.strip().strip('"').strip()
        except AppError as exc:
            logger.warning("chat.rewrite_failed", code=exc.code)
        except TimeoutError:
            logger.warning("chat.rewrite_failed", code="turn_deadline")
        else:
            if rewritten:
                return rewritten.splitlines()[0]
    previous = next((m.content for m in reversed(history) if m.role == "user"), "")
    return f"{previous} {question}".strip()
