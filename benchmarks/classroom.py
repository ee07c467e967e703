"""A classroom's load on the embedded default (issue 16): 16 readers at once, repeated.

- instant fake LLM, c=16, on SQLite and on PostgreSQL: latency p50/p95/max, throughput and the
  server's CPU per answer (what a cache hit, a refusal or a small model costs beyond the model);
- slow fake LLM, c=16, on both: the share of the limit that 16 readers and the fake's answer
  time allow (the server should add next to nothing);
- the offline profile (no keys: SQLite, embedded Qdrant, the extractive answerer): peak memory
  and CPU per answer.

Each case runs `Plan.repeats` times (3 in a full run); the reported value of every number is its
median over the runs, and every run is kept.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import load, stores
from benchmarks.fake_llm import FakeLLM, Knobs
from benchmarks.phases import (
    INSTANT_FAKE,
    SLOW_FAKE,
    TEST_DATABASE_URL,
    Plan,
    Results,
    Unavailable,
    ingestion_line,
    level_line,
    phase,
    say,
    skip,
)
from benchmarks.server import BookchatServer
from bookchat.core.config import Settings

CLIENTS = 16


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of one case as one: each number the median over the runs, errors summed, the runs
    kept under `runs`."""
    first = runs[0]

    def median(*path: str) -> float | None:
        values = []
        for run in runs:
            node: Any = run
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, int | float):
                values.append(float(node))
        return statistics.median(values) if values else None

    return {
        "label": first["label"],
        "concurrency": first["concurrency"],
        "requests": sum(run["requests"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "throughput_per_s": median("throughput_per_s"),
        "latency_ms": {
            key: median("latency_ms", key) for key in ("p50", "p95", "p99", "max", "mean")
        },
        "server_cpu_ms_per_request": median("server_cpu_ms_per_request"),
        "machine_busy_percent": median("machine_busy_percent"),
        "runs": runs,
    }


def limit_per_s(knobs: Knobs, clients: int = CLIENTS) -> float:
    """Answers per second that `clients` closed-loop readers can get from a model that takes
    `knobs` to answer, with a server that adds nothing (the fake answers a plain request after
    `ttft + token_delay * (tokens - 1)`)."""
    return clients / (knobs.ttft + knobs.token_delay * max(0, knobs.tokens - 1))


async def repeated(
    server: BookchatServer, questions: list[str], plan: Plan, label: str, requests: int
) -> dict[str, Any]:
    runs = []
    for number in range(plan.repeats):
        level = await load.run_level(
            server.url,
            questions,
            concurrency=CLIENTS,
            requests=requests,
            warmup=plan.warmup(CLIENTS),
            label=f"{label} (run {number + 1})",
            server_pid=server.pid,
        )
        say(level_line(level))
        runs.append(level.as_dict())
    return median_of(runs)


async def store_runs(
    results: Results,
    store: stores.Store,
    questions: list[str],
    plan: Plan,
    scratch: Path,
    *,
    instant: FakeLLM,
    slow: FakeLLM,
) -> None:
    """Instant and slow c=16 runs on one store, each repeated."""
    case = results["classroom"].setdefault(store.label, {})
    env = stores.server_settings(store, instant.base_url, None)
    with BookchatServer(env, workdir=scratch, name=f"{store.label}-instant-c16") as server:
        case["instant"] = await repeated(
            server, questions, plan, f"c=16 instant {store.label}", plan.per_level
        )
        results["peak_rss_mb"][server.name] = server.peak_rss_mb
    env = stores.server_settings(store, slow.base_url, None)
    with BookchatServer(env, workdir=scratch, name=f"{store.label}-slow-c16") as server:
        run = await repeated(server, questions, plan, f"c=16 slow {store.label}", plan.slow)
        run["limit_per_s"] = limit_per_s(SLOW_FAKE)
        run["share_of_limit"] = (run["throughput_per_s"] or 0.0) / run["limit_per_s"]
        case["slow"] = run
        results["peak_rss_mb"][server.name] = server.peak_rss_mb
    say(
        f"    {store.label}: instant median p95 {case['instant']['latency_ms']['p95']:.0f} ms, "
        f"max {case['instant']['latency_ms']['max']:.0f} ms, "
        f"{case['instant']['throughput_per_s']:.1f}/s, "
        f"CPU {case['instant']['server_cpu_ms_per_request'] or 0:.1f} ms/answer; "
        f"slow {100 * run['share_of_limit']:.1f}% of the limit"
    )


def offline_settings(store: stores.Store) -> dict[str, str]:
    """No keys: the embedded default as `make run` gives it on a laptop."""
    return {
        "DATABASE_URL": store.database_url,
        "QDRANT_PATH": str(store.qdrant_path),
        "BOOK_BASE_URL": stores.BASE_URL,
        "RATE_LIMIT_CHAT": "1000000000/minute",
        "TOKEN_BUDGET_ANONYMOUS_DAILY": "0",
        "ANSWER_CACHE_TTL_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }


async def offline_run(
    results: Results, args: argparse.Namespace, plan: Plan, scratch: Path, questions: list[str]
) -> None:
    folder = scratch / "offline"
    folder.mkdir(exist_ok=True)
    store = stores.Store("offline", f"sqlite+aiosqlite:///{folder}/bench.db", folder / "qdrant")
    env = offline_settings(store)
    settings = Settings(_env_file=None, **{key.lower(): value for key, value in env.items()})
    ingestion = await stores.migrate_and_ingest_with(
        store, settings, args.corpus, args.questions, hybrid=True
    )
    results.setdefault("ingestion", {})["offline"] = asdict(ingestion)
    say(ingestion_line(ingestion))
    with BookchatServer(env, workdir=scratch, name="offline") as server:
        run = await repeated(server, questions, plan, "c=16 offline", plan.per_level)
        results["peak_rss_mb"][server.name] = server.peak_rss_mb
    results["classroom"]["offline"] = {"instant": run, "peak_rss_mb": server.peak_rss_mb}
    say(f"    offline: peak RSS {server.peak_rss_mb:.0f} MB")


async def classroom_phases(
    results: Results, args: argparse.Namespace, plan: Plan, scratch: Path, questions: list[str]
) -> None:
    results["classroom"] = {}
    with (
        FakeLLM(INSTANT_FAKE, log=scratch / "fake-instant.log") as instant,
        FakeLLM(SLOW_FAKE, log=scratch / "fake-slow.log") as slow,
    ):
        async with phase(results, "classroom_sqlite"):
            store = stores.sqlite_store(scratch)
            await store_runs(results, store, questions, plan, scratch, instant=instant, slow=slow)
        if args.skip_postgres:
            skip(results, "classroom_postgresql", "--skip-postgres")
        else:
            async with phase(results, "classroom_postgresql"):
                problem = await stores.postgres_problem(TEST_DATABASE_URL)
                if problem is not None:
                    raise Unavailable(f"PostgreSQL is not reachable ({problem})")
                async with stores.postgres_store(TEST_DATABASE_URL, scratch) as store:
                    ingestion = await stores.migrate_and_ingest(
                        store, instant.base_url, args.corpus
                    )
                    results["ingestion"]["postgresql"] = asdict(ingestion)
                    say(ingestion_line(ingestion))
                    await store_runs(
                        results, store, questions, plan, scratch, instant=instant, slow=slow
                    )
    async with phase(results, "classroom_offline"):
        await offline_run(results, args, plan, scratch, questions)
