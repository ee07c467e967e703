"""The provider factory builds what the settings name, or says why it cannot."""

from __future__ import annotations

import pytest

from bookchat.providers.anthropic import AnthropicChatModel
from bookchat.providers.extractive import ExtractiveChatModel
from bookchat.providers.factory import ProviderConfigError, build_providers
from bookchat.providers.openai import OpenAIChatModel
from tests.conftest import make_settings, openai_settings
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
