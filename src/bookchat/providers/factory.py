"""Build the configured providers from settings (one place that knows every vendor).

Each vendor's module (and with it its SDK: openai, fastembed with onnxruntime, torch) is
imported by the function that builds it, so a process loads only the vendors it is configured
for: the offline profile never imports the openai SDK or an ONNX runtime.
"""

from __future__ import annotations

import asyncio
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from bookchat.core.config import EmbeddingsProvider, LLMProvider, RerankerKind, Settings
from bookchat.core.errors import ConfigurationError
from bookchat.providers.base import ChatModel
from bookchat.providers.embeddings import Embedder, EmbedderUnavailable
from bookchat.providers.embeddings.base import FALLBACK_ADVICE
from bookchat.providers.fastembed_models import refuse_unreachable_download
from bookchat.providers.sparse import Bm25Encoder, SparseEncoder

if TYPE_CHECKING:
    from bookchat.core.metrics import Metrics
    from bookchat.providers.search_results import CitationCounter
    from bookchat.retrieval.rerank import Reranker

logger = structlog.get_logger(__name__)

# The model each embeddings provider uses when EMBEDDINGS_MODEL is not set.
DEFAULT_EMBEDDING_MODELS = {
    EmbeddingsProvider.OPENAI: "text-embedding-3-small",
    EmbeddingsProvider.FASTEMBED: "BAAI/bge-small-en-v1.5",
    EmbeddingsProvider.SENTENCE_TRANSFORMERS: "sentence-transformers/all-MiniLM-L6-v2",
}


class ProviderConfigError(ConfigurationError):
    """The settings ask for a provider that cannot be built."""


@dataclass(slots=True)
class Providers:
    """Every long-lived provider the app uses, built once in the lifespan."""

    chat: ChatModel
    sparse: SparseEncoder
    embedder: Embedder | None = None
    reranker: Reranker | None = None

    async def aclose(self) -> None:
        await self.chat.aclose()
        if self.embedder is not None:
            await self.embedder.aclose()


def _openai_key(settings: Settings) -> str | None:
    return settings.openai_api_key.get_secret_value() if settings.openai_api_key else None


def _citation_counter(
    metrics: Metrics | None, provider: LLMProvider, model: str
) -> CitationCounter | None:
    """What counts a model's own citations by outcome (`kept`, `dropped`) in `metrics`."""
    if metrics is None:
        return None
    from bookchat.core.metrics import metric_book  # loaded with `metrics` already

    citations = metrics.llm_citations.labels

    def count(outcome: str) -> None:
        citations(metric_book(), provider.value, model, outcome).inc()

    return count


def build_chat_model(
    settings: Settings, embedder: Embedder | None = None, metrics: Metrics | None = None
) -> ChatModel:
    """The configured chat model; the offline one also ranks by meaning with `embedder`.
    `metrics` counts the citations a model makes itself (Claude's) that are kept or dropped."""
    provider = settings.resolved_llm_provider
    model = settings.resolved_llm_model
    if provider is LLMProvider.ANTHROPIC:
        if not settings.anthropic_api_key:
            raise ProviderConfigError("LLM_PROVIDER=anthropic needs ANTHROPIC_API_KEY")
        from bookchat.providers.anthropic import AnthropicChatModel

        return AnthropicChatModel(
            model=model,
            api_key=settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            citations=_citation_counter(metrics, LLMProvider.ANTHROPIC, model),
        )
    if provider is LLMProvider.OPENAI:
        from bookchat.providers.openai import OpenAIChatModel

        key = _openai_key(settings)
        if not key and not settings.openai_base_url:
            raise ProviderConfigError(
                "LLM_PROVIDER=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local "
                "OpenAI-compatible server such as Ollama or vLLM)"
            )
        return OpenAIChatModel(
            model=model,
            api_key=key,
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
        )
    if provider is LLMProvider.EXTRACTIVE:
        from bookchat.providers.extractive import ExtractiveChatModel

        return ExtractiveChatModel(embedder)
    raise ProviderConfigError(f"unknown LLM_PROVIDER {provider!r}")  # pragma: no cover


async def build_embedder(settings: Settings) -> Embedder | None:
    """The dense embedder the settings ask for, or None for BM25-only retrieval.

    An explicitly chosen provider that cannot load is an error; under `auto`, a local model
    that cannot be had is one warning line and lexical retrieval.
    """
    provider = settings.resolved_embeddings_provider
    model = settings.embeddings_model
    try:
        if provider is EmbeddingsProvider.NONE:
            return None
        if provider is EmbeddingsProvider.OPENAI:
            from bookchat.providers.embeddings.openai import OpenAIEmbedder

            key = _openai_key(settings)
            if not key and not settings.openai_base_url:
                raise ProviderConfigError(
                    "EMBEDDINGS_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_BASE_URL"
                )
            embedder = OpenAIEmbedder(
                model=model or DEFAULT_EMBEDDING_MODELS[provider],
                api_key=key,
                base_url=settings.openai_base_url,
                dimension=settings.embeddings_dimensions,
                timeout=settings.llm_timeout_seconds,
                max_retries=settings.llm_max_retries,
            )
            await embedder.ensure_ready()
            return embedder
        if provider is EmbeddingsProvider.FASTEMBED:
            # One bounded connection attempt (and a name lookup): off the loop too.
            await asyncio.to_thread(
                refuse_unreachable_download,
                model or DEFAULT_EMBEDDING_MODELS[provider],
                cache_dir=settings.fastembed_cache_dir,
                model_path=settings.embeddings_model_path,
                timeout=settings.embeddings_download_timeout_seconds,
                error=EmbedderUnavailable,
                advice=FALLBACK_ADVICE,
            )
            from bookchat.providers.embeddings.local import FastEmbedEmbedder

            # Loading a local model reads files and may try a (bounded) download: off the loop.
            return await asyncio.to_thread(
                FastEmbedEmbedder,
                model=model or DEFAULT_EMBEDDING_MODELS[provider],
                cache_dir=settings.fastembed_cache_dir,
                model_path=settings.embeddings_model_path,
                download_timeout=settings.embeddings_download_timeout_seconds,
            )
        if provider is EmbeddingsProvider.SENTENCE_TRANSFORMERS:
            if importlib.util.find_spec("sentence_transformers") is None:
                # Without the library (and torch), BERT models run on numpy: same vectors.
                from bookchat.providers.embeddings.numpy_bert import (
                    NumpySentenceTransformersEmbedder,
                )

                return await asyncio.to_thread(
                    NumpySentenceTransformersEmbedder,
                    model=model or DEFAULT_EMBEDDING_MODELS[provider],
                    model_path=settings.embeddings_model_path,
                )
            from bookchat.providers.embeddings.local import SentenceTransformersEmbedder

            return await asyncio.to_thread(
                SentenceTransformersEmbedder,
                model=model or DEFAULT_EMBEDDING_MODELS[provider],
                model_path=settings.embeddings_model_path,
            )
    except EmbedderUnavailable as exc:
        if settings.embeddings_provider is not EmbeddingsProvider.AUTO:
            raise ProviderConfigError(str(exc)) from exc
        logger.warning("embeddings.unavailable", reason=str(exc), fallback="bm25 only")
        return None
    raise ProviderConfigError(f"unknown EMBEDDINGS_PROVIDER {provider!r}")  # pragma: no cover


def possible_embedder_names(settings: Settings) -> frozenset[str | None]:
    """The names (`Embedder.name`, lower-cased) the embedder these settings build can have,
    None standing for BM25 only, told without building it: a command compares them with the
    index's before it decides to load nothing."""
    provider = settings.resolved_embeddings_provider
    if provider is EmbeddingsProvider.NONE:
        return frozenset({None})
    model = settings.embeddings_model or DEFAULT_EMBEDDING_MODELS[provider]
    name = f"{provider.value}:{model}".lower()
    # Under `auto`, a fastembed model that cannot be downloaded means BM25 only; the `minilm`
    # extra's model (what `auto` means when it is installed) is on disk and loads.
    fallback = (
        settings.embeddings_provider is EmbeddingsProvider.AUTO
        and provider is EmbeddingsProvider.FASTEMBED
    )
    return frozenset({name, None}) if fallback else frozenset({name})


async def build_reranker(settings: Settings) -> Reranker | None:
    """The reranker the settings ask for. A cross-encoder that cannot be had is one warning
    line and the lexical reranker: retrieval works without it, only less well."""
    from bookchat.retrieval.rerank import CrossEncoderReranker, LexicalReranker, RerankerUnavailable

    if settings.reranker is RerankerKind.NONE:
        return None
    if settings.reranker is RerankerKind.CROSS_ENCODER:
        try:
            # Loading reads files and may try a (bounded) download: off the loop.
            return await asyncio.to_thread(
                CrossEncoderReranker,
                model=settings.rerank_model,
                cache_dir=settings.fastembed_cache_dir,
                model_path=settings.rerank_model_path,
                download_timeout=settings.embeddings_download_timeout_seconds,
            )
        except RerankerUnavailable as exc:
            logger.warning("rerank.unavailable", reason=str(exc), fallback="lexical")
    return LexicalReranker()


async def build_providers(settings: Settings, metrics: Metrics | None = None) -> Providers:
    """Build the providers the settings ask for; raise `ProviderConfigError` when they cannot be."""
    embedder = await build_embedder(settings)
    try:
        chat = build_chat_model(settings, embedder, metrics)
    except BaseException:
        if embedder is not None:
            await embedder.aclose()
        raise
    return Providers(
        chat=chat,
        sparse=Bm25Encoder(),
        embedder=embedder,
        reranker=await build_reranker(settings),
    )
