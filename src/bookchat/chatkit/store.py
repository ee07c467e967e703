"""ChatKit's `Store` on bookchat's own tables: a thread is a chat session, its items are the
session's questions and answers. Nothing is copied: `/api/v1/chat/history` and ChatKit read the
same rows.

Every query is scoped to the reader of the request context: another reader's thread or item is
not found, exactly like a missing one. The chat turn itself stores questions and answers
(chat/turns.py, and a cancelled stream's partial answer in chat/streaming.py), so the SDK's own
writes of message items are acknowledged without writing them twice.

Each method opens its own database session: ChatKit calls the store from inside the response
stream, after the route has returned, where the request's session may already be closed.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from chatkit.store import NotFoundError, Store, StoreItemType
from chatkit.types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    InferenceOptions,
    Page,
    ThreadItem,
    ThreadMetadata,
    URLSource,
    UserMessageItem,
    UserMessageTextContent,
)
from sqlalchemy import ColumnElement, and_, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.chat.models import ChatSession, Message, MessageRole, MessageStatus
from bookchat.chatkit import ids
from bookchat.chatkit.calls import ReaderContext
from bookchat.core.errors import ValidationFailed

TITLE_MAX = 200  # chat_sessions.title


Order = Literal["asc", "desc"]


class BookChatStore(Store[ReaderContext]):
    """Threads and items over `chat_sessions` and `messages`."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    def generate_thread_id(self, context: ReaderContext) -> str:
        return ids.thread_id(uuid.uuid4())

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: ReaderContext
    ) -> str:
        # A reader's message keeps the id ChatKit gave it: the question is stored under it.
        if item_type == "message":
            return ids.item_id(uuid.uuid4())
        return super().generate_item_id(item_type, thread, context)

    # --- threads ---------------------------------------------------------------------------

    async def load_thread(self, thread_id: str, context: ReaderContext) -> ThreadMetadata:
        async with self._sessionmaker() as db:
            return _thread(await _session(db, thread_id, context))

    async def save_thread(self, thread: ThreadMetadata, context: ReaderContext) -> None:
        """Create the session of a new thread (the reader's), or rename an existing one."""
        if thread.title is not None and len(thread.title) > TITLE_MAX:
            raise ValidationFailed(f"A thread's title is at most {TITLE_MAX} characters.")
        session_id = ids.session_id(thread.id)
        async with self._sessionmaker() as db:
            session = await db.get(ChatSession, session_id)
            if session is None:
                db.add(
                    ChatSession(
                        id=session_id,
                        book=context.book.slug,
                        user_id=context.user_id,
                        title=thread.title,
                    )
                )
            elif session.visible_to(context.user_id) and session.book == context.book.slug:
                session.title = thread.title
            else:
                raise NotFoundError("No thread with this id.")
            await db.commit()

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: ReaderContext
    ) -> Page[ThreadMetadata]:
        """The reader's threads by creation; an anonymous reader has no list (their threads
        are reachable by id only, as `/api/v1/chat/history` is)."""
        if context.user_id is None:
            return Page()
        async with self._sessionmaker() as db:
            query = select(ChatSession).where(
                ChatSession.user_id == context.user_id, ChatSession.book == context.book.slug
            )
            if after is not None:
                cursor = await _session(db, after, context)
                query = query.where(
                    _beyond(ChatSession.created_at, ChatSession.id, cursor, _order(order))
                )
            rows = list(
                await db.scalars(
                    query.order_by(*_sorted(ChatSession.created_at, ChatSession.id, order)).limit(
                        limit + 1
                    )
                )
            )
        page = rows[:limit]
        has_more = len(rows) > limit
        return Page(
            data=[_thread(s) for s in page],
            has_more=has_more,
            after=ids.thread_id(page[-1].id) if has_more else None,
        )

    async def delete_thread(self, thread_id: str, context: ReaderContext) -> None:
        """Delete the session; the database cascades to its messages and their feedback."""
        async with self._sessionmaker() as db:
            await db.delete(await _session(db, thread_id, context))
            await db.commit()

    # --- items -----------------------------------------------------------------------------

    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: ReaderContext,
    ) -> Page[ThreadItem]:
        async with self._sessionmaker() as db:
            session = await _session(db, thread_id, context)
            query = select(Message).where(Message.session_id == session.id, _shown())
            if after is not None:
                cursor = await _message(db, session, after)
                query = query.where(_beyond(Message.created_at, Message.id, cursor, _order(order)))
            rows = list(
                await db.scalars(
                    query.order_by(*_sorted(Message.created_at, Message.id, order)).limit(limit + 1)
                )
            )
        page = rows[:limit]
        has_more = len(rows) > limit
        return Page(
            data=[item(m, thread_id) for m in page],
            has_more=has_more,
            after=ids.item_id(page[-1].id) if has_more else None,
        )

    async def load_item(self, thread_id: str, item_id: str, context: ReaderContext) -> ThreadItem:
        async with self._sessionmaker() as db:
            session = await _session(db, thread_id, context)
            return item(await _message(db, session, item_id), thread_id)

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: ReaderContext
    ) -> None:
        """Nothing to write: the chat turn stores the question and the answer (a cancelled
        one as `partial`), and the SDK's hidden markers have no use in bookchat's history,
        which leaves unfinished answers out anyway."""

    async def save_item(self, thread_id: str, item: ThreadItem, context: ReaderContext) -> None:
        """Items are never replaced here: only tool calls, widgets and structured input are,
        and this server refuses those requests before they reach the SDK."""
        raise NotImplementedError("bookchat's ChatKit server does not replace items")

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: ReaderContext
    ) -> None:
        async with self._sessionmaker() as db:
            session = await _session(db, thread_id, context)
            await db.delete(await _message(db, session, item_id))
            await db.commit()

    # --- attachments: not supported (refused before the SDK sees them) ----------------------

    async def save_attachment(self, attachment: Attachment, context: ReaderContext) -> None:
        raise NotFoundError("Attachments are not supported.")

    async def load_attachment(self, attachment_id: str, context: ReaderContext) -> Attachment:
        raise NotFoundError("Attachments are not supported.")

    async def delete_attachment(self, attachment_id: str, context: ReaderContext) -> None:
        raise NotFoundError("Attachments are not supported.")


async def _session(db: AsyncSession, thread_id: str, context: ReaderContext) -> ChatSession:
    session = await db.get(ChatSession, ids.session_id(thread_id))
    # Another reader's thread, or another book's, answers exactly like a missing one.
    if (
        session is None
        or not session.visible_to(context.user_id)
        or session.book != context.book.slug
    ):
        raise NotFoundError("No thread with this id.")
    return session


async def _message(db: AsyncSession, session: ChatSession, item_id: str) -> Message:
    message = await db.get(Message, ids.message_id(item_id))
    if message is None or message.session_id != session.id:
        raise NotFoundError("No item with this id.")
    return message


def _shown() -> ColumnElement[bool]:
    """The messages a reader sees: questions and answers, less an answer that failed before
    its first word (the failure was shown as an error; an empty bubble says nothing)."""
    return and_(
        Message.role.in_([MessageRole.USER, MessageRole.ASSISTANT]),
        not_(and_(Message.status == MessageStatus.ERROR, Message.content == "")),
    )


def _order(order: str) -> Order:
    return "asc" if order == "asc" else "desc"


def _sorted(created: Any, key: Any, order: str) -> tuple[Any, Any]:
    if _order(order) == "asc":
        return created.asc(), key.asc()
    return created.desc(), key.desc()


def _beyond(created: Any, key: Any, cursor: ChatSession | Message, order: Order) -> Any:
    """Rows after `cursor` in the (created_at, id) order: a keyset, stable under inserts."""
    if order == "asc":
        return or_(created > cursor.created_at, and_(created == cursor.created_at, key > cursor.id))
    return or_(created < cursor.created_at, and_(created == cursor.created_at, key < cursor.id))


def _thread(session: ChatSession) -> ThreadMetadata:
    return ThreadMetadata(
        id=ids.thread_id(session.id), title=session.title, created_at=session.created_at
    )


def item(message: Message, thread_id: str) -> ThreadItem:
    """A stored message as a ChatKit item: a question, or an answer with its citations."""
    if message.role == MessageRole.USER:
        return UserMessageItem(
            id=ids.item_id(message.id),
            thread_id=thread_id,
            created_at=message.created_at,
            content=[UserMessageTextContent(text=message.content)],
            quoted_text=message.selected_text,
            inference_options=InferenceOptions(),
        )
    return AssistantMessageItem(
        id=ids.item_id(message.id),
        thread_id=thread_id,
        created_at=message.created_at,
        content=[
            AssistantMessageContent(
                text=message.content, annotations=cited_sources(message.content, message.citations)
            )
        ],
    )


def cited_sources(text: str, citations: list[dict[str, Any]] | None) -> list[Annotation]:
    """The answer's cited sources, in the order of their numbers, each a link to its section.

    An annotation's `index` is where its marker `[n]` first ends in the text, as ChatKit places
    a citation after the words it supports; sources without a page (a selection from no known
    page) have nothing to link to and are left out."""
    found: list[Annotation] = []
    for citation in sorted(citations or [], key=lambda c: int(c.get("index", 0))):
        url = citation.get("page_url")
        if not citation.get("cited") or not url:
            continue
        marker = f"[{citation['index']}]"
        at = text.find(marker)
        found.append(
            Annotation(
                source=URLSource(
                    title=citation.get("section") or citation["title"],
                    url=url,
                    description=citation.get("snippet"),
                    group=citation["title"],
                ),
                index=at + len(marker) if at >= 0 else None,
            )
        )
    return found
