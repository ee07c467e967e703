"""The offline answerer: no model, no network; it quotes the best sentences of its sources."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from bookchat.providers.base import AnswerMode, ChatPrompt, Completion, Source, Usage

NO_CONTEXT_ANSWER = (
    "I'm running offline (no language model is configured) and no book content has been "
    "loaded yet, so I have nothing to answer from. Ingest the book, or set OPENAI_API_KEY "
    "to use a language model."
)

RELEVANCE_RATIO = 0.5
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9`])|\n{2,}")
_WORD = re.compile(r"[a-z0-9][a-z0-9_+\-.]*[a-z0-9_+]|[a-z0-9]", re.IGNORECASE)
# fmt: off
_STOP_WORDS = frozenset([
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can",
    "could", "do", "does", "did", "explain", "for", "from", "how", "i", "if", "in", "into", "is",
    "it", "its", "me", "my", "of", "on", "or", "please", "say", "so", "such", "tell", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "us",
    "was", "we", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you",
    "your",
])
# fmt: on


def _terms(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP_WORDS]


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences; code fences and blank-line blocks stay whole pieces."""
    pieces: list[str] = []
    for block in re.split(r"(```.*?```)", text, flags=re.DOTALL):
        if block.startswith("```"):
            continue  # quoting half a code block helps nobody; the citation links to it
        pieces.extend(s.strip() for s in _SENTENCE_END.split(block) if s and s.strip())
    return [p for p in pieces if len(_terms(p)) >= 2 or len(p) > 20]


@dataclass(frozen=True, slots=True)
class _Candidate:
    source: Source
    position: int
    text: str
    overlap: float
    score: float


class ExtractiveChatModel:
    """`ChatModel` that answers by quoting the sentences of its sources that best match the
    question, each followed by its `[n]` marker. It never writes anything the sources do not say.
    """

    provider = "extractive"
    model = "extractive"
    mode: AnswerMode = "extractive"

    def __init__(self, max_sentences: int = 3) -> None:
        self.max_sentences = max_sentences

    def answer(self, question: str, sources: Sequence[Source]) -> str:
        if not sources:
            return NO_CONTEXT_ANSWER
        candidates = self._rank(question, sources)
        if not candidates:
            return NO_CONTEXT_ANSWER
        best = candidates[0].overlap
        if best > 0:
            # Only sentences that share a good part of the best one's match with the question.
            candidates = [c for c in candidates if c.overlap >= RELEVANCE_RATIO * best]
        chosen = candidates[: self.max_sentences]
        # Read in the book's order, not the score's: the answer should flow like the text.
        chosen.sort(key=lambda c: (c.source.index, c.position))
        parts = []
        for i, candidate in enumerate(chosen):
            parts.append(candidate.text)
            last_of_source = i + 1 == len(chosen) or chosen[i + 1].source is not candidate.source
            if last_of_source:
                parts[-1] += f" [{candidate.source.index}]"
        return " ".join(parts)

    def _rank(self, question: str, sources: Sequence[Source]) -> list[_Candidate]:
        sentences = [
            (source, position, sentence)
            for source in sources
            for position, sentence in enumerate(split_sentences(source.text))
        ]
        if not sentences:
            return []
        document_frequency: Counter[str] = Counter()
        sentence_terms = []
        for _, _, sentence in sentences:
            terms = _terms(sentence)
            sentence_terms.append(terms)
            document_frequency.update(set(terms))
        query = set(_terms(question))
        total = len(sentences)
        candidates = []
        for (source, position, sentence), terms in zip(sentences, sentence_terms, strict=True):
            matched = query.intersection(terms)
            overlap = sum(math.log(1 + total / document_frequency[t]) for t in matched)
            # Earlier sentences and better-ranked sources break ties: they tend to define things.
            score = overlap / math.sqrt(max(len(terms), 1)) + 0.01 / (1 + position + source.index)
            candidates.append(_Candidate(source, position, sentence, overlap, score))
        candidates.sort(key=lambda c: c.score, reverse=True)
        return candidates

    async def complete(self, prompt: ChatPrompt) -> Completion:
        text = self.answer(prompt.question, prompt.sources)
        return Completion(text=text, model=self.model, usage=Usage())

    async def stream(self, prompt: ChatPrompt) -> AsyncIterator[str]:
        for piece in re.findall(r"\S+\s*", self.answer(prompt.question, prompt.sources)):
            yield piece

    async def aclose(self) -> None:
        return None
