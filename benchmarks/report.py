"""The budgets of DESIGN.md section 10 against the measurements; JSON, chart and table."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt

Results = dict[str, Any]
MEASURED_WIDTH = 60  # longer reasons are cut in the table (latest.json has them whole)


@dataclass(frozen=True, slots=True)
class Budget:
    what: str
    budget: str
    measured: str
    met: bool | None  # None: not measured (the reason is in `measured`)


def _get(results: Results, *path: str) -> Any:
    """results[path...], or None when any step is missing."""
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _level(results: Results, concurrency: int) -> dict[str, Any] | None:
    for level in results.get("chat_instant") or []:
        if level.get("concurrency") == concurrency:
            found: dict[str, Any] = level
            return found
    return None


def _missing(results: Results, key: str) -> str:
    reason = _get(results, "skipped", key)
    return f"not measured: {reason}" if reason else "not measured"


def _at_most(what: str, budget: float, value: float | None, unit: str, skip: str) -> Budget:
    if value is None or math.isnan(value):
        return Budget(what, f"<= {budget:g} {unit}", skip, None)
    return Budget(what, f"<= {budget:g} {unit}", f"{value:.1f} {unit}", value <= budget)


def _throughput(what: str, budget: float, level: dict[str, Any] | None, skip: str) -> Budget:
    rule = f">= {budget:g}/s" + (", 0 errors" if "LLM" in what else "")
    if level is None:
        return Budget(what, rule, skip, None)
    value, errors = level["throughput_per_s"], level["errors"]
    met = value >= budget and (errors == 0 or "LLM" not in what)
    return Budget(what, rule, f"{value:.1f}/s, {errors} errors", met)


def budgets(results: Results) -> list[Budget]:
    """Every section-10 budget with its measured value (or why it was not measured)."""
    c1 = _get(_level(results, 1) or {}, "latency_ms")
    c16 = _level(results, 16)
    rows = [
        _at_most(
            "POST /chat server time beyond the LLM (c=1), p50",
            20,
            _get(c1 or {}, "p50"),
            "ms",
            _missing(results, "chat_instant"),
        ),
        _at_most(
            "POST /chat server time beyond the LLM (c=1), p95",
            50,
            _get(c1 or {}, "p95"),
            "ms",
            _missing(results, "chat_instant"),
        ),
        _throughput(
            "throughput, 16 clients, instant fake, SQLite",
            85,
            _get(results, "classroom", "sqlite", "instant") or c16,
            _missing(results, "chat_instant"),
        ),
    ]
    for store in ("sqlite", "postgresql"):
        rows.append(
            _throughput(
                f"throughput, 16 clients, slow fake LLM, {store}",
                6.6,
                _get(results, "classroom", store, "slow"),
                _missing(results, f"classroom_{store}"),
            )
        )
    rows += classroom_budgets(results)
    rows += [
        _at_most(
            "SSE: first token event after the fake's first token, p50",
            25,
            _get(results, "sse", "first_token_delay_ms", "p50"),
            "ms",
            _missing(results, "sse"),
        ),
        _at_most(
            "GET /health/live while 16 chats are in flight, p95",
            20,
            _get(results, "liveness_ms", "p95"),
            "ms",
            _missing(results, "slow_sqlite"),
        ),
        _at_most(
            "ingest textbook-a from scratch",
            15,
            _get(results, "ingestion", "sqlite", "scratch_seconds"),
            "s",
            _missing(results, "ingestion"),
        ),
        _at_most(
            "ingest textbook-a unchanged",
            2,
            _get(results, "ingestion", "sqlite", "unchanged_seconds"),
            "s",
            _missing(results, "ingestion"),
        ),
    ]
    hybrid = _get(results, "ingestion", "offline", "hybrid_hit_at_5")
    rows.append(
        Budget(
            "retrieval hit@5, hybrid (the offline profile's all-MiniLM-L6-v2)",
            ">= 0.90",
            f"{hybrid:.3f}"
            if hybrid is not None
            else "not here: the offline profile had no model (the `minilm` extra)",
            hybrid >= 0.90 if hybrid is not None else None,
        )
    )
    rows += fairness_budgets(results)
    bm25 = _get(results, "ingestion", "sqlite", "bm25_hit_at_5")
    rows.append(
        Budget(
            "retrieval hit@5, BM25 only",
            ">= 0.80",
            f"{bm25:.3f}" if bm25 is not None else _missing(results, "ingestion"),
            bm25 >= 0.80 if bm25 is not None else None,
        )
    )
    return rows


def _ratio(what: str, limit: float, value: float | None, idle: float | None, skip: str) -> Budget:
    """`value` against `limit` times its `idle` counterpart."""
    if value is None or idle is None or math.isnan(value) or math.isnan(idle) or not idle:
        return Budget(what, f"<= {limit:g}x idle", skip, None)
    measured = f"{value:.0f} ms vs {idle:.0f} ms idle ({value / idle:.2f}x)"
    return Budget(what, f"<= {limit:g}x idle", measured, value <= limit * idle)


def classroom_budgets(results: Results) -> list[Budget]:
    """The embedded default under a classroom's load (benchmarks/classroom.py), medians."""
    sqlite = _get(results, "classroom", "sqlite", "instant") or {}
    skip_sqlite = _missing(results, "classroom_sqlite")
    rows = [
        _at_most(
            "16 clients, instant fake, SQLite: latency p95 (median of runs)",
            400,
            _get(sqlite, "latency_ms", "p95"),
            "ms",
            skip_sqlite,
        ),
        _at_most(
            "16 clients, instant fake, SQLite: latency max (median of runs)",
            1000,
            _get(sqlite, "latency_ms", "max"),
            "ms",
            skip_sqlite,
        ),
    ]
    for store in ("sqlite", "postgresql"):
        slow = _get(results, "classroom", store, "slow") or {}
        share = _get(slow, "share_of_limit")
        what = f"16 clients, slow fake LLM, {store}: share of the limit (16 / answer time)"
        if share is None:
            rows.append(Budget(what, ">= 95%", _missing(results, f"classroom_{store}"), None))
        else:
            measured = f"{100 * share:.1f}% ({slow['throughput_per_s']:.2f}/s of "
            measured += f"{slow['limit_per_s']:.2f}/s), {slow['errors']} errors"
            rows.append(Budget(what, ">= 95%", measured, share >= 0.95 and not slow["errors"]))
    rows.append(
        _at_most(
            "server CPU per answer, instant fake, hybrid, PostgreSQL",
            12,
            _get(results, "classroom", "postgresql", "instant", "server_cpu_ms_per_request"),
            "ms",
            _missing(results, "classroom_postgresql"),
        )
    )
    rows.append(
        _at_most(
            "peak RSS of the offline profile's server (16 clients)",
            220,
            _get(results, "classroom", "offline", "peak_rss_mb"),
            "MB",
            _missing(results, "classroom_offline"),
        )
    )
    return rows


def fairness_budgets(results: Results) -> list[Budget]:
    """The fair-share rows (benchmarks/fairness.py): stalled streams and a search flood."""
    stalled = _get(results, "stalled_streams") or {}
    one_client = next((c for c in stalled.get("cases", []) if c.get("clients") == 1), {})
    skip = _missing(results, "stalled_streams")
    flood = _get(results, "search_flood") or {}
    reported = next(iter(flood.get("floods", [])), {})
    return [
        _ratio(
            "64 never-reading streams (one client): a fresh first token, p95",
            2,
            _get(one_client, "first_token_ms", "p95"),
            _get(stalled, "idle", "first_token_ms", "p95"),
            skip,
        ),
        _at_most(
            "64 never-reading streams (one client): /health/live p95",
            50,
            _get(one_client, "liveness_ms", "p95"),
            "ms",
            skip,
        ),
        _ratio(
            f"search flood ({reported.get('flood', 'one client')}): others' search p95",
            2,
            _get(reported, "latency_ms", "p95"),
            _get(flood, "idle", "latency_ms", "p95"),
            _missing(results, "search_flood"),
        ),
    ]


# The chat's server-time budget (DESIGN.md section 10), which 20 books must keep for search too.
CHAT_P50_MS, CHAT_P95_MS = 20.0, 50.0
BOOK_PROFILES = {"hybrid": "hybrid (fake embeddings)", "bm25": "BM25 only"}


def books_budgets(results: Results) -> list[Budget]:
    """20 books in one collection (benchmarks/books.py): search and chat server time (c=1)
    within the chat's budget, with the ratio to one book."""
    rows = []
    rule = f"p50 <= {CHAT_P50_MS:g} ms, p95 <= {CHAT_P95_MS:g} ms"
    for profile, label in BOOK_PROFILES.items():
        case = _get(results, "books", "profiles", profile) or {}
        for route, path in (("search", "GET .../content/search"), ("chat", "POST .../chat")):
            what = f"20 books, {label}: {path} (c=1)"
            many = _get(case, "twenty_books", route, "latency_ms") or {}
            one = _get(case, "one_book", route, "latency_ms") or {}
            p50, p95, base = many.get("p50"), many.get("p95"), one.get("p50")
            if p50 is None or p95 is None or math.isnan(p50) or math.isnan(p95):
                rows.append(Budget(what, rule, _missing(results, f"books_{profile}"), None))
                continue
            measured = f"p50 {p50:.1f}, p95 {p95:.1f} ms"
            if base is not None and not math.isnan(base) and base:
                measured += f"; {p50 / base:.1f}x 1 book's p50"
            met = p50 <= CHAT_P50_MS and p95 <= CHAT_P95_MS
            rows.append(Budget(what, rule, measured, met))
    return rows


def books_lines(results: Results) -> list[str]:
    """The books phase in full: 1 and 20 books, both routes, both profiles."""
    books = results.get("books") or {}
    lines = []
    for profile, case in (books.get("profiles") or {}).items():
        lines.append(f"books, {BOOK_PROFILES.get(profile, profile)} ({case.get('profile')}):")
        for key in ("one_book", "twenty_books"):
            measured = case.get(key)
            if not measured:
                continue
            for route in ("search", "chat"):
                lat = measured[route]["latency_ms"]
                server = measured[route].get("server_reported_ms")
                lines.append(
                    f"  {measured['books']:>2} book(s) {route:<6} p50 {lat['p50']:7.1f} ms  "
                    f"p95 {lat['p95']:7.1f} ms  p99 {lat['p99']:7.1f} ms  "
                    f"errors {measured[route]['errors']}"
                    + (f"  (server's latency_ms p50 {server['p50']:.0f})" if server else "")
                )
            lines.append(
                f"  {measured['books']:>2} book(s) first search of each book: p50 "
                f"{measured['first_search_per_book_ms']['p50']:.1f} ms, max "
                f"{measured['first_search_per_book_ms']['max']:.1f} ms; peak RSS "
                f"{measured['peak_rss_mb']:.0f} MB"
            )
        ratio = case.get("ratio")
        if ratio:
            lines.append(
                "  20 books / 1 book: "
                + ", ".join(
                    f"{key.replace('_', ' ')} {value:.2f}x"
                    for key, value in ratio.items()
                    if value is not None
                )
            )
        ingestion = case.get("ingestion") or {}
        more = ingestion.get("more_books")
        if more:
            lines.append(
                f"  ingestion: book-01 {ingestion['first_book']['seconds']:.2f} s, "
                f"{more['books']} more in {more['seconds']:.1f} s (median "
                f"{more['median_seconds_per_book']:.2f} s, last {more['last_book_seconds']:.2f} s)"
            )
    return lines


def table(rows: list[Budget]) -> str:
    """A plain-text table: budget, measured value, met / not met."""
    header = ("budget (DESIGN.md section 10)", "limit", "measured", "result")
    lines = [
        (
            row.what,
            row.budget,
            row.measured if len(row.measured) <= MEASURED_WIDTH else row.measured[:57] + "...",
            {True: "met", False: "NOT MET", None: "-"}[row.met],
        )
        for row in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(4)]
    rule = "  ".join("-" * w for w in widths)
    out = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), rule]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.append(rule)
    return "\n".join(out)


def _rounded(values: Any) -> str:
    return " ".join(f"{v:.2f}" for v in values) if values else "?"


def extras(results: Results) -> str:
    """Other numbers worth a glance: every level, Redis, memory, the profile."""
    lines = ["", "chat, instant fake LLM (SQLite):"]
    for level in results.get("chat_instant") or []:
        lat, cpu = level["latency_ms"], level.get("server_cpu_ms_per_request")
        lines.append(
            f"  c={level['concurrency']:<3} {level['throughput_per_s']:7.1f}/s  "
            f"p50 {lat['p50']:7.1f} ms  p95 {lat['p95']:7.1f} ms  p99 {lat['p99']:7.1f} ms  "
            f"errors {level['errors']}"
            + (f"  server CPU {cpu:.1f} ms/request" if cpu is not None else "")
            + (
                f"  machine {level['machine_busy_percent']:.0f}% busy"
                if level.get("machine_busy_percent") is not None
                else ""
            )
        )
    redis = results.get("redis_c16")
    if redis:
        lines.append(
            f"  c=16 with Redis: {redis['throughput_per_s']:.1f}/s, "
            f"p95 {redis['latency_ms']['p95']:.1f} ms, errors {redis['errors']}"
        )
    for label, case in (results.get("classroom") or {}).items():
        for kind in ("instant", "slow"):
            run = case.get(kind)
            if not run:
                continue
            lat, cpu = run["latency_ms"], run.get("server_cpu_ms_per_request")
            lines.append(
                f"  c=16 {kind} {label}, median of {len(run['runs'])}: "
                f"{run['throughput_per_s']:.1f}/s, p50 {lat['p50']:.1f} ms, "
                f"p95 {lat['p95']:.1f} ms, max {lat['max']:.1f} ms, errors {run['errors']}"
                + (f", server CPU {cpu:.1f} ms/answer" if cpu is not None else "")
            )
    machine = results.get("machine", {})
    lines.append(
        f"machine: {machine.get('cpu_count')} CPUs, load average at start "
        f"{_rounded(machine.get('load_average_at_start'))}, a fixed Python loop took "
        f"{machine.get('python_loop_ms_at_start')} ms at start and "
        f"{machine.get('python_loop_ms_at_end')} ms at the end (lower is a faster machine)"
    )
    lines += books_lines(results)
    for name, mb in (results.get("peak_rss_mb") or {}).items():
        lines.append(f"peak RSS of the server ({name}): {mb:.0f} MB")
    for key, reason in (results.get("skipped") or {}).items():
        lines.append(f"skipped {key}: {reason}")
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """The value with NaN (an empty sample) as null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write_json(results: Results, rows: list[Budget], path: Path) -> None:
    payload = _finite({**results, "budgets": [asdict(row) for row in rows]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def write_chart(results: Results, path: Path) -> None:
    """Latency p50/p95/p99 and throughput by concurrency (instant fake LLM, SQLite)."""
    levels = results.get("chat_instant") or []
    if not levels:
        return
    concurrency = [level["concurrency"] for level in levels]
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        latency.plot(concurrency, [lv["latency_ms"][key] for lv in levels], style, label=key)
    latency.axhline(20, color="grey", linestyle=":", label="budget p50 (c=1)")
    latency.axhline(50, color="grey", linestyle="--", label="budget p95 (c=1)")
    latency.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="latency (ms)")
    latency.set_title("POST /api/v1/chat latency")
    throughput.plot(concurrency, [lv["throughput_per_s"] for lv in levels], "o-", label="SQLite")
    redis = results.get("redis_c16")
    if redis:
        throughput.plot([16], [redis["throughput_per_s"]], "D", label="SQLite + Redis")
    throughput.axhline(85, color="grey", linestyle="--", label="budget at c=16")
    throughput.set(xscale="log", xlabel="concurrent clients", ylabel="answers / s", ylim=(0, None))
    throughput.set_title("throughput, instant fake LLM")
    for axes in (latency, throughput):
        axes.set_xticks(concurrency, [str(c) for c in concurrency])
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    machine = results.get("machine", {})
    figure.suptitle(
        f"bookchat {str(machine.get('git_commit', ''))[:10]}, "
        f"{machine.get('cpu_count')} CPUs, one worker",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
