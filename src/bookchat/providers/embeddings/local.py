"""Local dense embedders: fastembed (ONNX) and sentence-transformers (optional extra).

Local inference runs in a worker thread. A model that cannot be had raises
`EmbedderUnavailable` at construction, quickly and with a one-line reason, never a hang.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Sequence
from typing import Any

import structlog
from fastembed import TextEmbedding
from fastembed.common.model_description import DenseModelDescription
from fastembed.common.utils import define_cache_dir
from tokenizers import Tokenizer

from bookchat.providers.embeddings.base import (
    FALLBACK_ADVICE,
    EmbedderUnavailable,
    counting_copy,
)
from bookchat.providers.fastembed_models import load_fastembed_model, short_error

logger = structlog.get_logger(__name__)


# What the model reads, in its own tokens, when its tokenizer allows more or does not say.
_KNOWN_MAX_TOKENS = {
    "baai/bge-small-en-v1.5": 512,
    "sentence-transformers/all-minilm-l6-v2": 256,
}
_DEFAULT_MAX_TOKENS = 512


def _fastembed_description(model: str) -> DenseModelDescription:
    try:
        return TextEmbedding._get_model_description(model)
    except ValueError:
        raise EmbedderUnavailable(
            f"fastembed does not know the embedding model {model!r}: set EMBEDDINGS_MODEL to one "
            "of fastembed's TextEmbedding.list_supported_models(), use "
            "EMBEDDINGS_PROVIDER=openai, or run with lexical retrieval only "
            "(EMBEDDINGS_PROVIDER=none)"
        ) from None


def _model_tokenizer(embedding: TextEmbedding, model: str) -> Tokenizer:
    tokenizer = getattr(embedding.model, "tokenizer", None)
    if not isinstance(tokenizer, Tokenizer):
        raise EmbedderUnavailable(
            f"fastembed model {model} was loaded without its tokenizer, which is needed to fit "
            f"chunks to what the model reads; {FALLBACK_ADVICE}"
        )
    return tokenizer


def _tokenizer_limit(tokenizer: Tokenizer) -> int | None:
    truncation = tokenizer.truncation or {}
    limit = truncation.get("max_length")
    return limit if isinstance(limit, int) and limit > 0 else None


class FastEmbedEmbedder:
    """`Embedder` on a local ONNX model through fastembed; vectors are unit length.

    The model comes from `model_path` (a folder with the model's files), else from the model
    cache, else (when `allow_download`) from Hugging Face, waiting at most `download_timeout`
    seconds: a download still running then is left to a daemon thread that cannot keep the
    process alive, and may still fill the cache for the next start.
    """

    provider = "fastembed"

    def __init__(
        self,
        *,
        model: str = "BAAI/bge-small-en-v1.5",
        cache_dir: str | None = None,
        model_path: str | None = None,
        allow_download: bool = True,
        download_timeout: float = 10.0,
    ) -> None:
        description = _fastembed_description(model)
        self.model = description.model
        self.name = f"fastembed:{description.model}"
        self._cache_dir = str(define_cache_dir(cache_dir))
        started = time.perf_counter()
        self._embedding, source = load_fastembed_model(
            TextEmbedding,
            description,
            cache_dir=self._cache_dir,
            model_path=model_path,
            path_setting="EMBEDDINGS_MODEL_PATH",
            allow_download=allow_download,
            download_timeout=download_timeout,
            error=EmbedderUnavailable,
            advice=FALLBACK_ADVICE,
        )
        self.dimension: int = description.dim or len(self._embed_sync(["probe"], query=False)[0])
        tokenizer = _model_tokenizer(self._embedding, self.model)
        self._counter = counting_copy(tokenizer)
        # The tokenizer may allow more than the model was trained on (MiniLM: 512 vs 256).
        limits = [_tokenizer_limit(tokenizer), _KNOWN_MAX_TOKENS.get(self.model.lower())]
        self.max_input_tokens: int = min((n for n in limits if n), default=_DEFAULT_MAX_TOKENS)
        logger.info(
            "embeddings.model_loaded",
            provider=self.provider,
            model=self.model,
            source=source,
            dimension=self.dimension,
            max_input_tokens=self.max_input_tokens,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def count_tokens(self, text: str) -> int:
        """The model's own tokenizer's count, special tokens included."""
        return len(self._counter.encode(text).ids)

    def _embed_sync(self, texts: list[str], *, query: bool) -> list[list[float]]:
        vectors = self._embedding.query_embed(texts) if query else self._embedding.embed(texts)
        return [vector.tolist() for vector in vectors]

    async def ensure_ready(self) -> None:
        """Nothing to do: the model is loaded by the constructor."""

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._embed_sync, list(texts), query=False)

    async def embed_query(self, text: str) -> list[float]:
        return (await asyncio.to_thread(self._embed_sync, [text], query=True))[0]

    async def aclose(self) -> None:
        """Nothing to release: the ONNX session goes with the object."""


class SentenceTransformersEmbedder:
    """`Embedder` on sentence-transformers (extra `bookchat[sentence-transformers]`).

    `model` is the name recorded in the index; `model_path`, when given, is where it is loaded
    from (a folder saved by `SentenceTransformer.save`). Inference runs in a worker thread.
    """

    provider = "sentence-transformers"

    def __init__(
        self,
        *,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        model_path: str | None = None,
        device: str = "cpu",
    ) -> None:
        self.model = model
        self.name = f"sentence-transformers:{model}"
        try:
            library = importlib.import_module("sentence_transformers")
        except ImportError:
            raise EmbedderUnavailable(
                "EMBEDDINGS_PROVIDER=sentence-transformers needs the optional extra: "
                "pip install 'bookchat[sentence-transformers]'"
            ) from None
        self._load(library, model_path or model, device)  # pragma: no cover - extra

    def _load(self, library: Any, source: str, device: str) -> None:  # pragma: no cover - extra
        try:
            self._model: Any = library.SentenceTransformer(source, device=device)
        except Exception as exc:
            raise EmbedderUnavailable(
                f"sentence-transformers model {source} cannot be loaded ({short_error(exc)}); "
                f"{FALLBACK_ADVICE}"
            ) from exc
        # sentence-transformers 5+ renamed the accessor; older releases only have the long name.
        measure = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        self.dimension: int = int(measure())
        self.max_input_tokens: int = int(self._model.max_seq_length)

    def count_tokens(self, text: str) -> int:  # pragma: no cover - extra
        """The model's own tokenizer's count, special tokens included (`max_seq_length` counts
        them too)."""
        encoded = self._model.tokenizer(
            text, add_special_tokens=True, truncation=False, verbose=False
        )
        return len(encoded["input_ids"])

    def _embed_sync(self, texts: list[str]) -> list[list[float]]:  # pragma: no cover - extra
        vectors = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        return [vector.tolist() for vector in vectors]

    async def ensure_ready(self) -> None:  # pragma: no cover - extra
        """Nothing to do: the model is loaded by the constructor."""

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:  # pragma: no cover
        if not texts:
            return []
        return await asyncio.to_thread(self._embed_sync, list(texts))

    async def embed_query(self, text: str) -> list[float]:  # pragma: no cover - extra
        return (await asyncio.to_thread(self._embed_sync, [text]))[0]

    async def aclose(self) -> None:  # pragma: no cover - extra
        """Nothing to release."""
