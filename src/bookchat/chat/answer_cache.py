"""The answer cache: the same first question, asked again, is answered from the first answer.

Only first turns are cached (no history, no selection), keyed on the normalized question, the
page the reader is on, the model and the number of passages, under the book's index version:
re-ingesting the book moves every later lookup to new keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from bookchat.books.names import DEFAULT_BOOK, index_version
from bookchat.core.cache import Cache, versioned_key
from bookchat.providers.base import ChatModel, Source


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An answer given before to the same first question, as its reader saw it: the text with
    its markers renumbered, and its sources in the same numbering (cited first)."""

    text: str
    model: str
    sources: list[Source]

    def dumps(self) -> bytes:
        return json.dumps(
            {"text": self.text, "model": self.model, "sources": [asdict(s) for s in self.sources]}
        ).encode()

    @classmethod
    def loads(cls, raw: bytes) -> CachedAnswer | None:
        try:
            data = json.loads(raw)
            return cls(
                text=data["text"],
                model=data["model"],
                sources=[Source(**source) for source in data["sources"]],
            )
        except (ValueError, KeyError, TypeError):  # a foreign or older entry: treat as a miss
            return None


def normalize_question(question: str) -> str:
    """The question as the cache sees it: case, spacing and end punctuation do not matter."""
    return " ".join(question.lower().split()).rstrip("?!.。？！ ")


@dataclass(slots=True)
class AnswerCache:
    cache: Cache
    model: ChatModel
    ttl_seconds: float
    top_k: int

    async def key(
        self, question: str, page_context: str | None, book: str = DEFAULT_BOOK
    ) -> str | None:
        """The key for this first question to `book`, or None when the cache cannot be used
        now. A book's answers are keyed by its own index version: another book's ingestion
        leaves them alone, and no key is shared between books."""
        if self.ttl_seconds <= 0:
            return None
        return await versioned_key(
            self.cache,
            "answer",
            book,
            normalize_question(question),
            page_context or "",
            self.model.provider,
            self.model.model,
            str(self.top_k),
            version=index_version(book),
        )

    async def get(self, key: str | None) -> CachedAnswer | None:
        if key is None:
            return None
        raw = await self.cache.get(key)
        return CachedAnswer.loads(raw) if raw is not None else None

    async def put(self, key: str | None, text: str, model: str, sources: Sequence[Source]) -> None:
        if key is not None:
            answer = CachedAnswer(text=text, model=model, sources=list(sources))
            await self.cache.set(key, answer.dumps(), self.ttl_seconds)
