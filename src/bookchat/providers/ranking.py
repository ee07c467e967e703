"""Ranking the quotable sentences of a question's sources, for the offline answerer.

A sentence's relevance is the share of the question's topic words it holds, each word weighted
by how rare it is among the candidate sentences (an IDF), the words stemmed as BM25 stems them
(`terms.content_terms`); with dense similarities, their spread among the candidates counts too.
Its score adds what makes a sentence a good answer rather than a mere match: it defines what
is asked ("X is a ...", "X refers to", "X: ..."), it opens its section, its heading is about the
question, its source ranks higher. The numbers were tuned by reading the answers to the
questions of benchmarks/questions/textbook-a.jsonl; the tests pin what a reader sees, not them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bookchat.providers.base import Source
from bookchat.providers.quotable import CodeBlock, Sentence, Table, code_lines, read_passage
from bookchat.providers.terms import content_terms

# Words that ask for a kind of answer rather than name a topic ("explain", "summarise"...).
_GENERIC = frozenset(
    content_terms(
        "explain explanation summarise summarize summary mean meaning simple simply simpler "
        "terms describe description clarify elaborate passage text selection selected "
        "paragraph section sentence chapter book page tell say talk word understand help "
        "gist tldr eli5 rephrase paraphrase overview briefly plain english again please more "
        "detail detailed"
    )
    # Verbs and nouns too common to say what a question is about; "how many", "how much" ask
    # for a quantity.
    + content_terms("use make get need want way thing happen many much")
    # Prepositions the BM25 list keeps (it has "of", "with", "about", but not these).
    + content_terms("for from")
)
# Phrases that ask for a kind of answer, whose words alone may name a topic ("main()").
_ASKING = re.compile(
    r"\b(?:(?:the\s+)?(?:main|key|central)\s+(?:ideas?|points?|takeaways?|message)|"
    r"break\s+(?:it|this|that)?\s*down|stands?\s+for)\b",
    re.IGNORECASE,
)
# Names from code in a question: snake_case, CamelCase, a call, a dotted name.
_IDENTIFIER = re.compile(
    r"\b\w+_\w+\b|\b\w*(?:[a-z][A-Z]|[A-Z]{2,}[a-z]{2})\w*\b|\b\w+(?=\(\))|"
    r"\b[a-z_]\w*\.[a-z_]\w*\b"
)
# An acronym in a sentence ("DOF", "IMUs"), and the little words an acronym may skip or keep
# ("degrees of freedom" is DOF, "simultaneous localization and mapping" SLAM).
_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9]*[A-Z](?=s?\b)")
_ACRONYM_JOINS = frozenset({"of", "and", "the", "for", "to", "in", "on", "a", "an"})
_SPELT_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
# Where an identifier's words meet: "configure|PBR|Material", "Set|Float", "v2|Node".
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
# "What is X...", "Define X": X runs to the question mark or to a second question ("What is
# Xacro and why use it?").
_DEFINITIONAL_QUESTION = re.compile(
    r"^\s*(?:what(?:'s|\s+is|\s+are|\s+does)|define|definition\s+of|meaning\s+of|who\s+is)\b"
    r"(?P<subject>.*?)(?:\s+mean)?(?:,?\s+(?:and\s+)?(?:why|how|what|which|where|when|who|does|"
    r"do|is|are|can|should)\b|\?|$)",
    re.IGNORECASE,
)
# "X is a ...", "X refers to ...": X starts the sentence (not "In a system, X is ...") and "is"
# goes on as definitions do ("VLA models are impressive" defines nothing).
_DEFINITION = re.compile(
    r"^(?!(?:in|on|at|for|with|by|when|if|because|although|as|after|before|during|since|so|"
    r"but|and|or|then|here|there|this|that|it|these|those|they|we|you|its|their)\b)"
    r"(?:(?:an?|the)\s+)?(?P<subject>[^.;:!?]{1,80}?)\s+(?:(?:is|are)\s+(?:an?|the|one|not|"
    r"called|defined|known|used|simply|essentially|basically|usually|typically)|refers?\s+to|"
    r"means|denotes|stands\s+for|provides?|enables?|allows?|represents?|describes?|defines?|"
    r"extends?|consists?\s+of|(?:acts?|serves?)\s+as)\s",
    re.IGNORECASE,
)
# What a subject is about stops at a preposition: "Built-in support for DDS Security enables..."
# defines support, not DDS ("Quality of Service (QoS)" keeps its "of").
_SUBJECT_END = re.compile(r"\s(?:for|in|on|with|from|by|between|to|at|about|via|under)\s", re.I)
# "Term: what it is" (glossaries, spec lists); "Term - what it is" (best-practice lists) only
# counts for what a "what is" question asks.
_TERM_COLON = re.compile(r"^(?P<subject>[^:]{1,40}):\s+\S")
_TERM_DASH = re.compile(r"^(?P<subject>[^:]{1,40}?)\s[-\u2013\u2014]\s+\S")
# Sentences about the text rather than its subject ("This chapter covers...").
_ABOUT_THE_TEXT = re.compile(
    r"^(?:in\s+)?(?:this|the\s+following|the\s+next)\s+(?:chapter|section|module|guide|"
    r"tutorial|page|lesson|part)\b|^(?:we|you)\s+will\b|^(?:learn|let's)\b",
    re.IGNORECASE,
)
_CALLED = re.compile(r"\b(?:called|known as|named)\s+(?P<subject>\S+(?:\s+\S+)?)", re.IGNORECASE)

RELEVANCE_RATIO = 0.5  # a sentence joins the answer with at least this share of the best's
SCORE_RATIO = 0.4  # and, whatever else it has, this share of the best's score
REPEAT_FACTOR = 0.55  # each sentence already taken from a source lowers its others this much
REDUNDANT = 0.6  # share of words in common beyond which a sentence repeats a chosen one
NEW_PART = 0.2  # share of the question a sentence must answer that no chosen one does
DENSE_WEIGHT = 0.4
# A sentence under a heading that holds this share of the question is worth this share of the
# heading's cover, whatever words it has itself.
HEADING_COVER = 0.5
HEADING_SHARE = 0.5
# Said after a piece of a split code block, the answer's last words (they quote nothing).
CODE_PART_NOTE = "(Part {number} of {total} of this code block: its page has all of it.)"
MAX_CODE_LINES = 80  # longer blocks are a file to read, not an answer
CODE_SOURCES = 2  # code blocks come from the best sources only
MIN_CODE_COVER = 0.45  # and of a table
MAX_TABLE_ROWS = 15


def topic_terms(question: str) -> frozenset[str]:
    """The question's stemmed words that name what it is about."""
    return frozenset(content_terms(_ASKING.sub(" ", question))) - _GENERIC


@dataclass(frozen=True, slots=True)
class Ranked:
    """A candidate sentence with what the ranking found about it."""

    source: Source
    sentence: Sentence
    terms: frozenset[str]
    lexical: float = 0.0  # its share of the question, or of its heading's (HEADING_COVER)
    dense: float | None = None
    relevance: float = 0.0
    score: float = 0.0

    @property
    def text(self) -> str:
        return self.sentence.text

    @property
    def position(self) -> int:
        return self.sentence.position


class Ranking:
    """The quotable sentences of `sources` ranked against `question`, best first
    (`candidates`), and the sources' whole code blocks (`code`)."""

    def __init__(
        self, question: str, sources: Sequence[Source], *, dense_floor: float = 0.6
    ) -> None:
        self.question = question
        self.sources = sorted(sources, key=lambda s: s.index)
        self.similarities: dict[str, float] | None = None
        self.dense_floor = dense_floor
        self.topic = topic_terms(question)
        self.asked = _asked_to_define(question)
        self._spelt_out = _spelt_out(question)
        self.code: list[tuple[Source, CodeBlock]] = []
        self.tables: list[tuple[Source, Table]] = []
        # The lead-ins that introduce a list, with their sources.
        self.lists: list[tuple[Source, Sentence]] = []
        seen: set[str] = set()
        found: list[Ranked] = []
        for source in self.sources:
            passage = read_passage(source.text, source.section)
            self.code.extend((source, block) for block in passage.code_blocks)
            self.tables.extend((source, table) for table in passage.tables)
            for sentence in passage.sentences:
                if sentence.items:
                    self.lists.append((source, sentence))
                key = " ".join((sentence.text, *sentence.items)).lower()
                # A lead-in says nothing on its own. With the list it introduces, it is quoted
                # when it defines what is asked ("A URDF file is an XML document that
                # defines:") or when the question names what the list is about and its items.
                listed = bool(sentence.items) and (
                    self.defines_topic(sentence.text)
                    or self._asks_for_list(sentence)
                    or self._names_label(sentence)
                )
                if (sentence.lead_in and not listed) or key in seen:
                    continue  # overlapping chunks repeat sentences
                seen.add(key)
                text = " ".join((sentence.text, *sentence.items))
                terms = frozenset(content_terms(text)).union(
                    *(self._spelt_out.get(a.lower(), ()) for a in _ACRONYM.findall(text))
                )
                found.append(Ranked(source, sentence, terms))
        frequency: Counter[str] = Counter(t for r in found for t in r.terms)
        total = max(len(found), 1)
        self._idf = {t: math.log(1 + total / frequency[t]) for t in frequency}
        self._unseen = math.log(1 + total)  # a word no sentence has weighs as the rarest
        self.candidates = self._ranked(found)

    def rescore(self, similarities: dict[str, float]) -> None:
        """Rank again with each sentence's dense similarity to the question (by its text)."""
        self.similarities = similarities
        self.candidates = self._ranked(self.candidates)

    def _ranked(self, candidates: list[Ranked]) -> list[Ranked]:
        return sorted(
            (self._scored(r) for r in candidates),
            key=lambda r: (-r.score, r.source.index, r.position),
        )

    def texts(self) -> list[str]:
        """The candidates' texts, best sources first (what an embedder should see)."""
        return [r.text for r in sorted(self.candidates, key=lambda r: (r.source.index, r.position))]

    def cover(self, terms: frozenset[str]) -> float:
        """The share of the question's topic (weighted by rarity) that `terms` hold."""
        whole = sum(self._idf.get(t, self._unseen) for t in self.topic)
        if not whole:
            return 0.0
        return sum(self._idf.get(t, self._unseen) for t in self.topic & terms) / whole

    def _scored(self, ranked: Ranked) -> Ranked:
        sentence, source = ranked.sentence, ranked.source
        own = self.cover(ranked.terms)
        heading = self.cover(frozenset(content_terms(f"{sentence.headings} {source.title}")))
        dense = self.similarities.get(sentence.text) if self.similarities else None
        lexical = own
        if heading >= HEADING_COVER:
            # Under a heading that names what is asked ("Test Scenarios" for "Which test
            # scenarios...?"), the section's sentences answer even without the question's words.
            lexical = max(own, HEADING_SHARE * heading)
        relevance = lexical
        if self.similarities:
            relevance = (1 - DENSE_WEIGHT) * lexical + DENSE_WEIGHT * self._dense_spread(dense)
        score = relevance + 0.15 * heading * (own > 0 or sentence.section_start)
        score += self._definition_bonus(sentence.text)
        score += 0.08 * sentence.section_start - 0.01 * min(sentence.position, 10)
        score -= 0.2 * bool(_ABOUT_THE_TEXT.match(sentence.text))
        length = len(sentence.text.split())
        short = length + sum(len(item.split()) for item in sentence.items) < 6  # a list is its body
        score -= 0.1 * (short and not _TERM_COLON.match(sentence.text)) + 0.1 * (length > 45)
        score /= 1 + 0.12 * (source.index - 1)
        return Ranked(source, sentence, ranked.terms, lexical, dense, relevance, score)

    def _dense_spread(self, dense: float | None) -> float:
        """Where a similarity sits between the candidates' lowest and highest (0..1): the
        scale of cosines differs from model to model, their order does not."""
        values = list(self.similarities.values()) if self.similarities else []
        if dense is None or not values or max(values) - min(values) < 0.05:
            return 0.0
        return (dense - min(values)) / (max(values) - min(values))

    def _definition_bonus(self, text: str) -> float:
        if self.defines_topic(text):
            return 0.3
        subjects = _defined(text)
        if any(terms & self.topic for terms in subjects):
            return 0.15
        return 0.03 if subjects else 0.0

    def defines_topic(self, text: str) -> bool:
        """Whether the sentence defines what a "what is" question asks about. A best-practice
        item ("Organize with Xacro - ...") must name at least half of it."""
        if self.states_definition(text):
            return True
        dashed = _TERM_DASH.match(text)
        named = frozenset(content_terms(dashed.group("subject"))) if dashed else frozenset()
        return bool(self.asked) and 2 * len(named & self.asked) >= len(self.asked)

    def states_definition(self, text: str) -> bool:
        """Whether the sentence says what the asked topic is ("X is a...", "X: ..."), rather
        than naming it in a best-practice item."""
        return any(terms & self.asked for terms in _defined(text))

    def has_signal(self, ranked: Ranked) -> bool:
        """Whether the sentence shares a topic word with the question, sits under a heading
        that names it or, by meaning, is close."""
        close = ranked.dense is not None and ranked.dense >= self.dense_floor
        return ranked.lexical > 0 or close

    def choose(self, limit: int, *, repeat_factor: float = REPEAT_FACTOR) -> list[Ranked]:
        """Up to `limit` sentences that answer, best first.

        After the best one, a sentence joins when it is nearly as good (`RELEVANCE_RATIO` of the
        best's relevance and score), when it answers a part of the question no chosen sentence
        does, or when it defines what a "what is" question asks about. Each sentence taken
        from a source multiplies its others' scores by `repeat_factor`, so a second one joins
        only when its source dominates."""
        pool = [r for r in self.candidates if self.has_signal(r)]
        if not pool:
            return []
        top_relevance = max(r.relevance for r in pool)
        top_score = max(r.score for r in pool)
        chosen: list[Ranked] = []
        covered: frozenset[str] = frozenset()
        taken: Counter[int] = Counter()
        while pool and len(chosen) < limit:
            best = max(pool, key=lambda r: r.score * repeat_factor ** taken[r.source.index])
            pool.remove(best)
            near = best.relevance >= RELEVANCE_RATIO * top_relevance
            # Another part of the question from where an answer was found (the next item of a
            # spec list, say); other sources and sections must be relevant on their own.
            new = self.cover(best.terms - covered)
            beside = any(
                c.source.index == best.source.index and c.sentence.section == best.sentence.section
                for c in chosen
            )
            adds = (beside and new > 0) or (taken[best.source.index] > 0 and new >= NEW_PART)
            good = best.score >= SCORE_RATIO * top_score
            if chosen and not (good and (near or adds or self.defines_topic(best.text))):
                continue
            if any(_overlap(best.terms, c.terms) >= REDUNDANT for c in chosen):
                continue
            if any(_lists(c, best) for c in chosen):
                continue  # an item of a list already quoted with its lead-in
            chosen = [c for c in chosen if not _lists(best, c)]
            chosen.append(best)
            covered |= best.terms
            taken[best.source.index] += 1
        chosen = self._with_whole_lists(chosen)
        # "What is X and ...?": the definition of X first, whatever else answers more; one that
        # says what X is before an item that names it.
        return sorted(
            chosen,
            key=lambda r: (not self.states_definition(r.text), not self.defines_topic(r.text)),
        )

    def _asks_for_list(self, lead: Sentence) -> bool:
        """Whether the question asks about what a list is about and names two or more of its
        items besides ("What are the reliability, durability and history QoS policies?" and "QoS
        policies determine how messages are delivered:" with Reliability, Durability, History)."""
        about = self.topic & frozenset(content_terms(lead.text))
        if not about:
            return False
        asked = self.topic - about  # what the items must name, beyond what the list is about
        named = (bool(asked & frozenset(content_terms(item))) for item in lead.items)
        return sum(named) >= 2

    def _names_label(self, lead: Sentence) -> bool:
        """Whether the lead-in is an item's label over its nested list ("Sensors:" in a spec
        sheet) and the question names what it labels ("What sensors does it carry?")."""
        label = frozenset(content_terms(lead.text))
        return lead.item and bool(label) and label <= self.topic

    def _with_whole_lists(self, chosen: list[Ranked]) -> list[Ranked]:
        """Two or more items of a list that has a lead-in are quoted as the whole list after
        it, where the first of them was: the reader sees every item ("This capstone project
        integrates all course modules:" and the four), not the few that fit."""
        result: list[Ranked] = []
        for ranked in chosen:
            lead = self._list_of(ranked)
            if lead is None or sum(self._list_of(c) is lead for c in chosen) < 2:
                result.append(ranked)
            elif not any(r.sentence is lead[1] for r in result):
                sentence = lead[1]
                terms = frozenset(content_terms(" ".join((sentence.text, *sentence.items))))
                result.append(replace(ranked, sentence=sentence, terms=terms))
        return result

    def _list_of(self, ranked: Ranked) -> tuple[Source, Sentence] | None:
        """The lead-in (and its source) of the list `ranked` is an item of, if it has one."""
        if not ranked.sentence.item:
            return None
        for lead in self.lists:
            source, sentence = lead
            if source.index == ranked.source.index and any(
                ranked.text in item for item in sentence.items
            ):
                return lead
        return None

    def opening(self, limit: int) -> list[Ranked]:
        """The first sentences of the best source that has any."""
        if not self.candidates:
            return []
        first = min(r.source.index for r in self.candidates)
        ordered = sorted(
            (r for r in self.candidates if r.source.index == first), key=lambda r: r.position
        )
        return ordered[:limit]

    def answers_question(self) -> bool:
        """Whether the sources hold at least half of the question's topic, or by meaning a
        sentence close to it."""
        held = frozenset().union(*(r.terms for r in self.candidates)) if self.candidates else None
        if held is not None and self.cover(held) >= 0.5:
            return True
        return any(r.dense is not None and r.dense >= self.dense_floor for r in self.candidates)

    def missing_terms(self) -> set[str]:
        held = frozenset().union(*(r.terms for r in self.candidates))
        return set(self.topic - held)


def _spelt_out(question: str) -> dict[str, frozenset[str]]:
    """The acronyms the question's words spell ("dof" for "degrees of freedom", with or
    without the initials of its little words), each with the topic words it stands for: a
    sentence that says "DOF: 12" answers a question about degrees of freedom."""
    words = _SPELT_WORD.findall(question)
    spelt: dict[str, frozenset[str]] = {}
    for start, first in enumerate(words):
        for end in range(start + 2, min(start + 5, len(words)) + 1):
            run = words[start:end]
            if first.lower() in _ACRONYM_JOINS or run[-1].lower() in _ACRONYM_JOINS:
                continue
            stands_for = topic_terms(" ".join(run))
            if len(stands_for) < 2:
                continue
            spelt.setdefault("".join(w[0] for w in run).lower(), stands_for)
            main = "".join(w[0] for w in run if w.lower() not in _ACRONYM_JOINS)
            spelt.setdefault(main.lower(), stands_for)
    return spelt


def _asked_to_define(question: str) -> frozenset[str]:
    """The topic words of what a "what is" question asks to define (none for other questions)."""
    match = _DEFINITIONAL_QUESTION.match(question)
    return topic_terms(match.group("subject")) if match else frozenset()


def _defined(text: str) -> list[frozenset[str]]:
    """The words of what a sentence defines ("X is a...", "X: ...", "... called X")."""
    matches = [_DEFINITION.match(text), _TERM_COLON.match(text), *_CALLED.finditer(text)]
    subjects = [_SUBJECT_END.split(m.group("subject"), 1)[0] for m in matches if m is not None]
    return [frozenset(content_terms(subject)) for subject in subjects]


def _lists(lead: Ranked, other: Ranked) -> bool:
    """Whether `other` is an item of the list `lead` is quoted with."""
    return (
        lead.source.index == other.source.index
        and other is not lead
        and any(other.text in item for item in lead.sentence.items)
    )


def central_sentences(ranking: Ranking, limit: int) -> list[Ranked]:
    """The opening sentence and the ones that share most with the rest of the text."""
    candidates = sorted(ranking.candidates, key=lambda r: r.position)
    if not candidates:
        return []

    def centrality(ranked: Ranked) -> float:
        others = [c for c in candidates if c is not ranked]
        return sum(_overlap(ranked.terms, c.terms) for c in others) / max(len(others), 1)

    rest = sorted(candidates[1:], key=lambda r: (-centrality(r), r.position))
    return [candidates[0], *rest[: limit - 1]]


@dataclass(frozen=True, slots=True)
class CodeAnswer:
    """A whole code block as an answer, and how much of the question it covers."""

    text: str
    cover: float
    named: bool  # the question names something in the code (`main()`, `create_publisher`)
    source: int  # the number of the source it comes from


def best_code_block(ranking: Ranking, *, defining: bool = False) -> CodeAnswer | None:
    """A whole code block of one of the best sources whose code, heading and lead-in cover the
    question, quoted after the sentence that introduces it. With `defining`, only a block whose
    lead-in defines what a "what is" question asks ("Xacro extends URDF with macros...:")."""
    best: tuple[float, Source, CodeBlock, float, bool] | None = None
    indices = sorted({s.index for s in ranking.sources})[:CODE_SOURCES]
    names = [n for n in _IDENTIFIER.findall(ranking.question) if len(n) > 3]
    for source, block in ranking.code:
        if source.index not in indices or not _whole(block):
            continue
        if defining and not any(ranking.states_definition(s.text) for s in block.lead):
            continue
        lead = " ".join(sentence.text for sentence in block.lead)
        about = f"{block.section or ''} {lead} {code_words(block.code)}"
        cover = ranking.cover(frozenset(content_terms(about)))
        # The code the reader names, in the code itself: "LiDAR" in a comment names no code.
        code = "\n".join(code_lines(block.code))
        named = any(name in code for name in names)
        score = (cover + 0.5 * named) / (1 + 0.12 * (source.index - 1))
        if (cover >= MIN_CODE_COVER or named) and (best is None or score > best[0]):
            best = (score, source, block, cover, named)
    if best is None:
        return None
    _, source, block, cover, named = best
    marker = f"[{source.index}]"
    intro = "".join(f"{sentence.text} {marker} " for sentence in block.lead)
    text = (
        f"{intro.rstrip()}\n\n{block.markdown}\n{marker}"
        if intro
        else f"{block.markdown}\n{marker}"
    )
    if block.part is not None:
        number, total = block.part
        text += "\n\n" + CODE_PART_NOTE.format(number=number, total=total)
    return CodeAnswer(text, cover, named, source.index)


@dataclass(frozen=True, slots=True)
class TableAnswer:
    """A table as an answer (its header and the rows that answer), and how much of the
    question the table covers."""

    text: str
    cover: float
    lead: frozenset[str]  # the sentences quoted before the table
    source: int  # the number of the source it comes from


def best_table(ranking: Ranking) -> TableAnswer | None:
    """A table of one of the best sources whose heading, lead-in and cells cover the question,
    quoted after the sentence that introduces it: its header and the rows that name something
    asked ("stability", "stairs"), or every row when none or all do (at most `MAX_TABLE_ROWS`)."""
    best: tuple[float, Source, Table, float] | None = None
    indices = sorted({s.index for s in ranking.sources})[:CODE_SOURCES]
    for source, table in ranking.tables:
        if source.index not in indices:
            continue
        lead = " ".join(sentence.text for sentence in table.lead)
        cells = " ".join(cell for row in (table.header, *table.rows) for cell in row)
        cover = ranking.cover(frozenset(content_terms(f"{table.section or ''} {lead} {cells}")))
        score = cover / (1 + 0.12 * (source.index - 1))
        if cover >= MIN_CODE_COVER and (best is None or score > best[0]):
            best = (score, source, table, cover)
    if best is None:
        return None
    _, source, table, cover = best
    header = frozenset(content_terms(" ".join(table.header)))
    asked = [
        row
        for row in table.rows
        if (frozenset(content_terms(" ".join(row))) - header) & ranking.topic
    ]
    rows = asked if 0 < len(asked) < len(table.rows) else list(table.rows)
    if len(rows) > MAX_TABLE_ROWS:
        return None  # a part of a long table would not show what the rest says
    marker = f"[{source.index}]"
    intro = "".join(f"{sentence.text} {marker} " for sentence in table.lead)
    body = f"{table.markdown(rows)}\n\n{marker}"
    text = f"{intro.rstrip()}\n\n{body}" if intro else body
    return TableAnswer(
        text, cover, frozenset(sentence.text for sentence in table.lead), source.index
    )


def code_words(code: str) -> str:
    """Code with its identifiers also as words: `create_publisher` and `ConfigurePBRMaterial`
    read as "create publisher" and "Configure PBR Material" too."""
    return f"{code} {_CAMEL_HUMP.sub(' ', code.replace('_', ' '))}"


def _whole(block: CodeBlock) -> bool:
    """Whether a block is short enough to answer with and looks complete. The pieces of a
    block the chunker split are marked and never offered (`quotable`); a chunk planned before
    they were (until `bookchat reindex`) may still hold one, which rarely starts at the margin
    with its brackets balanced. (A `[0]` in code is safe: the chat leaves code as written when
    it renumbers citations.)"""
    lines = block.code.splitlines()
    if len(lines) > MAX_CODE_LINES:
        return False
    if block.part is not None:
        return True  # a piece the chunker marked: quoted as the piece it is
    if lines and lines[0][:1] in (" ", "\t"):
        return False
    return all(block.code.count(a) == block.code.count(b) for a, b in ("()", "[]", "{}"))


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0
