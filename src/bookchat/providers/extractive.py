"""The offline answerer: no language model; it quotes the sentences of its sources that answer.

Sentences are ranked by how much of the question they cover (stemmed words, weighted by rarity;
the meaning too when an embedder is at hand), then by what makes a sentence a good answer: a
definition of what is asked, a section's opening, a better-ranked source. The answer is a few
of them, each verbatim (after `quotable.plain_text`) and followed by its source's `[n]`; a
question that a code block or a table of the best sources covers much better than any prose
gets the code block, whole (or, for a block the chunker split, the piece it has, followed by
`ranking.CODE_PART_NOTE`), or the table's header and the rows it asks about. When nothing
answers, it says so.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence

import structlog

from bookchat.providers.base import (
    FINISHED,
    SELECTION_TITLE,
    AnswerMode,
    ChatPrompt,
    Completion,
    Finish,
    Source,
    Usage,
)
from bookchat.providers.embeddings import Embedder
from bookchat.providers.embeddings.base import cosines
from bookchat.providers.quotable import table_lines
from bookchat.providers.ranking import (
    CodeAnswer,
    Ranked,
    Ranking,
    best_code_block,
    best_table,
    central_sentences,
    topic_terms,
)
from bookchat.providers.terms import content_terms

logger = structlog.get_logger(__name__)

NO_CONTEXT_ANSWER = (
    "I'm running offline (no language model is configured) and no book content has been "
    "loaded yet, so I have nothing to answer from. Ingest the book, or set OPENAI_API_KEY "
    "to use a language model."
)
NOTHING_QUOTABLE_ANSWER = (
    "I found passages that may be related, but none of them has a sentence I can quote as an "
    "answer (offline, without a language model, I only quote the book). Have a look at them:"
)
SELECTION_NOT_ANSWERING = "The selected text does not answer this"
SELECTION_ONE_SENTENCE = (
    "The selection is a single sentence, and offline (without a language model) I can only "
    "quote, not rephrase. Ask a question about it, or ask without a selection to search the "
    "whole book."
)
SELECTION_NOTHING_QUOTABLE = (
    "The selected text has no sentence I can quote (offline, without a language model, I only "
    "quote). Ask without a selection to search the whole book."
)
# The source that holds a reader's selection (chat/turns.py builds it with this title).

_OWN_WORDS = (
    NO_CONTEXT_ANSWER,
    NOTHING_QUOTABLE_ANSWER,
    SELECTION_NOT_ANSWERING,
    SELECTION_ONE_SENTENCE,
    SELECTION_NOTHING_QUOTABLE,
)
_FENCE_OR_MARKER = re.compile(
    r"^(?P<fence>```|~~~)[^\n]*\n.*?^(?P=fence)[ \t]*$|\s?\[(?P<number>\d{1,3})\]",
    re.MULTILINE | re.DOTALL,
)
# A question that asks for code: how to do something, a verb of writing or running software.
_ASKS_FOR_CODE = re.compile(
    r"^\s*how (?:do|can|should|could|would) (?:i|we|you|one)\b|\bhow to\b|"
    r"\b(?:write|writing|run|running|create|creating|install|installing|launch|launching|"
    r"set ?up|setting up|configure|configuring|implement|implementing|code|command|commands|"
    r"snippet|script|example)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")
# "How much", "how many": words that ask for a quantity, never what a selection lacks.
_QUANTITY = frozenset(content_terms("much many"))
_ASKS_HOW = re.compile(r"^\s*how\b", re.IGNORECASE)
_ASKS_WHY = re.compile(r"^\s*why\b", re.IGNORECASE)
# A selection quoted in reply to a question: at most this many of its sentences.
MAX_SELECTION_SENTENCES = 3
MAX_EXPLAIN_SENTENCES = 2
POINTED_SOURCES = 3
CODE_MARGIN = 0.2
# The least share of the question (weighted by rarity) the best sentence of an answer holds.
MIN_QUOTE_RELEVANCE = 1 / 6


class ExtractiveChatModel:
    """`ChatModel` that answers by quoting the sentences of its sources that best match the
    question, each followed by its `[n]` marker. It never writes anything the sources do not say.

    With an `embedder`, sentences are also ranked by dense similarity to the question: at most
    `max_embedded` of them, in one call bounded by `embed_timeout` seconds; an embedder that
    fails or is slow leaves the ranking to words. `dense_floor` is the cosine similarity from
    which a sentence that shares no word with the question still counts as an answer.
    """

    provider = "extractive"
    model = "extractive"
    mode: AnswerMode = "extractive"
    takes_documents = False

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        max_sentences: int = 3,
        max_embedded: int = 64,
        embed_timeout: float = 5.0,
        dense_floor: float = 0.6,
    ) -> None:
        self.embedder = embedder
        self.max_sentences = max_sentences
        self.max_embedded = max_embedded
        self.embed_timeout = embed_timeout
        self.dense_floor = dense_floor

    def answer(self, question: str, sources: Sequence[Source]) -> str:
        """The answer to `question` from `sources`, ranked by words alone."""
        if not sources:
            return NO_CONTEXT_ANSWER
        return self._answer(Ranking(question, sources, dense_floor=self.dense_floor))

    async def answer_async(self, question: str, sources: Sequence[Source]) -> str:
        """The answer to `question` from `sources`, ranked by words and, when the embedder
        answers in time, by meaning."""
        if not sources:
            return NO_CONTEXT_ANSWER
        ranking = Ranking(question, sources, dense_floor=self.dense_floor)
        similarities = await self._similarities(question, ranking.texts()[: self.max_embedded])
        if similarities:
            ranking.rescore(similarities)
        return self._answer(ranking)

    def _answer(self, ranking: Ranking) -> str:
        question, sources = ranking.question, ranking.sources
        if len(sources) == 1 and sources[0].title == SELECTION_TITLE:
            return self._from_selection(question, ranking)
        code = best_code_block(ranking)
        if code is not None and _ASKS_FOR_CODE.search(question):
            return code.text
        if not ranking.topic:  # "explain", "tell me more": the best source's opening
            chosen = ranking.opening(MAX_EXPLAIN_SENTENCES)
        else:
            chosen = ranking.choose(self.max_sentences)
        if ranking.asked and not any(ranking.states_definition(r.text) for r in chosen):
            # "What is X?": where the book's definition of X introduces a code block, the
            # definition and the block answer, before sentences that only mention X.
            defining = best_code_block(ranking, defining=True)
            if defining is not None:
                return defining.text
        if code is not None and _code_says_more(code, chosen, ranking):
            return code.text
        table = best_table(ranking)
        if table is not None and (
            _covers_more(table.cover, table.source, chosen, ranking)
            # The prose chosen is the sentence that introduces the table: the table says more.
            or (chosen and all(r.text in table.lead for r in chosen))
        ):
            return table.text
        said = max((r.relevance for r in chosen), default=0.0)
        if chosen and (not ranking.topic or said >= MIN_QUOTE_RELEVANCE):
            return _compose(chosen)
        # Nothing says enough of what is asked: point at the passages rather than quote a
        # sentence that merely shares a word with the question ("Assess use case" for marks).
        return _nothing_quotable(sources)

    def _from_selection(self, question: str, ranking: Ranking) -> str:
        sentences = ranking.candidates
        if not sentences:
            return SELECTION_NOTHING_QUOTABLE
        if not ranking.topic:
            if len(sentences) == 1:
                return SELECTION_ONE_SENTENCE
            limit = min(MAX_EXPLAIN_SENTENCES, len(sentences) - 1)
            return _compose(central_sentences(ranking, limit), book_order=True)
        if not ranking.answers_question():
            return _not_in_selection(question, ranking.missing_terms())
        limit = min(MAX_SELECTION_SENTENCES, max(1, len(sentences) - 1))
        return _compose(ranking.choose(limit, repeat_factor=1.0), book_order=True)

    async def _similarities(self, question: str, texts: list[str]) -> dict[str, float] | None:
        """Each text's cosine similarity to the question, or None when there is no embedder or
        it fails or is late (one bounded call for the question, one for the texts)."""
        if self.embedder is None or not texts:
            return None
        try:
            async with asyncio.timeout(self.embed_timeout):
                query = await self.embedder.embed_query(question)
                vectors = await self.embedder.embed_documents(texts)
        except Exception as exc:  # any failure or delay of the embedder: words alone answer
            logger.warning("extractive.dense_skipped", reason=type(exc).__name__)
            return None
        return dict(zip(texts, cosines(query, vectors), strict=True))

    async def complete(self, prompt: ChatPrompt) -> Completion:
        text = await self.answer_async(prompt.question, prompt.sources)
        return Completion(text=text, model=self.model, usage=Usage())

    async def stream(self, prompt: ChatPrompt) -> AsyncGenerator[str | Finish | Usage]:
        text = await self.answer_async(prompt.question, prompt.sources)
        for piece in re.findall(r"^\s+|\S+\s*", text):
            yield piece
        yield Finish(FINISHED)

    async def aclose(self) -> None:
        return None  # the embedder belongs to the providers, which close it


def quoted_passages(answer: str) -> list[tuple[str, int]]:
    """The quotes of an extractive answer with the source number each is marked with: prose
    sentences as they appear, code blocks as their code, tables row by row. Each is a substring of
    `quotable.plain_text` of its source's text. The answerer's own words (no sources, nothing
    quotable, a selection that does not answer, and the note after a piece of a split code
    block, which follows the last marker) quote nothing."""
    if answer.startswith(_OWN_WORDS):
        return []
    quotes: list[tuple[str, int]] = []
    start = 0
    for found in _FENCE_OR_MARKER.finditer(answer):
        if found.group("number") is None:
            continue  # a `[0]` inside a code block is code, not a marker
        quote = answer[start : found.start()].strip()
        number = int(found.group("number"))
        if quote.startswith(("```", "~~~")):
            quote = "\n".join(quote.splitlines()[1:-1])
        elif quote.startswith("- "):  # a list after its lead-in: each item is a line of its source
            quotes.extend((line.strip()[2:], number) for line in quote.splitlines() if line.strip())
            start = found.end()
            continue
        elif quote.startswith("|"):  # a table: each row is a line of its source
            quotes.extend((row, number) for row in table_lines(quote))
            start = found.end()
            continue
        quotes.append((quote, number))
        start = found.end()
    return quotes


def _code_says_more(code: CodeAnswer, chosen: Sequence[Ranked], ranking: Ranking) -> bool:
    """Whether a code block answers better than the sentences chosen. "How does X...?",
    "Which calls does main() make?": when it covers much more of the question than the best
    sentence does. Other questions prefer prose (`_covers_more`)."""
    if code.named or _ASKS_HOW.match(ranking.question):
        said = max((r.relevance for r in chosen), default=0.0)
        return code.cover + CODE_MARGIN * code.named >= said + CODE_MARGIN
    return _covers_more(code.cover, code.source, chosen, ranking)


def _covers_more(cover: float, source: int, chosen: Sequence[Ranked], ranking: Ranking) -> bool:
    """Whether a code block or a table of source `source` that covers `cover` of the question
    answers better than the sentences chosen ("Which plugin publishes...?", "How do the Go2 and
    G1 compare?"): it covers much more than all of them together (a section that is all code or
    a table has no sentence, and the prose then comes from worse sources), or, from a better
    source than every sentence chosen, as much (a best-practices line that restates the
    question, "Use appropriate timesteps: Balance accuracy and speed", against the section that
    gives the numbers) unless a "what is" question asks for words, not code. Never for a "why"
    question, never over a definition of what is asked."""
    if _ASKS_WHY.match(ranking.question) or any(ranking.defines_topic(r.text) for r in chosen):
        return False
    said = ranking.cover(frozenset().union(*(r.terms for r in chosen)))
    better_source = not ranking.asked and all(source < r.source.index for r in chosen)
    return cover >= said + (0.0 if better_source else CODE_MARGIN)


def _compose(chosen: Sequence[Ranked], *, book_order: bool = False) -> str:
    """Each sentence followed by its marker, most relevant first (or in the text's order); a
    lead-in quoted with its list is followed by the list, and the marker again, apart from the
    sentences around it."""
    ordered = sorted(chosen, key=lambda r: r.position) if book_order else chosen
    text, after_list = "", False
    for ranked in ordered:
        marker = f"[{ranked.source.index}]"
        items = ranked.sentence.items
        if text:
            text += "\n\n" if items or after_list else " "
        text += f"{ranked.text} {marker}"
        if items:
            listed = "\n".join(f"- {item}" for item in items)
            text += f"\n\n{listed}\n\n{marker}"
        after_list = bool(items)
    return text


def _nothing_quotable(sources: Sequence[Source]) -> str:
    best = sorted(sources, key=lambda s: s.index)[:POINTED_SOURCES]
    return NOTHING_QUOTABLE_ANSWER + " " + " ".join(f"[{s.index}]" for s in best)


def _not_in_selection(question: str, missing: set[str]) -> str:
    shown: list[str] = []
    for word in _WORD.findall(question):  # as the reader wrote them
        stems = content_terms(word)
        if stems and stems[0] in missing - _QUANTITY and word.lower() not in map(str.lower, shown):
            shown.append(word)
    named = " or ".join(f"“{w}”" for w in shown[:3])
    mention = f": it does not mention {named}" if named else ""
    return (
        f"{SELECTION_NOT_ANSWERING}{mention}. Ask again without a selection to search the whole "
        "book."
    )


__all__ = [
    "NO_CONTEXT_ANSWER",
    "ExtractiveChatModel",
    "quoted_passages",
    "topic_terms",
]
