"""Dense embedders: OpenAI-compatible endpoints, fastembed (local ONNX), sentence-transformers.

Every embedder returns plain `list[float]` vectors and keeps the event loop free. The vendors'
modules load on first use (`from bookchat.providers.embeddings import OpenAIEmbedder`): the
openai SDK, fastembed with onnxruntime, or sentence-transformers with torch are imported only by
a process that builds that embedder.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bookchat.providers.embeddings.base import (
    FALLBACK_ADVICE,
    Embedder,
    EmbedderUnavailable,
    EmbeddingsUnavailable,
    l2_normalize,
)

if TYPE_CHECKING:
    from bookchat.providers.embeddings.local import (
        FastEmbedEmbedder,
        SentenceTransformersEmbedder,
    )
    from bookchat.providers.embeddings.openai import OpenAIEmbedder

_VENDOR_MODULES = {
    "FastEmbedEmbedder": "bookchat.providers.embeddings.local",
    "SentenceTransformersEmbedder": "bookchat.providers.embeddings.local",
    "OpenAIEmbedder": "bookchat.providers.embeddings.openai",
}


def __getattr__(name: str) -> Any:
    module = _VENDOR_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


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
