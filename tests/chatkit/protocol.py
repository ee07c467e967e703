"""ChatKit requests built with the SDK's own types, its responses read back through them, and
what the tests read off a stream."""

from __future__ import annotations

from typing import Any, Literal

import httpx
from chatkit.types import (
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    FeedbackKind,
    InferenceOptions,
    ItemFeedbackParams,
    ItemsFeedbackReq,
    ItemsListParams,
    ItemsListReq,
    Page,
    Thread,
    ThreadAddUserMessageParams,
    ThreadCreatedEvent,
    ThreadCreateParams,
    ThreadDeleteParams,
    ThreadGetByIdParams,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadListParams,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsDeleteReq,
    ThreadsGetByIdReq,
    ThreadsListReq,
    ThreadStreamEvent,
    ThreadsUpdateReq,
    ThreadUpdateParams,
    UserMessageInput,
    UserMessageTextContent,
)
from pydantic import BaseModel, TypeAdapter

from bookchat.chat.models import Message, MessageRole
from tests.factories import stored

EVENT: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)
THREADS: TypeAdapter[Page[Thread]] = TypeAdapter(Page[Thread])
ITEMS: TypeAdapter[Page[ThreadItem]] = TypeAdapter(Page[ThreadItem])
THREAD: TypeAdapter[Thread] = TypeAdapter(Thread)

Order = Literal["asc", "desc"]

CITED = "Publishers send messages on a topic [1]."
MESSAGING_URL = "https://example.org/book/basics/messaging#publishers-and-subscribers"


def answer_item(events: list[ThreadStreamEvent]) -> AssistantMessageItem:
    """The finished answer of a stream (exactly one)."""
    [done] = [
        e.item
        for e in events
        if isinstance(e, ThreadItemDoneEvent) and isinstance(e.item, AssistantMessageItem)
    ]
    assert isinstance(done, AssistantMessageItem)
    return done


def thread_of(events: list[ThreadStreamEvent]) -> Thread:
    """The thread a `threads.create` stream opened with."""
    assert isinstance(events[0], ThreadCreatedEvent)
    return events[0].thread


def deltas(events: list[ThreadStreamEvent]) -> str:
    """The answer's text deltas, joined."""
    return "".join(
        e.update.delta
        for e in events
        if isinstance(e, ThreadItemUpdatedEvent)
        and isinstance(e.update, AssistantMessageContentPartTextDelta)
    )


async def messages(database_url: str, role: MessageRole) -> list[Message]:
    """The stored messages of one role, oldest first."""
    return await stored(database_url, Message, role=role, order_by=(Message.created_at,))


def user_input(
    text: str, *, quoted_text: str | None = None, attachments: list[str] | None = None
) -> UserMessageInput:
    return UserMessageInput(
        content=[UserMessageTextContent(text=text)],
        attachments=attachments or [],
        quoted_text=quoted_text,
        inference_options=InferenceOptions(),
    )


def create(text: str, **options: Any) -> ThreadsCreateReq:
    return ThreadsCreateReq(params=ThreadCreateParams(input=user_input(text, **options)))


def add(thread_id: str, text: str, **options: Any) -> ThreadsAddUserMessageReq:
    return ThreadsAddUserMessageReq(
        params=ThreadAddUserMessageParams(thread_id=thread_id, input=user_input(text, **options))
    )


def list_threads(
    limit: int | None = None, after: str | None = None, order: Order = "desc"
) -> ThreadsListReq:
    return ThreadsListReq(params=ThreadListParams(limit=limit, after=after, order=order))


def list_items(
    thread_id: str, limit: int | None = None, after: str | None = None, order: Order = "asc"
) -> ItemsListReq:
    return ItemsListReq(
        params=ItemsListParams(thread_id=thread_id, limit=limit, after=after, order=order)
    )


def get_thread(thread_id: str) -> ThreadsGetByIdReq:
    return ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id=thread_id))


def rename(thread_id: str, title: str) -> ThreadsUpdateReq:
    return ThreadsUpdateReq(params=ThreadUpdateParams(thread_id=thread_id, title=title))


def delete(thread_id: str) -> ThreadsDeleteReq:
    return ThreadsDeleteReq(params=ThreadDeleteParams(thread_id=thread_id))


def feedback(thread_id: str, item_ids: list[str], kind: FeedbackKind) -> ItemsFeedbackReq:
    return ItemsFeedbackReq(
        params=ItemFeedbackParams(thread_id=thread_id, item_ids=item_ids, kind=kind)
    )


async def send(
    client: httpx.AsyncClient,
    request: BaseModel,
    *,
    headers: dict[str, str] | None = None,
    path: str = "/chatkit",
) -> httpx.Response:
    """POST one ChatKit request as its JSON."""
    return await client.post(
        path,
        content=request.model_dump_json(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def events_of(response: httpx.Response) -> list[ThreadStreamEvent]:
    """A streamed response's events, each validated against the SDK's event union."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse_events(response.text)


def parse_events(body: str) -> list[ThreadStreamEvent]:
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        data = [
            line.removeprefix("data: ") for line in block.split("\n") if line.startswith("data: ")
        ]
        if data:
            events.append(EVENT.validate_json("\n".join(data)))
    return events


async def stream(
    client: httpx.AsyncClient, request: BaseModel, *, headers: dict[str, str] | None = None
) -> list[ThreadStreamEvent]:
    """Send a streamed request; its events."""
    return events_of(await send(client, request, headers=headers))


async def fetch(
    client: httpx.AsyncClient,
    request: BaseModel,
    adapter: TypeAdapter[Any],
    *,
    headers: dict[str, str] | None = None,
) -> Any:
    """Send a JSON request; its body, validated by `adapter`."""
    response = await send(client, request, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return adapter.validate_json(response.content)
