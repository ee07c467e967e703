"""The answer as a stream of events (DESIGN.md section 7, "Streaming events"), and the final
write that a reader who hangs up cannot interrupt.

The stream outlives its request: its request's database session may be gone by the time the
answer is complete, so the answer is stored in a session of its own from the sessionmaker.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING

import anyio
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.chat import turns
from bookchat.chat.answer_cache import AnswerCache
from bookchat.chat.citations import CitedAnswer, Renumbering, passages
from bookchat.chat.models import MessageStatus
from bookchat.chat.schemas import ChatRead
from bookchat.chat.turns import CannedAnswer, Turn, finish_turn, remember_answer
from bookchat.core.config import Settings
from bookchat.core.errors import AppError
from bookchat.core.sse import StreamEvent
from bookchat.providers.base import FINISHED, ChatModel, Finish, Usage

if TYPE_CHECKING:
    from bookchat.core.metrics import Metrics

logger = structlog.get_logger(__name__)


async def answer_events(
    turn: Turn,
    *,
    model: ChatModel,
    canned: CannedAnswer | None,
    sessionmaker: async_sessionmaker[AsyncSession],
    cache: AnswerCache | None,
    settings: Settings,
    metrics: Metrics | None = None,
) -> AsyncGenerator[StreamEvent]:
    """The answer as events: `start`, `sources`, `token`..., then `done` or `error`.

    `sources` lists the passages before the answer, unnumbered: a source gets its number when
    the answer first uses it, so the list under the reader's numbers comes with `done`. The
    tokens are the model's text with its markers renumbered as they arrive; together they are
    exactly `done.response`.

    `canned` is the answer when no model is to be asked; it is sent word by word. A client that
    goes away cancels this generator (or closes it at a yield): the model call is abandoned
    with it and what was shown is stored as `partial`. So is an answer whose model did not say
    it finished (`done` then says `partial` and why). A model failure sends `error` and
    stores what was shown with status `error`; the turn's deadline passing sends `error`
    (`llm_timeout`) and stores it as `partial`. Both `error`s name the session and the stored
    answer, as a failed JSON answer's details do.
    """
    renumbering = Renumbering(turn.prompt.sources)
    usage: Usage | None = None
    finish: str | None = None
    model_name = canned.model if canned is not None else model.model
    # Each wait for the model's next piece is bounded by what is left of the turn; the time
    # spent handing pieces to the reader is not inside a timeout (a yield must never be).
    deadline = turn.deadline if canned is None else None
    try:
        # Every yield until the answer is stored sits in this block: a client can hang up
        # at any of them (cancellation mid-await, or `aclose()` at a yield).
        yield (
            "start",
            {
                "session_id": str(turn.session_id),
                "message_id": str(turn.reply_id),
                "mode": turn.mode,
            },
        )
        listed = passages(turn.prompt.sources)
        yield "sources", {"citations": [passage.model_dump(mode="json") for passage in listed]}
        # aclosing: a reader who hangs up closes the model's stream at once (its HTTP call is
        # cancelled) instead of whenever the generator is collected.
        async with aclosing(_text(turn, model, canned)) as pieces:
            while True:
                async with asyncio.timeout_at(deadline):
                    item = await anext(pieces, None)
                if item is None:
                    break
                if isinstance(item, Usage):
                    usage = item
                elif isinstance(item, Finish):
                    finish = item.reason
                elif shown := renumbering.feed(item):
                    yield "token", {"text": shown}
        if rest := renumbering.close():
            yield "token", {"text": rest}
    except (asyncio.CancelledError, GeneratorExit):
        renumbering.close(complete=False)
        answer = renumbering.answer()
        await _store(
            sessionmaker, turn, answer, usage, model_name, MessageStatus.PARTIAL, None, metrics
        )
        raise
    except (AppError, TimeoutError) as exc:
        error = exc if isinstance(exc, AppError) else turns.out_of_time(settings)
        status = MessageStatus.ERROR if isinstance(exc, AppError) else MessageStatus.PARTIAL
        renumbering.close(complete=False)
        answer = renumbering.answer()
        read = await _store(sessionmaker, turn, answer, usage, model_name, status, None, metrics)
        yield (
            "error",
            {
                "code": error.code,
                "message": error.public_message,
                **turns.where_stored(turn, stored=read is not None),
            },
        )
        return
    answer = renumbering.answer()
    status = turns.ended(finish)
    read = await _store(sessionmaker, turn, answer, usage, model_name, status, finish, metrics)
    if read is None:
        yield (
            "error",
            {
                "code": "dependency_unavailable",
                "message": "The answer could not be saved; try again shortly.",
                **turns.where_stored(turn, stored=False),
            },
        )
        return
    await remember_answer(cache, turn, read, answer)
    yield "done", read.model_dump(mode="json")


async def _text(
    turn: Turn, model: ChatModel, canned: CannedAnswer | None
) -> AsyncGenerator[str | Finish | Usage]:
    """The answer's text as it arrives: the canned one word by word, or the model's stream."""
    if canned is not None:
        for word in re.findall(r"\S+\s*", canned.text):
            yield word
        yield Finish(FINISHED)
        return
    async with aclosing(model.stream(turn.prompt)) as pieces:
        async for item in pieces:
            yield item


async def _store(
    sessionmaker: async_sessionmaker[AsyncSession],
    turn: Turn,
    answer: CitedAnswer,
    usage: Usage | None,
    model: str,
    status: MessageStatus,
    finish_reason: str | None,
    metrics: Metrics | None,
) -> ChatRead | None:
    """`finish_turn` in a session of its own; None when the write failed.

    The write cannot be cancelled halfway: a reader who hangs up while the answer is being
    written (the last token has gone, the commit has not) would otherwise lose it. The write
    runs as its own task; a cancellation of this one waits for it, then goes on.
    """
    write = asyncio.ensure_future(
        _write(sessionmaker, turn, answer, usage, model, status, finish_reason, metrics)
    )
    interrupted = False
    # anyio's shield stops anyio scopes from re-cancelling at every await; asyncio's shield
    # covers a plain Task.cancel(), which anyio's shield does not.
    with anyio.CancelScope(shield=True):
        while not write.done():
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                interrupted = True
    if interrupted:
        raise asyncio.CancelledError
    return write.result()


async def _write(
    sessionmaker: async_sessionmaker[AsyncSession],
    turn: Turn,
    answer: CitedAnswer,
    usage: Usage | None,
    model: str,
    status: MessageStatus,
    finish_reason: str | None,
    metrics: Metrics | None,
) -> ChatRead | None:
    try:
        async with sessionmaker() as db:
            return await finish_turn(
                db,
                turn,
                answer,
                usage=usage,
                model=model,
                status=status,
                finish_reason=finish_reason,
                metrics=metrics,
            )
    except Exception:  # the stream reports it; the reader's question is already stored
        logger.exception("chat.store_failed", status=status.value)
        return None
