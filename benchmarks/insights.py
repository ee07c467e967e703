"""The insights' queries on a generated history of 1M messages on PostgreSQL (issue 19).

Its own command, not part of `make bench`: generating and indexing the history takes minutes on
the 2-core machine, longer than every other phase together.

    uv run --no-sync python benchmarks/insights.py                   # 1,000,000 messages
    uv run --no-sync python benchmarks/insights.py --messages 200000 # a quicker look

A scratch database on TEST_DATABASE_URL's server (created and dropped; nothing else is touched)
is migrated to head, filled by SQL on the server (`generate_series`: sessions over one year,
5 turns each, a question and an answer per turn; 75% of answers from the book with 3 sources,
10% on a selection, 15% refused, half of those with a nearest section; 3% failed, 3% citing
none of their sources (kept as unanswered, with a nearest section); 10% of
answers rated, 30% of ratings down), rewritten in time order (as a server stores rows) and
analysed, then each insight is asked through
`InsightsService` (the route's code path, without HTTP) over the last 30 days, 90 days and the
whole year (366 days, the longest range the API allows), `RUNS` times each after one warm-up;
the median is reported. Then the insights' indexes are dropped and the 30-day range measured
again, to show what they buy. Results go to benchmarks/results/insights.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `benchmarks`, when run as a script

from sqlalchemy import text  # noqa: E402

from benchmarks import stores  # noqa: E402
from benchmarks.phases import TEST_DATABASE_URL, say  # noqa: E402
from bookchat.books.names import DEFAULT_BOOK  # noqa: E402
from bookchat.core.db import create_engine, create_sessionmaker  # noqa: E402
from bookchat.core.migrations import upgrade  # noqa: E402
from bookchat.insights.service import DateRange, InsightsService  # noqa: E402

RUNS = 3
TURNS_PER_SESSION = 5
YEAR_START = dt.date(2026, 1, 1)
LAST_DAY = dt.date(2026, 12, 31)
RANGES = {"30 days": 30, "90 days": 90, "366 days": 366}
INDEXES = {
    "ix_messages_role_created_at": "messages (role, created_at)",
    "ix_messages_mode_created_at": "messages (mode, created_at)",
    "ix_messages_question_key_created_at": "messages (created_at) WHERE question_key IS NOT NULL",
    "ix_message_feedback_updated_at": "message_feedback (updated_at)",
}


def _source(index: int, key: str, cited: str) -> str:
    """One stored citation (as chat/citations.py writes them), in SQL, for section `key`."""
    page = f"'Page ' || {key} / 4"
    return (
        f"json_build_object('index', {index}, 'title', {page}, 'section', 'Heading ' || {key}, "
        f"'page_url', 'https://example.org/book/p' || {key} / 4 || '#h' || {key}, "
        f"'source_path', 'p' || {key} / 4 || '.md', 'snippet', repeat('lorem ', 45), "
        f"'score', 0.5, 'cited', {cited})"
    )


SOURCES = ", ".join(
    (
        _source(1, "k1", "NOT failed AND NOT uncited"),
        _source(2, "k2", "NOT failed AND NOT uncited AND r2 < 0.5"),
        _source(3, "k3", "false"),
    )
)

# Server-side generation: one statement per table. random() is drawn per row.
GENERATE = [
    """
    INSERT INTO users (id, email, role, created_at)
    SELECT md5('u' || i)::uuid, 'reader' || i || '@example.org', 'user', now()
    FROM generate_series(1, 5000) AS i
    """,
    """
    INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at)
    SELECT md5('s' || i)::uuid,
           CASE WHEN i % 5 < 3 THEN md5('u' || (i % 5000 + 1))::uuid END,
           'bench', t, t
    FROM (
        SELECT i, timestamptz '2026-01-01 00:00:00+00' + random() * interval '364 days' AS t
        FROM generate_series(1, :sessions) AS i
    ) AS s
    """,
    """
    INSERT INTO messages (id, session_id, role, content, status, cached, created_at)
    SELECT gen_random_uuid(), s.id, 'user', 'Question ' || j || ' of ' || s.id,
           'complete', false, s.created_at + j * interval '10 minutes'
    FROM chat_sessions AS s CROSS JOIN generate_series(1, :turns) AS j
    """,
    f"""
    INSERT INTO messages (
        id, session_id, role, content, status, mode, cached, latency_ms, citations,
        nearest_section, question_key, created_at
    )
    SELECT gen_random_uuid(), session_id, 'assistant', 'An answer ' || repeat('text ', 60),
           CASE WHEN failed THEN 'error' ELSE 'complete' END,
           mode,
           mode = 'rag' AND r2 < 0.15,
           latency,
           CASE
             WHEN mode = 'rag' THEN json_build_array({SOURCES})
             WHEN mode = 'selected_text' THEN json_build_array(
               json_build_object('index', 1, 'title', 'Selected text', 'section', '',
                 'page_url', 'https://example.org/book/p1', 'cited', true))
             ELSE '[]'::json
           END,
           CASE WHEN (mode = 'no_context' AND r2 < 0.5) OR uncited THEN json_build_object(
             'title', 'Page ' || k1 / 4, 'heading', 'Heading ' || k1,
             'url', 'https://example.org/book/p' || k1 / 4 || '#h' || k1) END,
           CASE WHEN mode = 'no_context' OR uncited THEN 'family ' || k2 END,
           asked + latency * interval '1 millisecond'
    FROM (
        SELECT *,
               CASE WHEN r < 0.75 THEN 'rag' WHEN r < 0.85 THEN 'selected_text'
                    ELSE 'no_context' END AS mode,
               r < 0.75 AND r3 < 0.04 AS failed,
               r < 0.75 AND r3 > 0.96 AS uncited
        FROM (
            SELECT s.id AS session_id, s.created_at + j * interval '10 minutes' AS asked,
                   random() AS r, random() AS r2, random() AS r3,
                   (20 + random() * 4000)::int AS latency,
                   (random() * 800)::int AS k1,
                   (random() * 300)::int AS k2,
                   (random() * 800)::int AS k3
            FROM chat_sessions AS s CROSS JOIN generate_series(1, :turns) AS j
        ) AS draws
    ) AS t
    """,  # noqa: S608 (SOURCES is a constant built above, not input)
    """
    INSERT INTO message_feedback (id, message_id, user_id, rating, comment, created_at, updated_at)
    SELECT gen_random_uuid(), id, NULL, CASE WHEN random() < 0.7 THEN 1 ELSE -1 END,
           'A comment', created_at + interval '2 minutes', created_at + interval '2 minutes'
    FROM messages
    WHERE role = 'assistant' AND status <> 'error' AND random() < 0.1
    """,
]


async def timed(work: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    """Median and spread of RUNS calls, after one warm-up call, in milliseconds."""
    await work()
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        await work()
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "median_ms": round(statistics.median(samples), 1),
        "min_ms": round(min(samples), 1),
        "max_ms": round(max(samples), 1),
    }


async def measure(service: InsightsService, url: str, ranges: dict[str, int]) -> dict[str, Any]:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    results: dict[str, Any] = {}
    try:
        for label, days in ranges.items():
            period = DateRange(LAST_DAY - dt.timedelta(days=days - 1), LAST_DAY)
            row: dict[str, Any] = {}

            async def call(method: str, period: DateRange = period) -> Any:
                async with sessionmaker() as db:
                    if method == "summary":
                        return await service.summary(db, DEFAULT_BOOK, period)
                    return await getattr(service, method)(
                        db, DEFAULT_BOOK, period, limit=20, offset=0
                    )

            for method in ("summary", "unanswered", "sections", "low_rated"):
                row[method] = await timed(lambda method=method: call(method))  # type: ignore[misc]
                say(f"  {label:>8} {method:<10} median {row[method]['median_ms']:8.1f} ms")

            async def export(period: DateRange = period) -> int:
                size = 0
                async for chunk in service.questions_csv(DEFAULT_BOOK, period):
                    size += len(chunk)
                return size

            # An export is a one-off download: timed once, cold.
            started = time.perf_counter()
            size = await export()
            row["questions_csv"] = {
                "median_ms": round((time.perf_counter() - started) * 1000, 1),
                "bytes": size,
            }
            say(
                f"  {label:>8} {'csv':<10} once   {row['questions_csv']['median_ms']:8.1f} ms "
                f"({row['questions_csv']['bytes'] / 1e6:.1f} MB)"
            )
            results[label] = row
    finally:
        await engine.dispose()
    return results


async def run(messages: int) -> dict[str, Any] | None:
    problem = await stores.postgres_problem(TEST_DATABASE_URL)
    if problem is not None:
        say(f"PostgreSQL is not reachable at TEST_DATABASE_URL ({problem}); nothing measured.")
        return None
    sessions = max(1, messages // (2 * TURNS_PER_SESSION))
    scratch = Path(tempfile.mkdtemp(prefix="bookchat-insights-"))
    async with stores.postgres_store(TEST_DATABASE_URL, scratch) as store:
        await asyncio.to_thread(upgrade, store.database_url)
        engine = create_engine(store.database_url)
        started = time.perf_counter()
        async with engine.begin() as connection:
            for statement in GENERATE:
                await connection.execute(
                    text(statement), {"sessions": sessions, "turns": TURNS_PER_SESSION}
                )
        generated = time.perf_counter() - started
        async with engine.connect() as connection:
            await connection.execute(text("COMMIT"))
            # A server stores rows as they arrive, in time order; the statements above wrote
            # them session by session. Rewrite the table in time order, as it would be.
            await connection.execute(text("CREATE INDEX bench_by_time ON messages (created_at)"))
            await connection.execute(text("CLUSTER messages USING bench_by_time"))
            await connection.execute(text("DROP INDEX bench_by_time"))
            await connection.execute(text("VACUUM ANALYZE"))
            counts = {
                table: int(
                    (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608
                )
                for table in ("chat_sessions", "messages", "message_feedback")
            }
        say(f"Generated {counts} in {generated:.0f} s (analysed).")
        service = InsightsService(sessionmaker=create_sessionmaker(engine))
        say("With the insights' indexes:")
        indexed = await measure(service, store.database_url, RANGES)
        async with engine.begin() as connection:
            for name in INDEXES:
                await connection.execute(text(f"DROP INDEX {name}"))
            await connection.execute(text("ANALYZE"))
        say("Without them:")
        bare = await measure(service, store.database_url, {"30 days": 30})
        await engine.dispose()
    return {
        "messages": counts["messages"],
        "sessions": counts["chat_sessions"],
        "feedback": counts["message_feedback"],
        "generation_seconds": round(generated, 1),
        "runs": RUNS,
        "indexes": INDEXES,
        "with_indexes": indexed,
        "without_indexes": bare,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    result = asyncio.run(run(args.messages))
    if result is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "insights.json").write_text(json.dumps(result, indent=2) + "\n")
        say(f"Wrote {args.output / 'insights.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
