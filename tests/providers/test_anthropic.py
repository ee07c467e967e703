"""`AnthropicChatModel` through the real `anthropic` SDK against the fake Messages server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bookchat.core.errors import AppError, LLMError, LLMTimeout, LLMUnavailable
from bookchat.providers.anthropic import CACHE_MIN_TOKENS, AnthropicChatModel
from bookchat.providers.base import (
    SELECTION_TITLE,
    ChatMessage,
    ChatPrompt,
    Finish,
    Source,
    Usage,
)
from bookchat.providers.search_results import paragraphs
from tests.fakes.anthropic_server import Block, Cite, FakeAnthropicServer, default_answer

PLAIN = ChatPrompt(
    messages=[ChatMessage("system", "Be brief."), ChatMessage("user", "What is a URDF file?")],
    question="What is a URDF file?",
    max_tokens=64,
)

SOURCES = [
    Source(
        index=1,
        title="Nodes",
        section="Publishers",
        text="A publisher sends messages on a topic.\n\nIt never waits for a reply.",
        page_url="https://example.org/book/nodes#publishers",
        source_path="nodes.md",
    ),
    Source(
        index=2,
        title="Topics",
        text="A topic is a named bus.",
        page_url="https://example.org/book/topics",
        source_path="topics.md",
    ),
]

WITH_SOURCES = ChatPrompt(
    messages=[ChatMessage("system", "Cite with [n]."), ChatMessage("user", "Sources: ... [1]")],
    question="How does a publisher work?",
    sources=SOURCES,
    max_tokens=200,
    document_messages=[
        ChatMessage("system", "Cite through citations."),
        ChatMessage("user", "The question: How does a publisher work?"),
    ],
)


def selection_prompt(selection: str) -> ChatPrompt:
    return ChatPrompt(
        messages=[ChatMessage("system", "rules"), ChatMessage("user", "selection and question")],
        question="What does it say?",
        sources=[Source(index=1, title=SELECTION_TITLE, text=selection)],
        max_tokens=200,
        document_messages=[ChatMessage("system", "rules"), ChatMessage("user", "The question")],
    )


@pytest.fixture
def outcomes() -> list[str]:
    """The outcome of each citation check the model made ("kept" or "dropped")."""
    return []


@pytest.fixture
async def model(
    fake_anthropic: FakeAnthropicServer, outcomes: list[str]
) -> AsyncIterator[AnthropicChatModel]:
    fake_anthropic.reply = default_answer
    chat = AnthropicChatModel(
        model="claude-haiku-4-5",
        api_key="sk-ant-test",
        base_url=fake_anthropic.base_url,
        timeout=0.5,
        max_retries=0,
        citations=outcomes.append,
    )
    yield chat
    await chat.aclose()


async def collect(model: AnthropicChatModel, prompt: ChatPrompt) -> list[str | Finish | Usage]:
    return [item async for item in model.stream(prompt)]


async def consume(model: AnthropicChatModel, prompt: ChatPrompt, received: list[str]) -> None:
    """Read the stream into `received` until it ends or fails."""
    async for piece in model.stream(prompt):
        assert isinstance(piece, str)
        received.append(piece)


def text_of(items: list[str | Finish | Usage]) -> str:
    return "".join(item for item in items if isinstance(item, str))


class TestRequest:
    async def test_a_plain_prompt_is_the_system_and_the_user_turn(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        completion = await model.complete(PLAIN)

        assert completion.text == "Fake answer to: What is a URDF file?"
        assert completion.model == "claude-haiku-4-5"
        assert completion.finish_reason == "stop"
        [sent] = fake_anthropic.messages_requests()
        assert sent["system"] == [{"type": "text", "text": "Be brief."}]
        assert sent["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "What is a URDF file?"}]}
        ]
        assert sent["max_tokens"] == 64
        assert sent["model"] == "claude-haiku-4-5"

    async def test_the_key_and_api_version_are_sent(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        await model.complete(PLAIN)
        headers = fake_anthropic.requests[-1].headers
        # The SDK sends it as `x-api-key` or, from 2.x, as a bearer token.
        key = headers.get("x-api-key") or headers["authorization"].removeprefix("Bearer ")
        assert key == "sk-ant-test"
        assert "anthropic-version" in headers

    async def test_passages_go_as_search_results_before_the_question(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        await model.complete(WITH_SOURCES)

        [sent] = fake_anthropic.messages_requests()
        assert sent["system"] == [{"type": "text", "text": "Cite through citations."}]
        [turn] = sent["messages"]
        results, question = turn["content"][:2], turn["content"][2:]
        assert results == [
            {
                "type": "search_result",
                "source": "https://example.org/book/nodes#publishers",
                "title": "Nodes > Publishers",
                "content": [
                    {"type": "text", "text": "A publisher sends messages on a topic."},
                    {"type": "text", "text": "It never waits for a reply."},
                ],
                "citations": {"enabled": True},
            },
            {
                "type": "search_result",
                "source": "https://example.org/book/topics",
                "title": "Topics",
                "content": [{"type": "text", "text": "A topic is a named bus."}],
                "citations": {"enabled": True},
            },
        ]
        # The rendered prompt's numbered source blocks are not sent: no passage goes twice.
        assert question == [{"type": "text", "text": "The question: How does a publisher work?"}]

    async def test_consecutive_turns_of_a_role_are_merged(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        prompt = ChatPrompt(
            messages=[
                ChatMessage("system", "a"),
                ChatMessage("system", "b"),
                ChatMessage("user", "one"),
                ChatMessage("user", "two"),
            ],
            question="two",
        )
        await model.complete(prompt)
        [sent] = fake_anthropic.messages_requests()
        assert sent["system"] == [{"type": "text", "text": "a\n\nb"}]
        assert [m["role"] for m in sent["messages"]] == ["user"]
        assert [b["text"] for b in sent["messages"][0]["content"]] == ["one", "two"]
        # Anthropic requires `max_tokens`; a prompt without one gets the default.
        assert sent["max_tokens"] == 1024


def test_paragraphs_keep_code_fences_whole() -> None:
    text = "Intro line.\n\n```python\nx = 1\n\ny = 2\n```\n\nAfter."
    assert paragraphs(text) == ["Intro line.", "```python\nx = 1\n\ny = 2\n```", "After."]


class TestCitations:
    async def test_citations_become_markers_after_the_text_they_support(
        self,
        model: AnthropicChatModel,
        fake_anthropic: FakeAnthropicServer,
        outcomes: list[str],
    ) -> None:
        fake_anthropic.blocks = [
            Block("A publisher sends on a topic", (Cite(0),)),
            Block(", which is a named bus", (Cite(1), Cite(0))),
            Block("."),
        ]
        completion = await model.complete(WITH_SOURCES)
        assert completion.text == "A publisher sends on a topic [1], which is a named bus [2][1]."
        assert outcomes == ["kept", "kept", "kept"]

    async def test_a_quote_from_another_paragraph_of_the_passage_holds(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        # Whitespace differs (Claude joins the cited blocks); the words are the passage's.
        quote = "A publisher sends messages on a topic.It never waits\nfor a reply."
        fake_anthropic.blocks = [Block("It does not wait", (Cite(0, quote),)), Block(".")]
        completion = await model.complete(WITH_SOURCES)
        assert completion.text == "It does not wait [1]."

    @pytest.mark.parametrize(
        "cite",
        [
            Cite(0, "A publisher waits for every subscriber."),  # not in the passage
            Cite(1, "A publisher sends messages on a topic."),  # in another passage
            Cite(0, source="https://evil.example/"),  # names a source we never sent
            Cite(0, "   "),  # quotes nothing
        ],
    )
    async def test_a_citation_that_does_not_hold_is_dropped_and_counted(
        self,
        cite: Cite,
        model: AnthropicChatModel,
        fake_anthropic: FakeAnthropicServer,
        outcomes: list[str],
    ) -> None:
        fake_anthropic.blocks = [Block("Publishers wait", (cite,)), Block(".")]
        completion = await model.complete(WITH_SOURCES)
        assert completion.text == "Publishers wait."
        assert outcomes == ["dropped"]

    async def test_streamed_markers_follow_their_block(
        self,
        model: AnthropicChatModel,
        fake_anthropic: FakeAnthropicServer,
        outcomes: list[str],
    ) -> None:
        fake_anthropic.blocks = [
            Block("Publishers send ", (Cite(0),)),
            Block("on topics", (Cite(1), Cite(1, "made up"))),
            Block("."),
        ]
        items = await collect(model, WITH_SOURCES)
        pieces = [item for item in items if isinstance(item, str)]
        assert pieces == ["Publishers ", "send ", "[1]", "on ", "topics", " [2]", "."]
        assert items[-2:] == [Finish("stop"), items[-1]]
        assert outcomes == ["kept", "kept", "dropped"]

    @pytest.mark.parametrize(
        ("blocks", "shown"),
        [
            (  # a cited code block: the marker goes under its closing fence, not on it
                [
                    Block("Install it:\n\n```bash\npip install rclpy\n```", (Cite(0),)),
                    Block("\nThen run it", (Cite(1),)),
                    Block("."),
                ],
                "Install it:\n\n```bash\npip install rclpy\n```\n[1]\nThen run it [2].",
            ),
            (  # a block that ends inside code: its marker waits for the fence to close
                [
                    Block("```python\nx = 1", (Cite(0),)),
                    Block("\n```\nDone", (Cite(1),)),
                    Block("."),
                ],
                "```python\nx = 1\n```\nDone [1][2].",
            ),
            (  # never closed: the markers come at the end all the same
                [Block("```python\nx = 1", (Cite(0),))],
                "```python\nx = 1 [1]",
            ),
        ],
    )
    async def test_markers_never_land_inside_code(
        self,
        blocks: list[Block],
        shown: str,
        model: AnthropicChatModel,
        fake_anthropic: FakeAnthropicServer,
    ) -> None:
        fake_anthropic.blocks = blocks
        assert (await model.complete(WITH_SOURCES)).text == shown
        assert text_of(await collect(model, WITH_SOURCES)) == shown

    async def test_without_sources_nothing_is_sent_as_a_document(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        await model.complete(PLAIN)
        assert fake_anthropic.search_results() == []


class TestStream:
    async def test_pieces_then_finish_then_usage(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        fake_anthropic.reply = "Nodes talk over topics, services and actions."
        items = await collect(model, PLAIN)
        assert text_of(items) == "Nodes talk over topics, services and actions."
        assert len([item for item in items if isinstance(item, str)]) > 3
        assert [type(item) for item in items[-2:]] == [Finish, Usage]
        usage = items[-1]
        assert isinstance(usage, Usage)
        assert usage.prompt_tokens > 0
        assert usage.completion_tokens == 7
        assert fake_anthropic.messages_requests()[0]["stream"] is True

    @pytest.mark.parametrize(
        ("stop_reason", "finish"),
        [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("refusal", "content_filter"),
            ("pause_turn", "pause_turn"),
        ],
    )
    async def test_stop_reasons_are_mapped(
        self,
        stop_reason: str,
        finish: str,
        model: AnthropicChatModel,
        fake_anthropic: FakeAnthropicServer,
    ) -> None:
        fake_anthropic.finish_next(stop_reason, times=2)
        items = await collect(model, PLAIN)
        assert Finish(finish) in items
        assert (await model.complete(PLAIN)).finish_reason == finish

    async def test_a_stream_without_message_delta_has_no_finish(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        fake_anthropic.reply = "Nodes talk over topics."
        fake_anthropic.finish_next(None)
        items = await collect(model, PLAIN)
        assert text_of(items) == "Nodes talk over topics."
        assert not any(isinstance(item, Finish) for item in items)

    async def test_a_stream_that_ends_before_the_message_is_nothing(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        fake_anthropic.empty_stream_next()
        assert await collect(model, PLAIN) == []

    async def test_a_cut_stream_is_an_error_after_the_text_received(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        fake_anthropic.reply = "one two three four five six"
        fake_anthropic.cut_stream_next(after_tokens=2)
        received: list[str] = []
        with pytest.raises(LLMUnavailable):
            await consume(model, PLAIN, received)
        assert received == ["one ", "two "]

    async def test_an_error_event_mid_stream_is_unavailable(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        fake_anthropic.reply = "one two three four"
        fake_anthropic.error_stream_next(after_tokens=1)
        received: list[str] = []
        with pytest.raises(LLMUnavailable) as caught:
            await consume(model, PLAIN, received)
        assert received == ["one "]
        assert "Overloaded" not in caught.value.message


class TestCaching:
    async def test_a_long_selection_is_cached_and_read_back(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        selection = "The robot arm moves its joints one at a time. " * 500
        first = await collect(model, selection_prompt(selection))
        second = await model.complete(selection_prompt(selection))

        [result] = fake_anthropic.search_results()
        assert result["cache_control"] == {"type": "ephemeral"}
        assert result["title"] == SELECTION_TITLE
        written = first[-1]
        assert isinstance(written, Usage)
        assert written.cache_write_tokens > 0
        assert written.cache_read_tokens == 0
        assert second.usage.cache_read_tokens == written.cache_write_tokens
        assert second.usage.cache_write_tokens == 0
        # Every input token counts, cached or not.
        assert second.usage.prompt_tokens == written.prompt_tokens

    async def test_a_short_prefix_gets_no_breakpoint(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        await model.complete(selection_prompt("A short selection."))
        await model.complete(WITH_SOURCES)
        for request in fake_anthropic.messages_requests():
            assert "cache_control" not in str(request)

    async def test_long_rules_are_cached(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        rules = "Keep every code block exactly as it is written. " * (CACHE_MIN_TOKENS // 5)
        prompt = ChatPrompt(
            messages=[ChatMessage("system", rules), ChatMessage("user", "A chapter piece.")],
            question="A chapter piece.",
        )
        await model.complete(prompt)
        completion = await model.complete(prompt)
        assert fake_anthropic.messages_requests()[0]["system"][0]["cache_control"] == {
            "type": "ephemeral"
        }
        assert completion.usage.cache_read_tokens > 0


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (400, LLMError),
            (401, LLMUnavailable),
            (403, LLMUnavailable),
            (404, LLMError),
            (429, LLMUnavailable),
            (500, LLMUnavailable),
            (529, LLMUnavailable),
        ],
    )
    async def test_status_is_mapped_without_the_vendors_text(
        self,
        status: int,
        expected: type[AppError],
        model: AnthropicChatModel,
        fake_anthropic: FakeAnthropicServer,
    ) -> None:
        fake_anthropic.fail_next(status, message="vendor says sk-ant-secret")
        with pytest.raises(expected) as caught:
            await model.complete(PLAIN)
        assert "sk-ant-secret" not in caught.value.message

    @pytest.mark.parametrize("status", [429, 529])
    async def test_the_vendors_retry_after_is_passed_on(
        self, status: int, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        fake_anthropic.fail_next(status, retry_after=7)
        with pytest.raises(LLMUnavailable) as caught:
            async for _ in model.stream(PLAIN):
                pass
        assert caught.value.headers == {"Retry-After": "7"}

    async def test_the_sdk_retries_an_overloaded_api(
        self, fake_anthropic: FakeAnthropicServer
    ) -> None:
        chat = AnthropicChatModel(
            model="claude-haiku-4-5",
            api_key="k",
            base_url=fake_anthropic.base_url,
            max_retries=1,
        )
        fake_anthropic.fail_next(529, retry_after=0.01)
        completion = await chat.complete(PLAIN)
        await chat.aclose()
        assert completion.text == "Fake answer to: What is a URDF file?"
        assert len(fake_anthropic.messages_requests()) == 2

    async def test_timeout(
        self, model: AnthropicChatModel, fake_anthropic: FakeAnthropicServer
    ) -> None:
        fake_anthropic.hang_next(5.0)
        with pytest.raises(LLMTimeout):
            await model.complete(PLAIN)

    async def test_unreachable_server(self) -> None:
        chat = AnthropicChatModel(
            model="m", api_key="k", base_url="http://127.0.0.1:1", max_retries=0
        )
        with pytest.raises(LLMUnavailable, match="cannot be reached"):
            await chat.complete(PLAIN)
        await chat.aclose()
