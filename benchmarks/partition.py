"""The database-partition phase: PostgreSQL behind a proxy that stops forwarding packets.

Closed-loop chat clients run before, during and after the partition (the server keeps its
default database timeouts). Measured: how long each chat started during the partition took to
answer and with which status (the budget: 503 within 5 s), how long after healing the first
answer came, and whether every answer acknowledged with a 200 is stored once it has healed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url
from tests.fakes.tcp_proxy import TcpProxy

from benchmarks import stores
from benchmarks.fake_llm import FakeLLM
from benchmarks.phases import (
    INSTANT_FAKE,
    TEST_DATABASE_URL,
    Results,
    Unavailable,
    phase,
    say,
    skip,
)
from benchmarks.report import Budget
from benchmarks.server import BookchatServer

CLIENTS = 8
TURNS_PER_SESSION = 3
CLIENT_TIMEOUT = 60.0  # far above any bound: a hang shows up as a long time, not an error
BUDGET_SECONDS = 5.0


@dataclass(slots=True)
class Answer:
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no HTTP answer at all
    code: str | None = None


@dataclass(slots=True)
class Traffic:
    answers: list[Answer] = field(default_factory=list)
    acknowledged: list[uuid.UUID] = field(default_factory=list)  # assistant message ids


async def client_loop(
    url: str, questions: list[str], offset: int, stop: asyncio.Event, traffic: Traffic
) -> None:
    """Ask questions one after another, a new session every few turns, until `stop`."""
    session_id: str | None = None
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        turn = offset
        while not stop.is_set():
            body: dict[str, Any] = {"message": questions[turn % len(questions)]}
            if session_id is not None and turn % TURNS_PER_SESSION:
                body["session_id"] = session_id
            started = time.monotonic()
            try:
                response = await client.post("/api/v1/chat", json=body)
            except httpx.HTTPError:
                traffic.answers.append(Answer(started, time.monotonic() - started, 0))
                await asyncio.sleep(0.1)
                continue
            answer = Answer(started, time.monotonic() - started, response.status_code)
            if response.status_code == 200:
                data = response.json()
                session_id = data["session_id"]
                traffic.acknowledged.append(uuid.UUID(data["message_id"]))
            else:
                answer.code = response.json().get("error", {}).get("code")
                await asyncio.sleep(0.1)  # as a widget would, rather than a tight retry loop
            traffic.answers.append(answer)
            turn += CLIENTS


async def stored_ids(database_url: str, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `ids` are rows of `messages`, read straight from the server (no proxy)."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await connection.fetch("SELECT id FROM messages WHERE id = ANY($1::uuid[])", ids)
    finally:
        await connection.close()
    return {row["id"] for row in rows}


def _times(answers: list[Answer]) -> dict[str, Any]:
    times = [a.seconds for a in answers]
    return {
        "requests": len(answers),
        "statuses": dict(Counter(f"{a.status} {a.code or ''}".strip() for a in answers)),
        "median_seconds": round(statistics.median(times), 2) if times else None,
        "max_seconds": round(max(times), 2) if times else None,
    }


def summarise(
    traffic: Traffic, cut: float, healed: float, stored: set[uuid.UUID]
) -> dict[str, Any]:
    """Requests by where they fall: in flight at the cut, inside the partition (started and
    answered during it: the budget), across the heal; then recovery and the lost answers."""
    ended = {id(a): a.started + a.seconds for a in traffic.answers}
    in_flight = [a for a in traffic.answers if a.started < cut < ended[id(a)]]
    inside = [a for a in traffic.answers if cut <= a.started and ended[id(a)] <= healed]
    across = [a for a in traffic.answers if cut <= a.started < healed < ended[id(a)]]
    after = sorted(
        (a for a in traffic.answers if a.started >= healed and a.status == 200),
        key=lambda a: a.started,
    )
    lost = [i for i in traffic.acknowledged if i not in stored]
    return {
        "clients": CLIENTS,
        "partition_seconds": round(healed - cut, 1),
        "in_flight_at_cut": _times(in_flight),
        "during": _times(inside),
        "across_heal": _times(across),
        "first_200_after_heal_seconds": (round(ended[id(after[0])] - healed, 2) if after else None),
        "acknowledged": len(traffic.acknowledged),
        "stored": len(traffic.acknowledged) - len(lost),
        "lost": len(lost),
    }


async def partition_phase(
    results: Results, args: argparse.Namespace, scratch: Path, questions: list[str], *, quick: bool
) -> None:
    """PostgreSQL through a proxy that is partitioned mid-run, then healed."""
    if args.skip_postgres:
        skip(results, "partition", "--skip-postgres")
        return
    before, cut_for, after = (2.0, 6.0, 4.0) if quick else (3.0, 12.0, 6.0)
    async with phase(results, "partition"):
        problem = await stores.postgres_problem(TEST_DATABASE_URL)
        if problem is not None:
            raise Unavailable(f"PostgreSQL is not reachable ({problem})")
        with FakeLLM(INSTANT_FAKE, log=scratch / "fake.log") as fake:
            async with stores.postgres_store(TEST_DATABASE_URL, scratch) as store:
                await stores.migrate_and_ingest(store, fake.base_url, args.corpus)
                url = make_url(store.database_url)
                proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
                try:
                    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
                        hide_password=False
                    )
                    env = stores.server_settings(
                        stores.Store("partition", proxied, store.qdrant_path), fake.base_url, None
                    )
                    with BookchatServer(
                        env, workdir=scratch, name="postgresql-partition"
                    ) as server:
                        traffic, stop = Traffic(), asyncio.Event()
                        clients = [
                            asyncio.create_task(
                                client_loop(server.url, questions, n, stop, traffic)
                            )
                            for n in range(CLIENTS)
                        ]
                        await asyncio.sleep(before)
                        cut = time.monotonic()
                        proxy.partition()
                        await asyncio.sleep(cut_for)
                        healed = time.monotonic()
                        proxy.heal()
                        await asyncio.sleep(after)
                        stop.set()
                        await asyncio.gather(*clients)
                finally:
                    proxy.close()
                stored = await stored_ids(store.database_url, traffic.acknowledged)
        results["partition"] = summarise(traffic, cut, healed, stored)
        say(f"    {results['partition']}")


def partition_budgets(results: Results) -> list[Budget]:
    """The partition rows of the budget table."""
    measured = results.get("partition")
    if not measured:
        reason = results["skipped"].get("partition")
        missing = f"not measured: {reason}" if reason else "not measured"
        return [
            Budget(
                "database partition: chat answers 503", f"<= {BUDGET_SECONDS:g} s", missing, None
            ),
            Budget("database partition: acknowledged answers lost", "0", missing, None),
        ]
    during, in_flight = measured["during"], measured["in_flight_at_cut"]
    worst = max(during["max_seconds"] or 0.0, in_flight["max_seconds"] or 0.0)
    all_503 = set(during["statuses"]) == {"503 dependency_unavailable"}
    return [
        Budget(
            "database partition: chat answers 503",
            f"<= {BUDGET_SECONDS:g} s",
            f"median {during['median_seconds']} s, max {worst} s, "
            f"{during['requests']} requests: {during['statuses']}",
            all_503 and during["requests"] > 0 and worst <= BUDGET_SECONDS,
        ),
        Budget(
            "database partition: acknowledged answers lost",
            "0",
            f"{measured['lost']} of {measured['acknowledged']}",
            measured["lost"] == 0,
        ),
    ]
