"""`make bench`: measure the budgets of DESIGN.md section 10 on this machine.

Starts the fake LLM in a process of its own, ingests `../shared/corpus/textbook-a` into scratch
stores, serves them with `bookchat serve` (one worker) and drives it with closed-loop clients;
writes benchmarks/results/latest.json and latest.png and prints each budget as met or not.
Missed budgets never fail the run (speed lives here, not in the tests).

    make bench                                                  # the full run
    uv run --group bench python benchmarks/bench.py --quick     # a smoke run, about a minute
    uv run --group bench --with py-spy python benchmarks/bench.py --profile /tmp/bench-profile
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `benchmarks` and `tests.fakes`, when run as a script

from benchmarks import load, report, stores  # noqa: E402
from benchmarks.fake_llm import FakeLLM, Knobs  # noqa: E402
from benchmarks.profile import render, summarise  # noqa: E402
from benchmarks.server import SETTING_NAMES, BookchatServer, Profiler  # noqa: E402
from bookchat.core.logging import configure_logging  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "textbook-a"
DEFAULT_QUESTIONS = ROOT / "benchmarks" / "questions" / "textbook-a.jsonl"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results"
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

    @classmethod
    def of(cls, quick: bool) -> Plan:
        return cls(40, 80, 48, 10) if quick else cls(200, 400, 160, 50)

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


def machine_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(  # noqa: S603 (fixed git arguments)
                ["git", *args],  # noqa: S607 (git from PATH)
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "load_average_at_start": os.getloadavg(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


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


async def slow_phases(
    results: Results, args: argparse.Namespace, plan: Plan, scratch: Path, questions: list[str]
) -> None:
    """The slow fake LLM: c=16 on SQLite (with the liveness probe), then on PostgreSQL."""
    with FakeLLM(SLOW_FAKE, log=scratch / "fake.log") as fake:
        async with phase(results, "slow_sqlite"):
            store = stores.sqlite_store(scratch)
            await slow_run(results, store, fake, questions, plan, scratch, probe=True)
        if args.skip_postgres:
            skip(results, "slow_postgresql", "--skip-postgres")
            return
        async with phase(results, "slow_postgresql"):
            problem = await stores.postgres_problem(TEST_DATABASE_URL)
            if problem is not None:
                raise Unavailable(f"PostgreSQL is not reachable ({problem})")
            async with stores.postgres_store(TEST_DATABASE_URL, scratch) as store:
                ingestion = await stores.migrate_and_ingest(store, fake.base_url, args.corpus)
                results["ingestion"]["postgresql"] = asdict(ingestion)
                say(ingestion_line(ingestion))
                await slow_run(results, store, fake, questions, plan, scratch, probe=False)


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


async def run(results: Results, args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def interrupt() -> None:
        # The first Ctrl-C (or SIGTERM) cancels the run; later ones must not cut the cleanup.
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            say("Interrupted: stopping the servers and removing the scratch stores...")
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, interrupt)
    plan = Plan.of(args.quick)
    results["options"] = {
        **asdict(plan),
        "quick": args.quick,
        "levels": LEVELS,
        "fakes": {"instant": asdict(INSTANT_FAKE), "slow": asdict(SLOW_FAKE)},
        "embedding_dimensions": stores.EMBEDDING_DIMENSIONS,
    }
    with ExitStack() as stack:
        scratch = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bookchat-bench-", ignore_cleanup_errors=True)
            )
        )
        questions = await instant_phases(results, args, plan, scratch, stack)
        if questions is None:
            return
        await slow_phases(results, args, plan, scratch, questions)
        await sse_phase(results, plan, scratch, questions)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (fewer requests)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="the docs folder")
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results folder")
    parser.add_argument(
        "--profile", type=Path, help="run c=16 once more under py-spy, writing to this folder"
    )
    parser.add_argument("--skip-postgres", action="store_true")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if not args.corpus.is_dir():
        say(
            f"The benchmarks need the textbook-a corpus at {args.corpus} (../shared/corpus/"
            "textbook-a next to the repository); it is not there, so nothing was measured."
        )
        return 0
    for name in [key for key in os.environ if key.upper() in SETTING_NAMES]:
        del os.environ[name]  # the in-process ingestion reads the environment too
    configure_logging("WARNING", "console")
    results: Results = {
        "machine": machine_info(),
        "skipped": {},
        "ingestion": {},
        "chat_instant": [],
        "slow_c16": {},
        "peak_rss_mb": {},
    }
    started = time.perf_counter()
    code = 0
    try:
        asyncio.run(run(results, args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("Interrupted: cleaned up; no results written.")
        return 130
    except Exception as exc:  # the harness itself broke: report what was measured, then fail
        traceback.print_exc()
        results["skipped"]["harness"] = f"{type(exc).__name__}: {exc}"
        code = 1
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["seconds"] = round(time.perf_counter() - started, 1)
    rows = report.budgets(results)
    report.write_json(results, rows, args.output / "latest.json")
    report.write_chart(results, args.output / "latest.png")
    say("\n" + report.table(rows) + report.extras(results))
    say(f"\nWrote {args.output / 'latest.json'} and latest.png in {results['seconds']} s.")
    return code


if __name__ == "__main__":
    sys.exit(main())
