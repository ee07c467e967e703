"""Many books in one collection (issue 20): search and chat server time with 20 books of
textbook-a's size against one book.

For each profile, two stores: textbook-a ingested as the book `book-01` alone, and as 20 books
(`book-01`..`book-20`, the same documents: 20x the points in the one Qdrant collection; the
ingestion time is reported). Both are served at once (a server each) and measured side by side
at concurrency 1, as the chat_instant c=1 row measures the chat budget (the client's latency on
loopback is the server time):

- `GET /api/v1/books/{slug}/content/search?q=` and `POST /api/v1/books/{slug}/chat` (instant fake
  LLM) over the answerable questions that reach the model; in round k, question k goes to both
  servers (to book k mod n), each first in turn, so a machine whose speed drifts during the run
  (neighbours, other test runs) weighs on both the same and the ratio stays fair;
- the chat's own `latency_ms` (the server's time for the turn), beside the client's figure;
- each book's first search (it reads that book's BM25 index), outside the measured requests.

Profiles: `hybrid` (the fake's embeddings: dense in Qdrant + BM25 in process, what the rest of
the bench serves) and `bm25` (`EMBEDDINGS_PROVIDER=none`: BM25 only, no dense query). Both on
SQLite and embedded Qdrant, whose payload filter on `book` is evaluated per point in Python.
The ratio reported is the 20-book median over the 1-book median; the budgets are those of the
chat's server time (DESIGN.md section 10: p50 <= 20 ms, p95 <= 50 ms), for both routes.

    uv run --no-sync python benchmarks/bench.py --quick --only books   # this phase alone
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import load, stores
from benchmarks.fake_llm import FakeLLM
from benchmarks.phases import INSTANT_FAKE, Plan, Results, Unavailable, phase, say
from benchmarks.server import BookchatServer
from bookchat.books.schemas import BookCreate
from bookchat.container import open_container
from bookchat.content.loader import load_folder
from bookchat.core.config import Settings
from bookchat.core.migrations import upgrade

BOOKS = 20
PROFILES = {
    "hybrid": "fake embeddings server: dense (embedded Qdrant) + BM25 (in process)",
    "bm25": "EMBEDDINGS_PROVIDER=none: BM25 only (in process)",
}
SEARCH = "/api/v1/books/{slug}/content/search"
CHAT = "/api/v1/books/{slug}/chat"
UNLIMITED = "1000000000/minute"
LOG_TAIL = 4000  # characters of the server's log shown when a request fails


def slug(number: int) -> str:
    return f"book-{number:02d}"


@dataclass(slots=True)
class Timings:
    """One route's requests: client seconds of the 200s, the failures, and for chat the
    server's own `latency_ms` and the answers' modes."""

    seconds: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    modes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    first_failure: str | None = None

    def as_dict(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "requests": len(self.seconds) + sum(self.failures.values()),
            "errors": sum(self.failures.values()),
            "error_kinds": dict(self.failures.most_common(5)),
            "latency_ms": load.summary_ms(self.seconds),
        }
        if self.server_ms:
            summary["server_reported_ms"] = load.summary_ms([ms / 1000 for ms in self.server_ms])
        if self.modes:
            summary["modes"] = dict(self.modes)
        if self.first_failure:
            summary["first_failure"] = self.first_failure
        return summary


async def _request(
    client: httpx.AsyncClient, method: str, url: str, question: str, timings: Timings
) -> dict[str, Any] | None:
    """One search (GET) or chat (POST), timed into `timings`; its JSON body when it is a 200."""
    started = time.perf_counter()
    try:
        if method == "GET":
            reply = await client.get(url, params={"q": question})
        else:
            reply = await client.post(url, json={"message": question})
    except httpx.HTTPError as exc:
        timings.failures[type(exc).__name__] += 1
        timings.first_failure = timings.first_failure or f"{method} {url}: {exc!r}"
        return None
    elapsed = time.perf_counter() - started
    if reply.status_code != 200:
        timings.failures[str(reply.status_code)] += 1
        timings.first_failure = timings.first_failure or (
            f"{method} {url} -> {reply.status_code}: {reply.text[:500]}"
        )
        return None
    timings.seconds.append(elapsed)
    body: dict[str, Any] = reply.json()
    return body


@dataclass(frozen=True, slots=True)
class Target:
    """A server and the books it serves."""

    base: str
    slugs: list[str]


async def _paired(
    method: str, route: str, questions: list[str], targets: list[Target], requests: int
) -> list[Timings]:
    """`requests` rounds, one request at a time: in round k, question k goes to each target
    (to its book k mod n), the targets in turn first, so a machine that slows down or speeds
    up meanwhile (neighbours, other test runs) weighs on each the same."""
    timings = [Timings() for _ in targets]
    async with httpx.AsyncClient(timeout=load.TIMEOUT) as client:
        for k in range(requests):
            question = questions[k % len(questions)]
            order = list(enumerate(targets))
            for number, target in order if k % 2 == 0 else order[::-1]:
                book = target.slugs[k % len(target.slugs)]
                url = target.base + route.format(slug=book)
                body = await _request(client, method, url, question, timings[number])
                if body is not None and method == "POST":
                    timings[number].modes[str(body.get("mode"))] += 1
                    if isinstance(body.get("latency_ms"), int | float):
                        timings[number].server_ms.append(float(body["latency_ms"]))
    return timings


async def _rag_questions(
    base: str, book: str, questions: list[str]
) -> tuple[list[str], Counter[str]]:
    """Every question once to `book` (a warm-up too): those answered by the model (`rag`), so
    every measured chat calls the fake LLM, as in chat_instant."""
    timings = Timings()
    kept: list[str] = []
    async with httpx.AsyncClient(timeout=load.TIMEOUT) as client:
        for question in questions:
            body = await _request(client, "POST", base + CHAT.format(slug=book), question, timings)
            if body is not None and body.get("mode") == "rag":
                kept.append(question)
            timings.modes[str(body.get("mode")) if body is not None else "error"] += 1
    if timings.first_failure:
        say(f"    warm-up failure: {timings.first_failure}")
    return kept, timings.modes


def _settings(store: stores.Store, fake: FakeLLM, profile: str) -> dict[str, str]:
    env = stores.server_settings(store, fake.base_url, None)
    env["RATE_LIMIT_SEARCH"] = UNLIMITED  # one client at c=1 sends far more than 60 a minute
    if profile == "bm25":
        env["EMBEDDINGS_PROVIDER"] = "none"
        del env["EMBEDDINGS_DIMENSIONS"]
    return env


def _in_process(env: dict[str, str]) -> Settings:
    """The server's configuration, for migrating and ingesting in this process."""
    values: dict[str, Any] = {key.lower(): value for key, value in env.items()}
    return Settings(_env_file=None, **values)


async def _add_books(settings: Settings, corpus: Path, slugs: list[str]) -> list[dict[str, Any]]:
    """Create each book and ingest the corpus into it; each book's ingestion report."""
    added = []
    async with open_container(settings) as container:
        for book in slugs:
            base_url = f"{stores.BASE_URL}/{book}"
            async with container.sessionmaker() as db:
                await container.books.create(
                    db,
                    BookCreate.model_validate({"slug": book, "title": book, "base_url": base_url}),
                )
            documents = await asyncio.to_thread(load_folder, corpus, base_url)
            report = await container.ingestor.ingest(documents, book=book)
            if report.failed:
                raise RuntimeError(f"ingesting {book} failed: {report.failed}")
            added.append(
                {
                    "book": book,
                    "documents": len(documents),
                    "chunks": report.chunks,
                    "seconds": report.seconds,
                }
            )
    return added


def _log_tail(server: BookchatServer) -> str:
    try:
        return server.log.read_text(errors="replace")[-LOG_TAIL:]
    except OSError as exc:
        return f"(no log: {exc})"


async def _first_searches(client: httpx.AsyncClient, target: Target, asked: list[str]) -> Timings:
    """Each book's first search (it reads that book's BM25 index), then a first chat."""
    cold, chats = Timings(), Timings()
    for number, book in enumerate(target.slugs):
        question = asked[number % len(asked)]
        await _request(client, "GET", target.base + SEARCH.format(slug=book), question, cold)
        await _request(client, "POST", target.base + CHAT.format(slug=book), question, chats)
    cold.first_failure = cold.first_failure or chats.first_failure
    return cold


async def _measure(
    servers: list[BookchatServer],
    targets: list[Target],
    questions: list[str],
    plan: Plan,
    results: Results,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Warm every book of every server up, then time searches and chats at c=1, paired."""
    rag, modes = await _rag_questions(targets[0].base, targets[0].slugs[0], questions)
    say(f"    warm-up: {len(questions)} answerable questions, modes {dict(modes)}")
    asked = rag or questions
    async with httpx.AsyncClient(timeout=load.TIMEOUT) as client:
        cold = [await _first_searches(client, target, asked) for target in targets]
    # Every question once to every server (the 20-book one has not seen them yet): the query
    # embeddings the servers cache are then there for both alike.
    await _paired("GET", SEARCH, asked, targets, len(asked))
    warmup = Plan.warmup(1)
    searches = await _paired("GET", SEARCH, asked, targets, plan.c1)
    await _paired("POST", CHAT, asked, targets, warmup)
    chats = await _paired("POST", CHAT, asked, targets, plan.c1)
    measured = []
    for server, target, first, search, chat in zip(
        servers, targets, cold, searches, chats, strict=True
    ):
        results["peak_rss_mb"][server.name] = server.peak_rss_mb
        measured.append(
            {
                "books": len(target.slugs),
                "first_search_per_book_ms": load.summary_ms(first.seconds),
                "search": search.as_dict(),
                "chat": chat.as_dict(),
                "peak_rss_mb": server.peak_rss_mb,
            }
        )
        failed = [t.first_failure for t in (first, search, chat) if t.first_failure]
        if failed:
            say(f"    FAILED REQUESTS: {failed[0]}\n    server log tail:\n{_log_tail(server)}")
        if not search.seconds or not chat.seconds:
            raise RuntimeError(f"no successful request to measure: {failed[0] if failed else '?'}")
    questions_used = {"answerable": len(questions), "rag": len(rag), "modes": dict(modes)}
    return measured, questions_used


def _line(label: str, measured: dict[str, Any]) -> str:
    search, chat = measured["search"]["latency_ms"], measured["chat"]["latency_ms"]
    server = measured["chat"].get("server_reported_ms", {})
    return (
        f"    {label}: search p50 {search['p50']:.1f} ms, p95 {search['p95']:.1f} ms; "
        f"chat p50 {chat['p50']:.1f} ms, p95 {chat['p95']:.1f} ms "
        f"(server's latency_ms p50 {server.get('p50', float('nan')):.0f}); "
        f"errors {measured['search']['errors']} + {measured['chat']['errors']}; "
        f"first search per book p50 {measured['first_search_per_book_ms']['p50']:.1f} ms; "
        f"peak RSS {measured['peak_rss_mb']:.0f} MB"
    )


def _ratios(one: dict[str, Any], many: dict[str, Any]) -> dict[str, float | None]:
    ratios: dict[str, float | None] = {}
    for route in ("search", "chat"):
        for key in ("p50", "p95"):
            low, high = one[route]["latency_ms"][key], many[route]["latency_ms"][key]
            ratios[f"{route}_{key}"] = high / low if low and low == low and high == high else None
    return ratios


def _store(folder: Path, books: int) -> stores.Store:
    where = folder / f"{books}-books"
    where.mkdir(parents=True, exist_ok=True)
    return stores.Store(
        f"{folder.name}-{books}", f"sqlite+aiosqlite:///{where}/bench.db", where / "qdrant"
    )


async def profile_run(
    results: Results,
    args: argparse.Namespace,
    plan: Plan,
    scratch: Path,
    fake: FakeLLM,
    profile: str,
    questions: list[str],
) -> None:
    """One store with book-01 alone and one with 20 books, served side by side and measured
    with paired requests."""
    folder = scratch / f"books-{profile}"
    case: dict[str, Any] = {"profile": PROFILES[profile]}
    results["books"]["profiles"][profile] = case
    one, many = _store(folder, 1), _store(folder, BOOKS)
    for store in (one, many):
        await asyncio.to_thread(upgrade, store.database_url)
    only = await _add_books(_in_process(_settings(one, fake, profile)), args.corpus, [slug(1)])
    slugs = [slug(n) for n in range(1, BOOKS + 1)]
    added = await _add_books(_in_process(_settings(many, fake, profile)), args.corpus, slugs)
    seconds = [book["seconds"] for book in added]
    case["ingestion"] = {
        "first_book": only[0],
        "more_books": {
            "books": len(added) - 1,
            "chunks": sum(book["chunks"] for book in added[1:]),
            "seconds": sum(seconds[1:]),
            "median_seconds_per_book": statistics.median(seconds[1:]),
            "last_book_seconds": seconds[-1],
        },
    }
    say(
        f"    {profile}: 1 book ingested ({only[0]['chunks']} chunks, {only[0]['seconds']:.2f} s); "
        f"{BOOKS} books in another store in {sum(seconds):.1f} s (median "
        f"{statistics.median(seconds):.2f} s a book, the last {seconds[-1]:.2f} s)"
    )
    with (
        BookchatServer(
            _settings(one, fake, profile), workdir=folder, name=f"books-{profile}-1"
        ) as alone,
        BookchatServer(
            _settings(many, fake, profile), workdir=folder, name=f"books-{profile}-{BOOKS}"
        ) as shared,
    ):
        targets = [Target(alone.url, [slug(1)]), Target(shared.url, slugs)]
        (case["one_book"], case["twenty_books"]), case["questions"] = await _measure(
            [alone, shared], targets, questions, plan, results
        )
    say(_line(f"{profile}, 1 book", case["one_book"]))
    say(_line(f"{profile}, {BOOKS} books", case["twenty_books"]))
    case["ratio"] = _ratios(case["one_book"], case["twenty_books"])
    say(
        f"    {profile}: {BOOKS} books / 1 book, medians: search "
        f"{case['ratio']['search_p50'] or float('nan'):.2f}x, chat "
        f"{case['ratio']['chat_p50'] or float('nan'):.2f}x"
    )


async def books_phase(
    results: Results, args: argparse.Namespace, plan: Plan, scratch: Path
) -> None:
    """Both profiles, each in stores of its own."""
    results["books"] = {"books": BOOKS, "requests_per_route": plan.c1, "profiles": {}}
    for profile in PROFILES:
        async with phase(results, f"books_{profile}"):
            if not args.corpus.is_dir():
                raise Unavailable(f"no corpus at {args.corpus}")
            if not args.questions.is_file():
                raise Unavailable(f"no question set at {args.questions}")
            questions = load.load_questions(args.questions)
            with FakeLLM(INSTANT_FAKE, log=scratch / f"fake-books-{profile}.log") as fake:
                await profile_run(results, args, plan, scratch, fake, profile, questions)
