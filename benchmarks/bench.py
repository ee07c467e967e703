"""`make bench`: measure the budgets of DESIGN.md section 10 on this machine.

Starts the fake LLM in a process of its own, ingests `../shared/corpus/textbook-a` into scratch
stores, serves them with `bookchat serve` (one worker) and drives it with closed-loop clients;
writes benchmarks/results/latest.json and latest.png (a --quick run writes quick.json and
quick.png, so it never replaces a full run's results) and prints each budget as met or not.
Missed budgets never fail the run (speed lives here, not in the tests).

    make bench                                                  # the full run
    uv run --group bench python benchmarks/bench.py --quick     # a smoke run, about a minute
    uv run --group bench python benchmarks/bench.py --quick --only books   # one phase alone
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
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `benchmarks` and `tests.fakes`, when run as a script

from benchmarks import books, classroom, fairness, report, startup, stores  # noqa: E402
from benchmarks.partition import partition_budgets, partition_phase  # noqa: E402
from benchmarks.phases import (  # noqa: E402
    INSTANT_FAKE,
    LEVELS,
    SLOW_FAKE,
    Plan,
    Results,
    instant_phases,
    say,
    slow_phases,
    sse_phase,
)
from benchmarks.server import SETTING_NAMES  # noqa: E402
from bookchat.core.logging import configure_logging  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "textbook-a"
DEFAULT_QUESTIONS = ROOT / "benchmarks" / "questions" / "textbook-a.jsonl"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results"
# The phases `--only` runs alone, with their rows of the budget table.
ONLY = {"books": report.books_budgets}


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
        "python_loop_ms_at_start": python_speed_ms(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def python_speed_ms() -> float:
    """Best of 3 timings of a fixed pure-Python loop: this VM's speed varies from hour to hour
    (and with its neighbours), so results from different runs compare through this number."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(2_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


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
        if args.only == "books":
            await books.books_phase(results, args, plan, scratch)
            return
        questions = await instant_phases(results, args, plan, scratch, stack)
        if questions is None:
            return
        await startup.startup_phase(results, scratch, args.corpus)
        await slow_phases(results, plan, scratch, questions)
        await classroom.classroom_phases(results, args, plan, scratch, questions)
        await sse_phase(results, plan, scratch, questions)
        await fairness.fairness_phases(results, scratch, questions)
        await partition_phase(results, args, scratch, questions, quick=args.quick)
        await books.books_phase(results, args, plan, scratch)


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
    parser.add_argument(
        "--only",
        choices=ONLY,
        help="run this phase alone (it makes its own stores); a full run of it writes "
        "latest-<phase>.json, a --quick one quick.json",
    )
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
    results["machine"]["python_loop_ms_at_end"] = python_speed_ms()
    results["seconds"] = round(time.perf_counter() - started, 1)
    rows = report.budgets(results) + partition_budgets(results) + startup.startup_budgets(results)
    rows += report.books_budgets(results)
    # A smoke run must not replace the committed results of a full one, nor one phase alone
    # the results of every phase (a smoke run of one phase is still quick.json).
    name = "quick" if args.quick else "latest"
    if args.only:
        rows = ONLY[args.only](results)
        name = name if args.quick else f"{name}-{args.only}"
    report.write_json(results, rows, args.output / f"{name}.json")
    report.write_chart(results, args.output / f"{name}.png")
    say("\n" + report.table(rows) + report.extras(results))
    say(f"\nWrote {args.output / name}.json and {name}.png in {results['seconds']} s.")
    return code


if __name__ == "__main__":
    sys.exit(main())
