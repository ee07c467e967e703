"""The fake Anthropic server speaks the Messages API as the real `anthropic` SDK reads it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from tests.fakes.anthropic_server import Block, Cite, FakeAnthropicServer

SEARCH_RESULT: dict[str, Any] = {
    "type": "search_result",
    "source": "https://example.org/book/nodes#publishers",
    "title": "Nodes > Publishers",
    "content": [{"type": "text", "text": "A publisher sends messages on a topic."}],
    "citations": {"enabled": True},
}
REQUEST: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "max_tokens": 100,
    "messages": [
        {"role": "user", "content": [SEARCH_RESULT, {"type": "text", "text": "How?"}]},
    ],
}


@pytest.fixture
async def client(fake_anthropic: FakeAnthropicServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    sdk = anthropic.AsyncAnthropic(api_key="k", base_url=fake_anthropic.base_url, max_retries=0)
    yield sdk
    await sdk.close()


async def test_a_streamed_answer_accumulates_to_the_plain_one(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropicServer
) -> None:
    fake_anthropic.blocks = [Block("Publishers send on topics", (Cite(0),)), Block(".")]
    plain = await client.messages.create(**REQUEST)
    async with client.messages.stream(**REQUEST) as stream:
        names = [event.type async for event in stream]
        streamed = await stream.get_final_message()

    # The same blocks (the stream's are the SDK's parsed subclass: compare their fields).
    assert [b.model_dump(exclude={"parsed_output"}) for b in streamed.content] == [
        b.model_dump() for b in plain.content
    ]
    assert (streamed.stop_reason, plain.stop_reason) == ("end_turn", "end_turn")
    assert streamed.usage.input_tokens == plain.usage.input_tokens
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    [cited, rest] = plain.content
    assert cited.type == "text"
    assert cited.citations is not None
    [citation] = cited.citations
    assert citation.type == "search_result_location"
    assert (citation.search_result_index, citation.source, citation.cited_text) == (
        0,
        SEARCH_RESULT["source"],
        "A publisher sends messages on a topic.",
    )
    assert rest.type == "text"
    assert rest.citations is None
    # The raw events in the API's order (the SDK's helper adds `text` and `citation` events).
    raw = [n for n in names if n not in ("text", "citation")]
    assert raw[0] == "message_start"
    assert raw[-2:] == ["message_delta", "message_stop"]
    assert raw.count("content_block_start") == raw.count("content_block_stop") == 2
    assert "citation" in names


async def test_errors_have_anthropics_shape(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropicServer
) -> None:
    fake_anthropic.fail_next(529, message="Overloaded")
    with pytest.raises(anthropic.OverloadedError) as caught:
        await client.messages.create(**REQUEST)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


async def test_the_cache_is_written_once_then_read(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropicServer
) -> None:
    cached = {**SEARCH_RESULT, "cache_control": {"type": "ephemeral"}}
    request = {**REQUEST, "messages": [{"role": "user", "content": [cached]}]}
    first = await client.messages.create(**request)
    second = await client.messages.create(**request)
    other = await client.messages.create(**{**request, "model": "claude-sonnet-4-6"})

    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (7, 0)
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (
        0,
        7,
    )
    # A cache is per model.
    assert other.usage.cache_creation_input_tokens == 7
