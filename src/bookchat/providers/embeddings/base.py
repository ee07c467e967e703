"""What every dense embedder offers, and the error for a model that cannot be had."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import structlog

from bookchat.core.errors import ConfigurationError, DependencyUnavailable

if TYPE_CHECKING:
    from tokenizers import Tokenizer

logger = structlog.get_logger(__name__)

FALLBACK_ADVICE = (
    "set EMBEDDINGS_MODEL_PATH to a local copy of the model, use EMBEDDINGS_PROVIDER=openai, "
    "or run with lexical retrieval only (EMBEDDINGS_PROVIDER=none)"
)


class EmbedderUnavailable(ConfigurationError):
    """The embedding model cannot be had; the message says why and what to do, in one line."""


class EmbeddingsUnavailable(DependencyUnavailable):
    """The embeddings service failed a call (503). `reason` names the kind of failure in one
    word for logs and metric labels: `timeout`, `rate_limited`, `unreachable`, `credentials`,
    `server_error`, `rejected` or `bad_response`."""

    def __init__(self, message: str, *, reason: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@runtime_checkable
class Embedder(Protocol):
    """A dense text embedder. `name` is the identity recorded in the index with `dimension`."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_input_tokens(self) -> int:
        """How many tokens of a text the model reads, counted as `count_tokens` counts them
        (special tokens included); the rest of the text is invisible to it."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens the model would read for `text` if it had no limit: exact with the
        model's own tokenizer, else an upper bound, never fewer than the model counts. Runs on
        the caller's thread (CPU-bound for local models)."""
        ...

    async def ensure_ready(self) -> None:
        """Finish whatever setup needs I/O (for example learning the dimension)."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...

    async def aclose(self) -> None: ...


def counting_copy(tokenizer: Tokenizer) -> Tokenizer:
    """The same tokenizer without truncation or padding, to count what a text costs in full
    (a copy: the model's own one keeps truncating what it embeds)."""
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(tokenizer.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter


def l2_normalize(vector: Sequence[float]) -> list[float]:
    """`vector` scaled to unit length (the zero vector is returned unchanged)."""
    norm = math.sqrt(math.fsum(float(x) * float(x) for x in vector))
    if norm == 0.0:
        return [float(x) for x in vector]
    return [float(x) / norm for x in vector]


def cosines(query: Sequence[float], vectors: Sequence[Sequence[float]]) -> list[float]:
    """The cosine similarity of each vector to `query` (0 for a zero vector), in one matrix
    product: in pure Python, 20 vectors of 1,536 floats took 7 ms of a chat turn."""
    if not vectors:
        return []
    matrix = np.asarray(vectors, dtype=np.float64)
    target = np.asarray(query, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(target)
    dots = matrix @ target
    return [float(d / n) if n else 0.0 for d, n in zip(dots, norms, strict=True)]
