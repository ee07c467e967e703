"""The offline answerer: no model, no network; it quotes the best sentences of its sources."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
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


_HEADING = re.compile(r"^#{1,6}\s")
_ADMONITION = re.compile(r"^:::")
_TABLE_ROW = re.compile(r"^\|")
_LIST_MARKER = re.compile(r"^(?:[-*+]|\d{1,3}[.)])\s+")


def split_sentences(text: str) -> list[str]:
    """Quotable sentences of a passage: no code, headings, tables or admonition markers, no
    lead-ins to code ("...as follows:"), list markers removed."""
    pieces: list[str] = []
    for block in re.split(r"(```.*?```|~~~.*?~~~)", text, flags=re.DOTALL):
        if block.startswith(("```", "~~~")):
            continue  # quoting half a code block helps nobody; the citation links to it
        lines = [
            _LIST_MARKER.sub("", line.strip())
            for line in block.splitlines()
            if not (_HEADING.match(line) or _ADMONITION.match(line) or _TABLE_ROW.match(line))
        ]
        prose = "\n".join(lines)
        pieces.extend(s.strip() for s in _SENTENCE_END.split(prose) if s and s.strip())
    sentences = []
    for piece in pieces:
        piece = " ".join(piece.split())
        if piece.endswith(":") or (len(_terms(piece)) < 2 and len(piece) <= 20):
            continue
        sentences.append(piece)
    return sentences


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
        seen: set[str] = set()
        sentences = []
        for source in sources:
            for position, sentence in enumerate(split_sentences(source.text)):
                key = sentence.lower()
                if key not in seen:  # overlapping chunks repeat sentences
                    seen.add(key)
                    sentences.append((source, position, sentence))
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

    async def stream(self, prompt: ChatPrompt) -> AsyncGenerator[str | Usage]:
        for piece in re.findall(r"\S+\s*", self.answer(prompt.question, prompt.sources)):
            yield piece

    async def aclose(self) -> None:
        return None
