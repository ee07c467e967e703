"""Dense embedders: OpenAI-compatible endpoints, fastembed (local ONNX), sentence-transformers.

Every embedder returns plain `list[float]` vectors and keeps the event loop free.
"""

from bookchat.providers.embeddings.base import (
    FALLBACK_ADVICE,
    Embedder,
    EmbedderUnavailable,
    EmbeddingsUnavailable,
    l2_normalize,
)
from bookchat.providers.embeddings.local import FastEmbedEmbedder, SentenceTransformersEmbedder
from bookchat.providers.embeddings.openai import OpenAIEmbedder

__all__ = [
    "FALLBACK_ADVICE",
    "Embedder",
    "EmbedderUnavailable",
    "EmbeddingsUnavailable",
    "FastEmbedEmbedder",
    "OpenAIEmbedder",
    "SentenceTransformersEmbedder",
    "l2_normalize",
]
