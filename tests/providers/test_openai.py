"""`OpenAIChatModel` through the real SDK against the fake server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bookchat.core.errors import AppError, LLMError, LLMTimeout, LLMUnavailable
from bookchat.providers.base import ChatMessage, ChatPrompt, Finish, Usage
from bookchat.providers.openai import OpenAIChatModel
from tests.fakes.openai_server import FakeOpenAIServer

PROMPT = ChatPrompt(
    messages=[ChatMessage("system", "Be brief."), ChatMessage("user", "What is a URDF file?")],
    question="What is a URDF file?",
    temperature=0.2,
    max_tokens=64,
)


@pytest.fixture
async def model(fake_openai: FakeOpenAIServer) -> AsyncIterator[OpenAIChatModel]:
    chat = OpenAIChatModel(
        model="gpt-4o-mini",
        api_key="sk-test",
        base_url=fake_openai.base_url,
        timeout=0.5,
        max_retries=0,
    )
    yield chat
    await chat.aclose()


class TestComplete:
    async def test_sends_the_prompt_and_reads_the_answer(
        self, model: OpenAIChatModel, fake_openai: FakeOpenAIServer
    ) -> None:
        completion = await model.complete(PROMPT)

        assert completion.text == "Fake answer to: What is a URDF file?"
        assert completion.model == "gpt-4o-mini"
        assert completion.usage.prompt_tokens > 0
        assert completion.usage.completion_tokens > 0
        sent = fake_openai.chat_requests()[0]
        assert sent["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is a URDF file?"},
        ]
        assert sent["temperature"] == pytest.approx(0.2)
        assert sent["max_tokens"] == 64

    @pytest.mark.parametrize("reason", ["stop", "length", "content_filter", None])
    async def test_says_how_the_answer_ended(
        self, reason: str | None, model: OpenAIChatModel, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.finish_next(reason)
        completion = await model.complete(PROMPT)
        assert completion.text == "Fake answer to: What is a URDF file?"
        assert completion.finish_reason == reason

    async def test_a_key_is_not_required_for_local_servers(
        self, fake_openai: FakeOpenAIServer
    ) -> None:
        chat = OpenAIChatModel(model="llama3.1", api_key=None, base_url=fake_openai.base_url)
        completion = await chat.complete(PROMPT)
        await chat.aclose()
        assert completion.model == "llama3.1"


class TestStream:
    async def test_pieces_join_to_the_answer(
        self, model: OpenAIChatModel, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = "Nodes talk over topics, services and actions."
        items = [item async for item in model.stream(PROMPT)]
        pieces = [item for item in items if isinstance(item, str)]

        assert len(pieces) > 3
        assert "".join(pieces) == "Nodes talk over topics, services and actions."
        usage = items[-1]
        assert isinstance(usage, Usage)
        assert usage.prompt_tokens > 0
        assert usage.completion_tokens > 0
        assert fake_openai.chat_requests()[0]["stream"] is True

    @pytest.mark.parametrize("reason", ["stop", "length"])
    async def test_the_finish_follows_the_text(
        self, reason: str, model: OpenAIChatModel, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = "Nodes talk over topics."
        fake_openai.finish_next(reason)
        items = [item async for item in model.stream(PROMPT)]
        assert "".join(item for item in items if isinstance(item, str)) == fake_openai.reply
        # Text pieces, then how the model ended, then the usage.
        assert [type(item) for item in items[-2:]] == [Finish, Usage]
        assert items[-2] == Finish(reason)

    async def test_a_stream_without_the_models_finish_has_no_finish(
        self, model: OpenAIChatModel, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = "Nodes talk over topics."
        fake_openai.finish_next(None)
        items = [item async for item in model.stream(PROMPT)]
        assert "".join(item for item in items if isinstance(item, str)) == fake_openai.reply
        assert not any(isinstance(item, Finish) for item in items)

    async def test_cut_stream_is_an_llm_error(
        self, model: OpenAIChatModel, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = "one two three four five six"
        fake_openai.cut_stream_next(after_tokens=2)
        received: list[str] = []

        async def consume() -> None:
            async for piece in model.stream(PROMPT):
                assert isinstance(piece, str)
                received.append(piece)

        with pytest.raises(AppError) as caught:
            await consume()
        assert received == ["one ", "two "]
        assert isinstance(caught.value, LLMError | LLMUnavailable)

    async def test_failure_before_the_first_token(
        self, model: OpenAIChatModel, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.fail_next(429, retry_after=1)
        with pytest.raises(LLMUnavailable):
            async for _ in model.stream(PROMPT):
                pass


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
            (503, LLMUnavailable),
        ],
    )
    async def test_status_is_mapped(
        self,
        status: int,
        expected: type[AppError],
        model: OpenAIChatModel,
        fake_openai: FakeOpenAIServer,
    ) -> None:
        fake_openai.fail_next(status, message="vendor says sk-secret")
        with pytest.raises(expected) as caught:
            await model.complete(PROMPT)
        assert "sk-secret" not in caught.value.message

    async def test_timeout(self, model: OpenAIChatModel, fake_openai: FakeOpenAIServer) -> None:
        fake_openai.hang_next(5.0)
        with pytest.raises(LLMTimeout):
            await model.complete(PROMPT)

    async def test_unreachable_server(self) -> None:
        chat = OpenAIChatModel(
            model="m", api_key="k", base_url="http://127.0.0.1:1/v1", max_retries=0
        )
        with pytest.raises(LLMUnavailable, match="cannot be reached"):
            await chat.complete(PROMPT)
        await chat.aclose()
