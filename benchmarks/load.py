"""The load generator: closed-loop chat clients, a liveness probe, SSE first-token timing."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped, unused-ignore]

CHAT = "/api/v1/chat"
STREAM = "/api/v1/chat/stream"
LIVE = "/api/v1/health/live"
TIMEOUT = httpx.Timeout(60.0)


def load_questions(path: Path) -> list[str]:
    """The answerable questions of a question set (those with pages to find)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row["question"] for row in rows if row.get("pages")]


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (0-100) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "mean": sum(ms) / len(ms) if ms else float("nan"),
        "max": max(ms, default=float("nan")),
        "count": len(ms),
    }


@dataclass(slots=True)
class Sample:
    seconds: float
    status: int  # 0: no response (timeout, connection error)
    mode: str | None = None
    error: str | None = None


@dataclass(slots=True)
class LevelResult:
    """One closed-loop run: `concurrency` clients sending `requests` chats in all."""

    label: str
    concurrency: int
    samples: list[Sample] = field(default_factory=list)
    wall_seconds: float = 0.0
    server_cpu_seconds: float | None = None  # the server process's CPU over the recorded part
    machine_busy_percent: float | None = None  # every core, every process (others' work too)

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.status == 200]

    @property
    def errors(self) -> int:
        return len(self.samples) - len(self.ok)

    @property
    def throughput(self) -> float:
        """Answers (200s) per second of wall time."""
        return len(self.ok) / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        failures = Counter(s.error or str(s.status) for s in self.samples if s.status != 200)
        return {
            "label": self.label,
            "concurrency": self.concurrency,
            "requests": len(self.samples),
            "errors": self.errors,
            "error_kinds": dict(failures.most_common(5)),
            "modes": dict(Counter(s.mode for s in self.ok)),
            "wall_seconds": self.wall_seconds,
            "throughput_per_s": self.throughput,
            "latency_ms": summary_ms([s.seconds for s in self.ok]),
            "server_cpu_ms_per_request": (
                1000 * self.server_cpu_seconds / len(self.samples)
                if self.server_cpu_seconds is not None and self.samples
                else None
            ),
            "server_cpu_percent_of_one_core": (
                100 * self.server_cpu_seconds / self.wall_seconds
                if self.server_cpu_seconds is not None and self.wall_seconds
                else None
            ),
            "machine_busy_percent": self.machine_busy_percent,
        }


def _client(concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(limits=limits, timeout=TIMEOUT)


async def _ask(client: httpx.AsyncClient, url: str, question: str) -> Sample:
    started = time.perf_counter()
    try:
        response = await client.post(url, json={"message": question})
    except httpx.HTTPError as exc:
        return Sample(time.perf_counter() - started, 0, error=type(exc).__name__)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        return Sample(elapsed, response.status_code)
    return Sample(elapsed, 200, mode=response.json().get("mode"))


async def _drive(
    client: httpx.AsyncClient, url: str, questions: Iterator[str], total: int, concurrency: int
) -> tuple[list[Sample], float]:
    """Send `total` chats from `concurrency` closed-loop clients; the samples and wall time."""
    remaining = iter(range(total))
    samples: list[Sample] = []

    async def worker() -> None:
        for _ in remaining:
            samples.append(await _ask(client, url, next(questions)))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(total, 1)))))
    return samples, time.perf_counter() - started


async def run_level(
    base_url: str,
    questions: Sequence[str],
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    label: str = "",
    server_pid: int | None = None,
) -> LevelResult:
    """`warmup` unrecorded requests, then `requests` recorded ones, from `concurrency` clients
    that each send the next question as soon as their previous answer is in; with
    `server_pid`, also the server's CPU time and the machine's load over the recorded part."""
    cycle = itertools.cycle(questions)
    async with _client(concurrency) as client:
        await _drive(client, base_url + CHAT, cycle, warmup, concurrency)
        before = _cpu(server_pid)
        samples, wall = await _drive(client, base_url + CHAT, cycle, requests, concurrency)
        after = _cpu(server_pid)
    result = LevelResult(label or f"c={concurrency}", concurrency, samples, wall)
    if before is not None and after is not None:
        result.server_cpu_seconds = after[0] - before[0]
        busy, idle = after[1] - before[1], after[2] - before[2]
        result.machine_busy_percent = 100 * busy / (busy + idle) if busy + idle else None
    return result


def _cpu(pid: int | None) -> tuple[float, float, float] | None:
    """The process's CPU seconds, and the machine's busy and idle seconds (all cores)."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    machine = psutil.cpu_times()._asdict()
    idle = machine["idle"] + machine.get("iowait", 0.0)
    # guest time is already counted in user time
    total = sum(v for k, v in machine.items() if not k.startswith("guest"))
    return process.user + process.system, total - idle, idle


async def rag_questions(base_url: str, questions: Sequence[str]) -> tuple[list[str], Counter[str]]:
    """Ask every question once (the warm-up); keep those answered from the book by the model
    (`mode == "rag"`), so every measured request calls the fake LLM."""
    modes: Counter[str] = Counter()
    kept: list[str] = []
    async with _client(4) as client:
        semaphore = asyncio.Semaphore(4)

        async def check(question: str) -> None:
            async with semaphore:
                sample = await _ask(client, base_url + CHAT, question)
            modes[sample.mode or f"error {sample.error or sample.status}"] += 1
            if sample.mode == "rag":
                kept.append(question)

        await asyncio.gather(*(check(q) for q in questions))
    order = {q: i for i, q in enumerate(questions)}
    return sorted(kept, key=order.__getitem__), modes


async def probe_liveness(base_url: str, stop: asyncio.Event, interval: float = 0.05) -> list[float]:
    """GET /health/live every `interval` until `stop`; the latencies (failures count as 60 s)."""
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = await client.get(base_url + LIVE)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            elapsed = time.perf_counter() - started
            latencies.append(elapsed if ok else TIMEOUT.read or 60.0)
            await asyncio.sleep(max(0.0, interval - elapsed))
    return latencies


@dataclass(slots=True)
class StreamResult:
    """Per streamed answer: our first `token` event minus the fake's first token send."""

    deltas: list[float] = field(default_factory=list)
    unpaired: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "paired": len(self.deltas),
            "unpaired": self.unpaired,
            "errors": self.errors,
            "first_token_delay_ms": summary_ms(self.deltas),
        }


async def _first_token_time(client: httpx.AsyncClient, url: str, question: str) -> float | None:
    """Stream one answer to its end; time.time() when its first `event: token` line came."""
    first: float | None = None
    async with client.stream("POST", url, json={"message": question}) as response:
        if response.status_code != 200:
            raise httpx.HTTPStatusError(
                "stream failed", request=response.request, response=response
            )
        async for line in response.aiter_lines():
            if first is None and line.strip() == "event: token":
                first = time.time()
    return first


async def stream_first_tokens(
    base_url: str,
    questions: Sequence[str],
    *,
    requests: int,
    fake_times: Callable[[], list[float]],
) -> StreamResult:
    """Stream `requests` answers one after the other; pair each first `token` event with the
    fake's record of sending that answer's first token (same machine, same clock)."""
    result = StreamResult()
    cycle = itertools.cycle(questions)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for _ in range(requests):
            before = len(await asyncio.to_thread(fake_times))
            try:
                ours = await _first_token_time(client, base_url + STREAM, next(cycle))
            except httpx.HTTPError:
                result.errors += 1
                continue
            sent = await asyncio.to_thread(fake_times)
            if ours is None or len(sent) != before + 1:
                result.unpaired += 1  # no model call, or not exactly one
                continue
            result.deltas.append(ours - sent[-1])
    return result
