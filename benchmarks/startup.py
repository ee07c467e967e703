"""CLI start-up: `bookchat --help`, `bookchat migrate` at head and an unchanged re-ingest of the
corpus, each a fresh process timed from spawn to exit (the median of a few runs).

Measured as installed: with the modules' bytecode cached, as pip, uv and the Docker image
(`UV_COMPILE_BYTECODE=1`) leave it, or as Python writes it on a first run. The bytecode goes to
a scratch `PYTHONPYCACHEPREFIX`, so the virtual environment is left as it is. Also reported,
outside the budget: the same commands compiling every module from source on each start (what
an environment with `PYTHONDONTWRITEBYTECODE=1` and no compiled install pays).

Runs against the SQLite store the ingestion phase filled (no server may hold its embedded Qdrant
then), with the servers' configuration: an unchanged re-ingest must not need the embedder, so
the fake LLM it points at is never called.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import report, stores
from benchmarks.fake_llm import FakeLLM
from benchmarks.phases import INSTANT_FAKE, Results, phase, say
from benchmarks.server import clean_environment

RUNS = 3
TIMEOUT = 120.0
# What each measured command is, with the limit in seconds (issue 16).
COMMANDS: dict[str, tuple[tuple[str, ...], float]] = {
    "help": (("--help",), 1.5),
    "migrate": (("migrate",), 1.5),
    "ingest_unchanged": (("ingest",), 2.5),
}
LABELS = {
    "help": "`bookchat --help` start-up",
    "migrate": "`bookchat migrate` on an up-to-date database",
    "ingest_unchanged": "`bookchat ingest` of textbook-a, unchanged",
}


def timed_run(arguments: tuple[str, ...], env: dict[str, str], workdir: Path) -> float:
    """Wall seconds of `python -m bookchat.cli *arguments`; a failure raises with its output."""
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "bookchat.cli", *arguments],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"bookchat {' '.join(arguments)} failed: {done.stderr[-500:]}")
    if arguments == ("ingest",) and "Nothing changed" not in done.stderr + done.stdout:
        raise RuntimeError(f"the re-ingest was not unchanged: {done.stderr[-500:]}")
    return seconds


async def startup_phase(results: Results, scratch: Path, corpus: Path) -> None:
    """Time each command RUNS times (after one unmeasured run that warms the file cache)."""
    async with phase(results, "startup"):
        store = stores.sqlite_store(scratch)
        with FakeLLM(INSTANT_FAKE, log=scratch / "fake-startup.log") as fake:
            env = clean_environment(
                {
                    **stores.server_settings(store, fake.base_url, None),
                    "BOOK_DOCS_DIR": str(corpus),
                }
            )
            compiled = {
                **without_bytecode_switch(env),
                "PYTHONPYCACHEPREFIX": str(scratch / "pycache"),
            }
            from_source = {
                **env,
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONPYCACHEPREFIX": str(scratch / "pycache-empty"),
            }
            measured: dict[str, Any] = {"runs": RUNS}
            for name, (arguments, _) in COMMANDS.items():
                timed_run(arguments, compiled, scratch)  # warms the file cache, writes bytecode
                seconds = [timed_run(arguments, compiled, scratch) for _ in range(RUNS)]
                uncompiled = [timed_run(arguments, from_source, scratch) for _ in range(RUNS)]
                measured[name] = {
                    "median_seconds": round(statistics.median(seconds), 3),
                    "seconds": [round(s, 3) for s in seconds],
                    "from_source_median_seconds": round(statistics.median(uncompiled), 3),
                }
                say(
                    f"    {LABELS[name]}: median {statistics.median(seconds):.2f} s "
                    f"({statistics.median(uncompiled):.2f} s compiling from source)"
                )
        results["startup"] = measured


def without_bytecode_switch(env: dict[str, str]) -> dict[str, str]:
    """`env` without PYTHONDONTWRITEBYTECODE (set here by the sandbox, not by installs)."""
    return {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}


def startup_budgets(results: Results) -> list[report.Budget]:
    """One row per command (bytecode cached, as installed), against the issue's limits; the
    time compiling from source is shown beside it."""
    skip = report._missing(results, "startup")
    rows = []
    for name, (_, limit) in COMMANDS.items():
        row = report._at_most(
            f"{LABELS[name]} (bytecode cached)",
            limit,
            report._get(results, "startup", name, "median_seconds"),
            "s",
            skip,
        )
        source = report._get(results, "startup", name, "from_source_median_seconds")
        if row.met is not None and source is not None:
            row = report.Budget(
                row.what, row.budget, f"{row.measured} ({source:.1f} s from source)", row.met
            )
        rows.append(row)
    return rows
