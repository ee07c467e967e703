"""Which chunks a document gets: the chunking policy, fitted to what the embedding model reads.

The chunker sizes chunks with its own token estimate, which needs no tokenizer and is what the
BM25-only profile uses unchanged. An embedding model reads a fixed number of its own tokens
and ignores the rest of a text, and the estimate can count fewer than the model does (code,
symbols, scripts its vocabulary covers badly: up to 28% fewer on textbook-a with MiniLM's
WordPiece). So with an embedder the planner measures every planned chunk with the embedder's
own count (`Embedder.count_tokens`, the model's tokenizer for local models) and, when one is
over the window, plans the whole document again under a cap scaled down by how far over it
was, until every chunk fits. The first plan leaves `ESTIMATE_MARGIN` tokens of room, which is
usually enough: on textbook-a with MiniLM one page in 18 is planned twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from bookchat.content.chunker import MIN_MAX_TOKENS, TextChunk, chunk_document
from bookchat.core.errors import ConfigurationError
from bookchat.providers.embeddings import Embedder

logger = structlog.get_logger(__name__)

ESTIMATE_MARGIN = 32


class ChunkTooLong(ConfigurationError):
    """Even the smallest chunks the chunker makes are longer than the embedding model reads:
    the configured model cannot see whole chunks (the message is for the operator)."""


@dataclass(slots=True)
class ChunkingPolicy:
    """Sizes in the chunker's estimated tokens."""

    target_tokens: int = 350
    overlap_tokens: int = 50
    max_tokens: int = 480


class ChunkPlanner:
    """Plans a document's chunks under the policy, each within the embedder's input window."""

    def __init__(self, policy: ChunkingPolicy, embedder: Embedder | None) -> None:
        self.policy = policy
        self._embedder = embedder

    def plan(self, body: str, *, title: str) -> list[TextChunk]:
        """The document's chunks; with an embedder, none longer than the model reads."""
        if self._embedder is None:
            return self._chunk(body, title, self.policy.max_tokens)
        window = self._embedder.max_input_tokens
        cap = max(MIN_MAX_TOKENS, min(self.policy.max_tokens, window - ESTIMATE_MARGIN))
        while True:
            chunks = self._chunk(body, title, cap)
            longest = max(
                (self._embedder.count_tokens(c.embedding_text) for c in chunks), default=0
            )
            if longest <= window:
                return chunks
            if cap == MIN_MAX_TOKENS:
                raise ChunkTooLong(
                    f"a chunk of {title!r} has {longest} tokens even at the smallest chunk "
                    f"size, more than the {window} the embedding model reads; choose a model "
                    "with a larger input window (EMBEDDINGS_MODEL)"
                )
            logger.debug("ingest.chunks_refit", title=title, cap=cap, longest=longest)
            cap = max(MIN_MAX_TOKENS, min(cap - 1, cap * window // longest))

    def _chunk(self, body: str, title: str, cap: int) -> list[TextChunk]:
        target = min(self.policy.target_tokens, cap)
        return chunk_document(
            body,
            title=title,
            target_tokens=target,
            overlap_tokens=min(self.policy.overlap_tokens, target - 1),
            max_tokens=cap,
        )
