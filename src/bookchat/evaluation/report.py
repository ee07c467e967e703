"""The totals of an evaluation run, as a table for people and as JSON for tools."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from bookchat.evaluation.answers import AnswerResult
from bookchat.evaluation.questions import Category
from bookchat.evaluation.ranking import Scores

# How many unexpected outcomes the table lists; the JSON has them all.
LISTED_PROBLEMS = 25


@dataclass(frozen=True, slots=True)
class Tally:
    """`count` of `of` answers."""

    count: int
    of: int

    @property
    def rate(self) -> float | None:
        return self.count / self.of if self.of else None

    def json(self) -> dict[str, Any]:
        return {"count": self.count, "of": self.of, "rate": self.rate}


@dataclass(frozen=True, slots=True)
class AnswerScores:
    """What readers got, over every question of the set (see the README for definitions)."""

    questions: int
    refusal_precision: float | None
    refusal_recall: float | None
    answerable_refused: Tally
    follow_ups_refused: Tally
    off_topic_refused: Tally
    topic_switches_refused: Tally
    selections_declined: Tally
    selections_refused: Tally
    citations_valid: Tally
    citation_gaps: Tally
    uncited: Tally
    quoting_nothing: Tally
    selections_isolated: Tally
    expected_page_cited: Tally
    expected_section_cited: Tally
    latency_p50_ms: float | None
    latency_p95_ms: float | None

    def json(self) -> dict[str, Any]:
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return {name: v.json() if isinstance(v, Tally) else v for name, v in values.items()}


def _tally(
    results: Sequence[AnswerResult], counted: Callable[[AnswerResult], bool], *of: Category
) -> Tally:
    among = [r for r in results if r.category in of] if of else list(results)
    return Tally(sum(counted(r) for r in among), len(among))


def percentile(values: Sequence[int], fraction: float) -> float | None:
    """The nearest-rank percentile (the median for 0.5 takes the mean of the middle two)."""
    if not values:
        return None
    ordered = sorted(values)
    if fraction == 0.5:
        middle = len(ordered) // 2
        return float(
            ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        )
    return float(ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)])


def score_answers(results: Sequence[AnswerResult]) -> AnswerScores:
    refused = [r for r in results if r.refused]
    to_refuse = [r for r in results if r.must_refuse]
    right = sum(r.must_refuse for r in refused)
    # Answers that came from sources, or that show a citation although none was given.
    checked = [r for r in results if r.mode != "no_context" or r.citation_problems or r.shown]
    answered = [r for r in results if not r.refused and r.mode != "no_context"]
    latencies = [r.latency_ms for r in results]
    return AnswerScores(
        questions=len(results),
        refusal_precision=right / len(refused) if refused else None,
        refusal_recall=right / len(to_refuse) if to_refuse else None,
        answerable_refused=_tally(results, lambda r: r.refused, "answerable", "follow_up"),
        follow_ups_refused=_tally(results, lambda r: r.refused, "follow_up"),
        off_topic_refused=_tally(results, lambda r: r.refused, "off_topic", "topic_switch"),
        topic_switches_refused=_tally(results, lambda r: r.refused, "topic_switch"),
        selections_declined=_tally(results, lambda r: r.refused, "selection_answers"),
        selections_refused=_tally(results, lambda r: r.refused, "selection_refuses"),
        citations_valid=_tally(checked, lambda r: not r.citation_problems),
        citation_gaps=_tally(checked, lambda r: r.gap is not None),
        uncited=_tally(answered, lambda r: not r.shown),
        quoting_nothing=_tally(
            [r for r in answered if r.quotes is not None],
            lambda r: not r.quotes,
            "answerable",
            "follow_up",
        ),
        selections_isolated=_tally(
            results, lambda r: not r.isolation_problems, "selection_answers", "selection_refuses"
        ),
        expected_page_cited=_tally(
            [r for r in results if r.expected_page_cited is not None],
            lambda r: bool(r.expected_page_cited),
        ),
        expected_section_cited=_tally(
            [r for r in results if r.expected_section_cited is not None],
            lambda r: bool(r.expected_section_cited),
        ),
        latency_p50_ms=percentile(latencies, 0.5),
        latency_p95_ms=percentile(latencies, 0.95),
    )


@dataclass(frozen=True, slots=True)
class Setup:
    """What was measured: the book as ingested and the parts the settings chose."""

    questions_file: str
    docs: str
    documents: int
    chunks: int
    ingest_seconds: float
    questions: int
    retrieval: str
    embedder: str | None
    model: str
    k: int


@dataclass(frozen=True, slots=True)
class Evaluation:
    setup: Setup
    retrieval: list[Scores]
    answers: AnswerScores
    results: list[AnswerResult]

    def json(self) -> dict[str, Any]:
        return {
            "setup": asdict(self.setup),
            "retrieval": [asdict(scores) for scores in self.retrieval],
            "answers": self.answers.json(),
            "questions": [asdict(result) for result in self.results],
        }


def _rate(tally: Tally) -> str:
    rate = tally.rate
    share = f"{tally.count}/{tally.of}"
    return f"{share:>9}  {rate:6.1%}" if rate is not None else f"{share:>9}       -"


def _ratio(value: float | None) -> str:
    return f"{value:9.3f}" if value is not None else f"{'-':>9}"


def problems(result: AnswerResult) -> list[tuple[int, str]]:
    """What went differently from what the question file expects, in words, each with its
    rank in the table: what misleads a reader first, then refusals, pages and numbering."""
    found = [(0, problem) for problem in (*result.citation_problems, *result.isolation_problems)]
    if result.must_refuse and not result.refused:
        found.append((1, f"answered ({result.mode}), should refuse"))
    if not result.must_refuse and result.refused:
        found.append((2, f"refused ({result.mode}), should answer"))
    if result.expected_page_cited is False:
        found.append((3, "cites no expected page"))
    if result.gap:
        found.append((4, result.gap))
    return found


def _by_kind(retrieval: Sequence[Scores], k: int) -> list[str]:
    """hit@1 / hit@k per kind of question and mode; nothing when the questions have no kinds."""
    if not retrieval or all(kind.kind == "" for kind in retrieval[0].kinds):
        return []
    lines = [
        f"  by kind, hit@1 / hit@{k}",
        f"  {'kind':14} {'questions':>9}" + "".join(f"   {s.mode:>13}" for s in retrieval),
    ]
    per_mode = [{kind.kind: kind for kind in s.kinds} for s in retrieval]
    for kind in retrieval[0].kinds:
        cells = "".join(
            f"   {scores[kind.kind].hit_at_1:.3f} / {scores[kind.kind].hit_at_k:.3f}"
            for scores in per_mode
        )
        lines.append(f"  {kind.kind or '(no kind)':14} {kind.questions:>9}{cells}")
    return lines


def render(evaluation: Evaluation) -> list[str]:
    """The table `bookchat eval` prints."""
    setup, a = evaluation.setup, evaluation.answers
    ranked = evaluation.retrieval[0].questions if evaluation.retrieval else 0
    lines = [
        f"{setup.questions_file} on {setup.docs}",
        f"Ingested {setup.documents} documents, {setup.chunks} chunks in "
        f"{setup.ingest_seconds:.2f} s; {setup.questions} questions; retrieval {setup.retrieval}"
        f" (embedder: {setup.embedder or 'none'}); model {setup.model}",
        "",
        f"Retrieval: {ranked} first questions with expected pages, top {setup.k}",
        f"  {'mode':8} {'hit@1':>7} {'hit@' + str(setup.k):>7} {'MRR':>7}",
    ]
    lines += [
        f"  {s.mode:8} {s.hit_at_1:7.3f} {s.hit_at_k:7.3f} {s.mrr:7.3f}"
        for s in evaluation.retrieval
    ]
    lines += _by_kind(evaluation.retrieval, setup.k)
    p50, p95 = a.latency_p50_ms, a.latency_p95_ms
    latency = f"{p50:.0f} / {p95:.0f} ms" if p50 is not None and p95 is not None else "-"
    lines += [
        "",
        f"Answers: {a.questions} questions through the chat path",
        f"  refusal precision        {_ratio(a.refusal_precision)}   refusals that were expected",
        f"  refusal recall           {_ratio(a.refusal_recall)}   expected refusals given",
        f"  answerable refused       {_rate(a.answerable_refused)}   follow-ups "
        f"{a.follow_ups_refused.count}/{a.follow_ups_refused.of}",
        f"  off-topic refused        {_rate(a.off_topic_refused)}   topic switches "
        f"{a.topic_switches_refused.count}/{a.topic_switches_refused.of}",
        f"  selection says no        {_rate(a.selections_refused)}   when it does not answer",
        f"  selection declined       {_rate(a.selections_declined)}   when it does answer",
        f"  citations valid          {_rate(a.citations_valid)}   answers from sources",
        f"  citation number gaps     {_rate(a.citation_gaps)}   answers showing [2] without [1]",
        f"  uncited answers          {_rate(a.uncited)}",
        f"  answers quoting nothing  {_rate(a.quoting_nothing)}   offline: passages pointed at",
        f"  selection isolated       {_rate(a.selections_isolated)}",
        f"  expected page cited      {_rate(a.expected_page_cited)}   answerable, answered",
        f"  expected heading cited   {_rate(a.expected_section_cited)}   the link lands on it",
        f"  latency p50 / p95        {latency:>16}   server time",
    ]
    ranked_problems = [(rank, r.id, p) for r in evaluation.results for rank, p in problems(r)]
    listed = [(qid, what) for _, qid, what in sorted(ranked_problems, key=lambda p: p[0])]
    if listed:
        lines += ["", "Not as expected:"]
        lines += [f"  {qid}: {what}" for qid, what in listed[:LISTED_PROBLEMS]]
        if len(listed) > LISTED_PROBLEMS:
            lines.append(f"  ... and {len(listed) - LISTED_PROBLEMS} more (see --output)")
    return lines


_REQUIREMENT = re.compile(r"^\s*([a-z_0-9]+)\s*(>=|<=)\s*([0-9.]+)\s*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    """`name>=value` or `name<=value` on one number of the run (a rate for the tallies)."""

    metric: str
    at_least: bool
    value: float

    @classmethod
    def parse(cls, text: str) -> Requirement:
        match = _REQUIREMENT.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not METRIC>=NUMBER or METRIC<=NUMBER")
        name, operator, value = match.groups()
        if name not in metric_names():
            raise ValueError(f"unknown metric {name!r}; one of: {', '.join(metric_names())}")
        return cls(name, operator == ">=", float(value))

    def __str__(self) -> str:
        return f"{self.metric}{'>=' if self.at_least else '<='}{self.value:g}"


def metric_names() -> list[str]:
    answers = [f.name for f in fields(AnswerScores) if f.name != "questions"]
    return ["hit_at_1", "hit_at_k", "mrr", *answers]


def metric(evaluation: Evaluation, name: str) -> float | None:
    """One number of the run: retrieval figures are those of the mode the chat path uses."""
    if name in ("hit_at_1", "hit_at_k", "mrr"):
        used = [s for s in evaluation.retrieval if s.mode == evaluation.setup.retrieval]
        return float(getattr(used[0], name)) if used else None
    value = getattr(evaluation.answers, name)
    return value.rate if isinstance(value, Tally) else value


def unmet(evaluation: Evaluation, requirements: Sequence[Requirement]) -> list[str]:
    """The requirements the run does not meet, in words (a number not measured fails)."""
    failed = []
    for requirement in requirements:
        value = metric(evaluation, requirement.metric)
        if value is None:
            failed.append(f"{requirement}: not measured by this question set")
        elif (value < requirement.value) if requirement.at_least else (value > requirement.value):
            failed.append(f"{requirement}: measured {value:.3f}")
    return failed
