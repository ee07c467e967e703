"""Build the configured providers from settings (one place that knows every vendor)."""

from __future__ import annotations

from dataclasses import dataclass

from bookchat.core.config import LLMProvider, Settings
from bookchat.providers.base import ChatModel
from bookchat.providers.extractive import ExtractiveChatModel
from bookchat.providers.openai import OpenAIChatModel


class ProviderConfigError(ValueError):
    """The settings ask for a provider that cannot be built."""


@dataclass(slots=True)
class Providers:
    """Every long-lived provider the app uses, built once in the lifespan."""

    chat: ChatModel

    async def aclose(self) -> None:
        await self.chat.aclose()


def build_chat_model(settings: Settings) -> ChatModel:
    provider = settings.resolved_llm_provider
    if provider is LLMProvider.OPENAI:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        if not key and not settings.openai_base_url:
            raise ProviderConfigError(
                "LLM_PROVIDER=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local "
                "OpenAI-compatible server such as Ollama or vLLM)"
            )
        return OpenAIChatModel(
            model=settings.llm_model,
            api_key=key,
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
        )
    if provider is LLMProvider.EXTRACTIVE:
        return ExtractiveChatModel()
    raise ProviderConfigError(f"unknown LLM_PROVIDER {provider!r}")  # pragma: no cover


def build_providers(settings: Settings) -> Providers:
    """Build the providers the settings ask for; raise `ProviderConfigError` when they cannot be."""
    return Providers(chat=build_chat_model(settings))
