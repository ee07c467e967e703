"""The provider factory builds what the settings name, or says why it cannot."""

from __future__ import annotations

import pytest

from bookchat.providers.anthropic import AnthropicChatModel
from bookchat.providers.base import ChatMessage, ChatPrompt
from bookchat.providers.extractive import ExtractiveChatModel
from bookchat.providers.factory import ProviderConfigError, build_providers
from bookchat.providers.openai import OpenAIChatModel
from tests.conftest import anthropic_settings, make_settings, openai_settings
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer


async def test_auto_without_key_is_extractive() -> None:
    providers = await build_providers(make_settings("sqlite://", llm_provider="auto"))
    assert isinstance(providers.chat, ExtractiveChatModel)
    await providers.aclose()


async def test_auto_with_key_is_openai() -> None:
    settings = make_settings("sqlite://", llm_provider="auto", openai_api_key="sk-x")
    providers = await build_providers(settings)
    assert isinstance(providers.chat, OpenAIChatModel)
    assert providers.chat.model == "gpt-4o-mini"
    await providers.aclose()


async def test_auto_with_only_an_anthropic_key_is_claude() -> None:
    settings = make_settings("sqlite://", llm_provider="auto", anthropic_api_key="sk-ant-x")
    providers = await build_providers(settings)
    assert isinstance(providers.chat, AnthropicChatModel)
    assert providers.chat.model == "claude-haiku-4-5"
    await providers.aclose()


async def test_llm_model_names_the_claude_model() -> None:
    settings = make_settings(
        "sqlite://",
        llm_provider="anthropic",
        anthropic_api_key="sk-ant-x",
        llm_model="claude-sonnet-4-6",
    )
    providers = await build_providers(settings)
    assert providers.chat.model == "claude-sonnet-4-6"
    await providers.aclose()


async def test_the_settings_url_wins_over_the_sdks_own_environment_reading(
    monkeypatch: pytest.MonkeyPatch, fake_anthropic: FakeAnthropicServer
) -> None:
    # Compose's `env_file` puts `.env.example`'s empty `ANTHROPIC_BASE_URL=` in the
    # environment, where the SDK would read it; the settings read it as "not set".
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "")
    unset = make_settings("sqlite://", llm_provider="anthropic", anthropic_api_key="k")
    providers = await build_providers(unset)
    assert isinstance(providers.chat, AnthropicChatModel)
    assert str(providers.chat._client.base_url).rstrip("/") == "https://api.anthropic.com"
    await providers.aclose()

    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")
    providers = await build_providers(
        make_settings("sqlite://", **anthropic_settings(fake_anthropic))
    )
    prompt = ChatPrompt(messages=[ChatMessage("user", "hi")], question="hi")
    completion = await providers.chat.complete(prompt)
    await providers.aclose()
    assert completion.text.startswith("Fake answer to:")
    assert len(fake_anthropic.messages_requests()) == 1


async def test_anthropic_without_key_is_refused() -> None:
    # An OpenAI key is no Anthropic key.
    settings = make_settings("sqlite://", llm_provider="anthropic", openai_api_key="sk-x")
    with pytest.raises(ProviderConfigError, match="ANTHROPIC_API_KEY"):
        await build_providers(settings)


async def test_openai_without_key_or_url_is_refused() -> None:
    with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY"):
        await build_providers(make_settings("sqlite://", llm_provider="openai"))


async def test_the_offline_answerer_ranks_with_the_configured_embedder(
    fake_openai: FakeOpenAIServer,
) -> None:
    settings = make_settings(
        "sqlite://",
        **{**openai_settings(fake_openai), "llm_provider": "extractive"},
        embeddings_provider="openai",
    )
    providers = await build_providers(settings)
    assert isinstance(providers.chat, ExtractiveChatModel)
    assert providers.embedder is not None
    assert providers.chat.embedder is providers.embedder
    await providers.aclose()
