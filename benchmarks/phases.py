"""The phases of a benchmark run: what each starts, measures and records."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import load, stores
from benchmarks.fake_llm import FakeLLM, Knobs
from benchmarks.profile import render, summarise
from benchmarks.server import BookchatServer, Profiler

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LEVELS = (1, 4, 16, 64)
PROFILED_REQUESTS = 1000
INSTANT_FAKE = Knobs(ttft=0.0, token_delay=0.0, tokens=60)
SLOW_FAKE = Knobs(ttft=0.3, token_delay=0.033, tokens=60)  # 2.25 s per answer
# The SSE phase only times the first token: later tokens come quickly to keep the run short.
SSE_FAKE = Knobs(ttft=0.3, token_delay=0.005, tokens=60)

Results = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Plan:
    """How many requests each phase sends."""

    c1: int
    per_level: int
    slow: int
    sse: int
    # How many times the classroom cases run (benchmarks/classroom.py reports medians).
    repeats: int

    @classmethod
    def of(cls, quick: bool) -> Plan:
        return cls(40, 80, 48, 10, 1) if quick else cls(200, 400, 160, 50, 3)

    def requests(self, concurrency: int) -> int:
        return self.c1 if concurrency == 1 else self.per_level

    @staticmethod
    def warmup(concurrency: int) -> int:
        return max(2 * concurrency, 10)


def say(message: str) -> None:
    print(message, flush=True)


class Unavailable(Exception):
    """A service the phase needs is not there (said in one line, no traceback)."""


@asynccontextmanager
async def phase(results: Results, name: str) -> AsyncIterator[None]:
    """Run a phase; a failure is recorded as the reason it was not measured, and the run goes on."""
    started = time.perf_counter()
    say(f"--- {name}")
    try:
        yield
    except Unavailable as exc:
        results["skipped"][name] = str(exc)
        say(f"    skipped: {exc}")
    except Exception as exc:
        results["skipped"][name] = f"{type(exc).__name__}: {exc}".strip()[:500]
        say(f"    failed: {results['skipped'][name]}")
        traceback.print_exc(limit=3)
    finally:
        say(f"    ({time.perf_counter() - started:.1f} s)")


def skip(results: Results, name: str, reason: str) -> None:
    results["skipped"][name] = reason
    say(f"--- {name}: skipped ({reason})")


def level_line(level: load.LevelResult) -> str:
    summary = level.as_dict()
    lat, cpu = summary["latency_ms"], summary["server_cpu_ms_per_request"]
    assert isinstance(lat, dict)
    return (
        f"    {level.label}: {level.throughput:.1f}/s, p50 {lat['p50']:.1f} ms, "
        f"p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms, errors {level.errors}"
        + (f", server CPU {cpu:.1f} ms/request" if isinstance(cpu, float) else "")
        + (
            f", machine {level.machine_busy_percent:.0f}% busy"
            if level.machine_busy_percent
            else ""
        )
    )


def ingestion_line(ingestion: stores.Ingestion) -> str:
    line = (
        f"    {ingestion.documents} documents, {ingestion.chunks} chunks: from scratch "
        f"{ingestion.scratch_seconds:.2f} s, unchanged {ingestion.unchanged_seconds:.3f} s"
    )
    if ingestion.bm25_hit_at_5 is not None:
        line += f"; BM25 hit@5 {ingestion.bm25_hit_at_5:.3f}"
    if ingestion.hybrid_hit_at_5 is not None:
        line += f", hybrid hit@5 {ingestion.hybrid_hit_at_5:.3f}"
    return line


async def instant_phases(
    results: Results, args: argparse.Namespace, plan: Plan, scratch: Path, stack: ExitStack
) -> list[str] | None:
    """Ingestion and the instant-fake runs (SQLite, then Redis); the questions that reach the
    model, or None when nothing could be ingested."""
    fake = stack.enter_context(FakeLLM(INSTANT_FAKE, log=scratch / "fake.log"))
    store = stores.sqlite_store(scratch)
    async with phase(results, "ingestion"):
        ingestion = await stores.migrate_and_ingest(
            store, fake.base_url, args.corpus, args.questions
        )
        results["ingestion"]["sqlite"] = asdict(ingestion)
        say(ingestion_line(ingestion))
    if "sqlite" not in results["ingestion"]:
        return None
    questions = load.load_questions(args.questions)
    env = stores.server_settings(store, fake.base_url, None)
    async with phase(results, "chat_instant"):
        with BookchatServer(env, workdir=scratch, name="sqlite-instant") as server:
            kept, modes = await load.rag_questions(server.url, questions)
            results["questions"] = {"answerable": len(questions), "rag": len(kept), "modes": modes}
            say(f"    warm-up: {len(questions)} answerable questions, modes {dict(modes)}")
            questions = kept or questions
            for concurrency in LEVELS:
                fake.reset()
                level = await load.run_level(
                    server.url,
                    questions,
                    concurrency=concurrency,
                    requests=plan.requests(concurrency),
                    warmup=plan.warmup(concurrency),
                    server_pid=server.pid,
                )
                results["chat_instant"].append(level.as_dict())
                say(level_line(level))
            if args.profile is not None:
                await profiled_run(results, args.profile, server, questions, plan)
            results["peak_rss_mb"][server.name] = server.peak_rss_mb
    async with phase(results, "redis"):
        problem = await stores.redis_problem(TEST_REDIS_URL)
        if problem is not None:
            raise Unavailable(f"Redis at {TEST_REDIS_URL} is not reachable ({problem})")
        await stores.flush_redis(TEST_REDIS_URL)
        try:
            env = stores.server_settings(store, fake.base_url, TEST_REDIS_URL)
            with BookchatServer(env, workdir=scratch, name="sqlite-redis-instant") as server:
                fake.reset()
                level = await load.run_level(
                    server.url,
                    questions,
                    concurrency=16,
                    requests=plan.per_level,
                    warmup=plan.warmup(16),
                    label="c=16 redis",
                    server_pid=server.pid,
                )
                results["redis_c16"] = level.as_dict()
                results["peak_rss_mb"][server.name] = server.peak_rss_mb
                say(level_line(level))
        finally:
            await stores.uncancellable(stores.flush_redis(TEST_REDIS_URL))
    fake.stop()
    return questions


def write_summary(raw: Path, output: Path) -> dict[str, object]:
    summary = summarise(raw)
    output.write_text(render(summary) + "\n")
    return summary


async def profiled_run(
    results: Results, folder: Path, server: BookchatServer, questions: list[str], plan: Plan
) -> None:
    """Another c=16 instant run with py-spy attached; its collapsed stacks and a summary."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    raw = folder / "c16-instant.txt"
    profiler = Profiler(server.pid, raw)
    profiler.start()
    try:
        level = await load.run_level(
            server.url,
            questions,
            concurrency=16,
            requests=PROFILED_REQUESTS,  # about 10 s: enough samples even with --quick
            warmup=plan.warmup(16),
            label="c=16 under py-spy",
            server_pid=server.pid,
        )
    finally:
        profiler.stop()
    say(level_line(level))
    summary = await asyncio.to_thread(write_summary, raw, folder / "c16-instant-summary.txt")
    results["profile"] = {"run": level.as_dict(), "raw": str(raw), **summary}
    say(f"    profile: {raw} and {folder / 'c16-instant-summary.txt'}")


async def slow_run(
    results: Results,
    store: stores.Store,
    fake: FakeLLM,
    questions: list[str],
    plan: Plan,
    scratch: Path,
    *,
    probe: bool,
) -> None:
    """c=16 against the slow fake LLM; with `probe`, GET /health/live every 50 ms meanwhile."""
    env = stores.server_settings(store, fake.base_url, None)
    with BookchatServer(env, workdir=scratch, name=f"{store.label}-slow") as server:
        stop = asyncio.Event()
        prober = asyncio.create_task(load.probe_liveness(server.url, stop)) if probe else None
        try:
            level = await load.run_level(
                server.url,
                questions,
                concurrency=16,
                requests=plan.slow,
                warmup=16,
                label=f"c=16 slow {store.label}",
                server_pid=server.pid,
            )
        finally:
            stop.set()
            live = await prober if prober is not None else []
        results["slow_c16"][store.label] = level.as_dict()
        results["peak_rss_mb"][server.name] = server.peak_rss_mb
        say(level_line(level))
        if probe:
            results["liveness_ms"] = load.summary_ms(live)
            say(f"    /health/live: {results['liveness_ms']}")


async def slow_phases(results: Results, plan: Plan, scratch: Path, questions: list[str]) -> None:
    """The slow fake LLM, c=16 on SQLite, with the liveness probe (the classroom phases measure
    both databases without it)."""
    with FakeLLM(SLOW_FAKE, log=scratch / "fake.log") as fake:
        async with phase(results, "slow_sqlite"):
            store = stores.sqlite_store(scratch)
            await slow_run(results, store, fake, questions, plan, scratch, probe=True)


async def sse_phase(results: Results, plan: Plan, scratch: Path, questions: list[str]) -> None:
    """Sequential streams: our first `token` event minus the fake's first token, per answer."""
    async with phase(results, "sse"):
        with FakeLLM(SSE_FAKE, log=scratch / "fake.log") as fake:
            env = stores.server_settings(stores.sqlite_store(scratch), fake.base_url, None)
            with BookchatServer(env, workdir=scratch, name="sqlite-sse") as server:
                await load.stream_first_tokens(  # warm-up
                    server.url, questions, requests=3, fake_times=fake.first_token_times
                )
                fake.reset()
                streamed = await load.stream_first_tokens(
                    server.url, questions, requests=plan.sse, fake_times=fake.first_token_times
                )
                results["peak_rss_mb"][server.name] = server.peak_rss_mb
        results["sse"] = {**streamed.as_dict(), "fake": asdict(SSE_FAKE)}
        say(f"    {results['sse']}")
