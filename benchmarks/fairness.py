"""Fair share per client (DESIGN.md section 10): streams that never read, a flood of searches.

    uv run --no-sync python benchmarks/fairness.py          # these phases alone, about 2 min
    make bench                                              # with everything else

(a) 64 streams that never read their answer are held open, first from one client address, then
from 64 (the server trusts 127.0.0.1 as a proxy, so `X-Forwarded-For` names each client): a
fresh client's first `token` event, against the same measure on the idle server, and
`/api/v1/health/live` meanwhile. A stalled stream has a small receive buffer and never reads
(it only peeks at its status line, to report how the server answered it).

(b) One client floods `GET /api/v1/content/search` with 300-term queries from 8 connections
(then with 32-term ones, then from many clients): ordinary readers' searches meanwhile, against
the same on the idle server.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

if __name__ == "__main__":  # run as a script: `benchmarks` and `tests.fakes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import load, stores
from benchmarks.fake_llm import FakeLLM, Knobs
from benchmarks.phases import Results, phase, say
from benchmarks.server import BookchatServer
from bookchat.providers.terms import content_terms

STALLED = 64
# A long answer (about 8 s at the fake's pace): the stalled streams are still being answered
# while the fresh client is measured.
STALL_FAKE = Knobs(ttft=0.3, token_delay=0.004, tokens=2000)
STALLED_RCVBUF = 4096  # bytes: a client that never reads fills this at once
FRESH_STREAMS = 30  # p95 of fewer is hardly more than their maximum
SEARCH = "/api/v1/content/search"
FLOOD_CONNECTIONS = 8
FLOOD_TERMS = 300
VICTIMS = 2
VICTIM_SEARCHES = 40  # per victim and per condition
SETTLE_SECONDS = 2.0  # after opening the stalled streams, before measuring


def _fairness_env(store: stores.Store, fake: FakeLLM) -> dict[str, str]:
    env = stores.server_settings(store, fake.base_url, None)
    # The harness is every client, on 127.0.0.1: trusting it as a proxy lets `X-Forwarded-For`
    # tell the clients apart, as a real proxy would. The limits under test keep their defaults.
    env["TRUSTED_PROXIES"] = "127.0.0.1"
    return env


def _forwarded(client: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"10.9.{client // 250}.{client % 250 + 1}"}


async def _open_stalled(port: int, question: str, client: int) -> socket.socket:
    """A stream request sent, then never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    body = httpx.Request("POST", "http://x", json={"message": question}).content
    head = (
        f"POST {load.STREAM} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Forwarded-For: {_forwarded(client)['X-Forwarded-For']}\r\n\r\n"
    )
    await asyncio.get_running_loop().sock_sendall(sock, head.encode() + body)
    return sock


def _peek_status(sock: socket.socket) -> str:
    """The status code the server sent, without consuming anything; `open` before it answered."""
    try:
        head = sock.recv(16, socket.MSG_PEEK)
    except BlockingIOError:
        return "no answer yet"
    except OSError as exc:
        return type(exc).__name__
    if not head:
        return "closed"
    parts = head.split(b" ")
    return parts[1].decode() if len(parts) > 1 else "?"


async def _first_token_seconds(
    client: httpx.AsyncClient, url: str, question: str, headers: dict[str, str]
) -> float | None:
    """Seconds from sending a stream request to its first `token` event (None: refused)."""
    started = time.perf_counter()
    async with client.stream("POST", url, json={"message": question}, headers=headers) as reply:
        if reply.status_code != 200:
            return None
        async for line in reply.aiter_lines():
            if line.strip() == "event: token":
                return time.perf_counter() - started
    return None


async def _fresh_streams(url: str, questions: Sequence[str]) -> dict[str, Any]:
    cycle = itertools.cycle(questions)
    seconds: list[float] = []
    refused = 0
    async with httpx.AsyncClient(timeout=load.TIMEOUT) as client:
        for _ in range(FRESH_STREAMS):
            found = await _first_token_seconds(
                client, url + load.STREAM, next(cycle), _forwarded(10_000)
            )
            if found is None:
                refused += 1
            else:
                seconds.append(found)
    return {"first_token_ms": load.summary_ms(seconds), "refused": refused}


@asynccontextmanager
async def _stalled_streams(
    port: int, questions: Sequence[str], clients: int
) -> AsyncIterator[list[socket.socket]]:
    cycle = itertools.cycle(questions)
    socks = [await _open_stalled(port, next(cycle), i % clients) for i in range(STALLED)]
    try:
        yield socks
    finally:
        for sock in socks:
            with suppress(OSError):
                sock.close()


async def _stalled_case(
    server: BookchatServer, questions: Sequence[str], clients: int
) -> dict[str, Any]:
    async with _stalled_streams(server.port, questions, clients) as socks:
        await asyncio.sleep(SETTLE_SECONDS)
        stop = asyncio.Event()
        prober = asyncio.create_task(load.probe_liveness(server.url, stop))
        try:
            fresh = await _fresh_streams(server.url, questions)
        finally:
            stop.set()
            live = await prober
        answers = Counter(_peek_status(sock) for sock in socks)
        cpu = _cpu_seconds(server.pid)
        await asyncio.sleep(SETTLE_SECONDS)
        idle_cpu = _cpu_seconds(server.pid) - cpu
    return {
        "clients": clients,
        "stalled_answers": dict(answers),
        **fresh,
        "liveness_ms": load.summary_ms(live),
        "server_cpu_ms_per_s_while_stalled": round(1000 * idle_cpu / SETTLE_SECONDS, 1),
    }


def _cpu_seconds(pid: int) -> float:
    import psutil  # type: ignore[import-untyped, unused-ignore]

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def stalled_streams_phase(
    results: Results, store: stores.Store, scratch: Path, questions: Sequence[str]
) -> None:
    """(a): a fresh stream's first token and liveness, idle and beside 64 stalled streams."""
    async with phase(results, "stalled_streams"):
        with (
            FakeLLM(STALL_FAKE, log=scratch / "fake.log") as fake,
            BookchatServer(
                _fairness_env(store, fake), workdir=scratch, name="sqlite-stalled"
            ) as server,
        ):
            await _fresh_streams(server.url, questions[:3])  # warm-up
            idle = await _fresh_streams(server.url, questions)
            say(f"    idle: first token {idle['first_token_ms']}")
            cases = []
            for clients in (1, STALLED):
                case = await _stalled_case(server, questions, clients)
                cases.append(case)
                say(
                    f"    {STALLED} stalled from {clients} client(s): answered "
                    f"{case['stalled_answers']}; first token p50 "
                    f"{case['first_token_ms']['p50']:.0f} ms (refused {case['refused']}), "
                    f"/health/live p95 {case['liveness_ms']['p95']:.1f} ms, server CPU "
                    f"{case['server_cpu_ms_per_s_while_stalled']} ms/s while they stall"
                )
                await asyncio.sleep(SETTLE_SECONDS)
            results["stalled_streams"] = {
                "fake": asdict(STALL_FAKE),
                "idle": idle,
                "cases": cases,
            }
            results["peak_rss_mb"][server.name] = server.peak_rss_mb


def _long_query(questions: Sequence[str], terms: int) -> str:
    """A query of the questions' words with `terms` distinct search terms (within the 2000
    characters a query may have): repeats are cheap for BM25, distinct terms are not."""
    seen: set[str] = set()
    words: list[str] = []
    for word in (w for q in questions for w in q.split()):
        stems = set(content_terms(word)) - seen
        if stems and len(seen) < terms:
            seen |= stems
            words.append(word.strip("?.,"))
    while len(seen) < terms:  # the questions ran out of new words: made-up ones
        seen.add(f"w{len(seen)}")
        words.append(f"w{len(seen)}")
    return " ".join(words)[:2000]


_addresses = itertools.count(20_000)


async def _victim(url: str, questions: Sequence[str]) -> tuple[list[float], int]:
    """Ordinary readers' searches, one after the other, each from a reader of its own."""
    seconds: list[float] = []
    failed = 0
    async with httpx.AsyncClient(timeout=load.TIMEOUT) as http:
        for question in itertools.islice(itertools.cycle(questions), VICTIM_SEARCHES):
            started = time.perf_counter()
            reply = await http.get(
                url + SEARCH, params={"q": question}, headers=_forwarded(next(_addresses))
            )
            if reply.status_code == 200:
                seconds.append(time.perf_counter() - started)
            else:
                failed += 1
    return seconds, failed


async def _victims(url: str, questions: Sequence[str]) -> dict[str, Any]:
    runs = await asyncio.gather(*(_victim(url, questions[i::VICTIMS]) for i in range(VICTIMS)))
    return {
        "latency_ms": load.summary_ms([s for seconds, _ in runs for s in seconds]),
        "failed": sum(failed for _, failed in runs),
    }


async def _flood(url: str, query: str, one_client: bool, stop: asyncio.Event) -> Counter[int]:
    """FLOOD_CONNECTIONS closed loops of `query`, from one address or a new one each time."""
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=FLOOD_CONNECTIONS)
    async with httpx.AsyncClient(timeout=load.TIMEOUT, limits=limits) as http:

        async def one() -> None:
            while not stop.is_set():
                client = 10_000_000 if one_client else next(_addresses)
                try:
                    reply = await http.get(
                        url + SEARCH, params={"q": query, "limit": 50}, headers=_forwarded(client)
                    )
                    statuses[reply.status_code] += 1
                except httpx.HTTPError:
                    statuses[0] += 1

        await asyncio.gather(*(one() for _ in range(FLOOD_CONNECTIONS)))
    return statuses


# (name, distinct terms, from one client): the reported flood, the most a query may now have
# from one client, and from many clients (what the rate limit cannot stop; the cap on
# concurrent searches has to).
FLOODS = (
    ("one client, ~300 terms", FLOOD_TERMS, True),
    ("one client, 32 terms", 32, True),
    ("many clients, 32 terms", 32, False),
)


async def search_flood_phase(
    results: Results, store: stores.Store, scratch: Path, questions: Sequence[str]
) -> None:
    """(b): other readers' searches, idle and during each flood of long queries."""
    async with phase(results, "search_flood"):
        with (
            FakeLLM(Knobs(), log=scratch / "fake.log") as fake,
            BookchatServer(
                _fairness_env(store, fake), workdir=scratch, name="sqlite-flood"
            ) as server,
        ):
            await _victims(server.url, questions[:4])  # warm-up
            idle = await _victims(server.url, questions)
            say(f"    others' search idle: p95 {idle['latency_ms']['p95']:.1f} ms")
            floods = []
            for name, terms, one_client in FLOODS:
                stop = asyncio.Event()
                query = _long_query(questions, terms)
                flood = asyncio.create_task(_flood(server.url, query, one_client, stop))
                await asyncio.sleep(1.0)
                try:
                    flooded = await _victims(server.url, questions)
                finally:
                    stop.set()
                    statuses = await flood
                floods.append(
                    {
                        "flood": name,
                        "distinct_terms": len(set(content_terms(query))),
                        **flooded,
                        "flood_statuses": {str(k): v for k, v in statuses.items()},
                    }
                )
                say(
                    f"    during a flood ({name}): p95 {flooded['latency_ms']['p95']:.1f} ms "
                    f"(failed {flooded['failed']}); the flood got {dict(statuses)}"
                )
        results["search_flood"] = {"idle": idle, "floods": floods}


async def fairness_phases(results: Results, scratch: Path, questions: Sequence[str]) -> None:
    """Both phases on the SQLite store the earlier phases ingested."""
    store = stores.sqlite_store(scratch)
    await stalled_streams_phase(results, store, scratch, questions)
    await search_flood_phase(results, store, scratch, questions)


def _keep_logs(scratch: Path) -> Path:
    """The servers' logs, copied out of the scratch folder before it goes."""
    logs = Path(tempfile.mkdtemp(prefix="bookchat-fair-logs-"))
    for log in scratch.glob("server-*.log"):
        shutil.copy(log, logs)
    return logs


async def _standalone(corpus: Path, questions_file: Path) -> Results:
    results: Results = {"skipped": {}, "peak_rss_mb": {}}
    with tempfile.TemporaryDirectory(prefix="bookchat-fair-", ignore_cleanup_errors=True) as tmp:
        scratch = Path(tmp)
        store = stores.sqlite_store(scratch)
        with FakeLLM(Knobs(), log=scratch / "fake.log") as fake:
            await stores.migrate_and_ingest(store, fake.base_url, corpus)
        try:
            await fairness_phases(results, scratch, load.load_questions(questions_file))
        finally:
            say(f"server logs: {await asyncio.to_thread(_keep_logs, scratch)}")
    return results


if __name__ == "__main__":
    import json

    from benchmarks.bench import DEFAULT_CORPUS, DEFAULT_QUESTIONS
    from bookchat.core.logging import configure_logging

    configure_logging("WARNING", "console")
    from benchmarks.report import fairness_budgets, table

    measured = asyncio.run(_standalone(DEFAULT_CORPUS, DEFAULT_QUESTIONS))
    print(json.dumps(measured, indent=1))
    say(table(fairness_budgets(measured)))
