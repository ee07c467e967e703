"""Write docs/configuration.md from the Settings class, so the reference cannot drift.

python scripts/configuration_docs.py          # rewrite the file (`make docs`)
python scripts/configuration_docs.py --check  # exit 1 when the file is out of date
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from bookchat.core.config import Settings

TARGET = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# Sections of the reference, in order: title, one line of context, the settings it lists.
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Runtime and serving",
        "How the process runs, stops and reports.",
        (
            "environment",
            "log_level",
            "log_format",
            "migrate_on_start",
            "shutdown_timeout_seconds",
            "http_header_timeout_seconds",
            "http_body_timeout_seconds",
            "metrics_enabled",
            "metrics_token",
        ),
    ),
    (
        "Database",
        "The source of truth: sessions, messages, users, documents and chunks.",
        (
            "database_url",
            "database_pool_size",
            "database_connect_timeout_seconds",
            "database_command_timeout_seconds",
            "database_pool_timeout_seconds",
            "database_echo",
        ),
    ),
    (
        "Vector index (Qdrant)",
        "The search index, rebuilt from the database by `bookchat reindex`.",
        (
            "qdrant_url",
            "qdrant_api_key",
            "qdrant_path",
            "qdrant_collection",
            "qdrant_timeout_seconds",
        ),
    ),
    (
        "Embeddings",
        "Dense retrieval. BM25 lexical retrieval is always on.",
        (
            "embeddings_provider",
            "embeddings_model",
            "embeddings_model_path",
            "embeddings_dimensions",
            "embeddings_download_timeout_seconds",
            "embeddings_query_timeout_seconds",
            "embeddings_retry_after_seconds",
            "fastembed_cache_dir",
        ),
    ),
    (
        "The book and retrieval",
        "What is ingested, where citations point, how passages are chosen.",
        (
            "book_docs_dir",
            "book_docs_root",
            "book_base_url",
            "retrieval_top_k",
            "retrieval_candidates",
            "retrieval_dense_memory_mb",
            "retrieval_min_term_coverage",
            "retrieval_max_unknown_share",
            "retrieval_min_dense_score",
            "rerank_min_score",
            "reranker",
            "rerank_model",
            "rerank_model_path",
            "admin_api_key",
            "ingest_jobs_enabled",
            "max_upload_bytes",
        ),
    ),
    (
        "Language model",
        "Any OpenAI-compatible chat model, Anthropic's Claude, or the offline extractive answerer.",
        (
            "llm_provider",
            "llm_model",
            "openai_api_key",
            "openai_base_url",
            "anthropic_api_key",
            "anthropic_base_url",
            "llm_timeout_seconds",
            "llm_max_retries",
            "chat_turn_timeout_seconds",
            "llm_temperature",
            "llm_max_tokens",
        ),
    ),
    (
        "Chat",
        "Questions, history and streams.",
        (
            "book_title",
            "history_messages",
            "history_token_budget",
            "max_message_chars",
            "max_selected_text_chars",
            "sse_ping_seconds",
            "max_streams_per_client",
            "stream_max_seconds",
            "stream_send_timeout_seconds",
            "conversation_retention_days",
            "chatkit_domain_key",
        ),
    ),
    (
        "HTTP and security",
        "Browsers, body sizes and proxies.",
        ("cors_origins", "cors_allow_credentials", "max_request_bytes", "trusted_proxies"),
    ),
    (
        "Accounts",
        "Sign-in with bookchat's own accounts or a Better-Auth site's tokens.",
        (
            "jwt_secret",
            "access_token_minutes",
            "better_auth_jwks_url",
            "better_auth_issuer",
            "better_auth_audience",
            "require_auth_for_chat",
        ),
    ),
    (
        "Personalized and translated chapters",
        "Chapters rewritten by the language model, cached per variant.",
        (
            "allow_anonymous_personalization",
            "generation_concurrency",
            "generation_section_tokens",
            "generation_timeout_seconds",
            "allow_anonymous_chapter_content",
        ),
    ),
    (
        "Insights",
        "What readers ask, for admins (docs/insights.md).",
        ("insights_reader_salt",),
    ),
    (
        "Token budgets",
        "What readers' model calls may cost per UTC day; sizing in docs/operations.md.",
        ("token_budget_reader_daily", "token_budget_anonymous_daily"),
    ),
    (
        "Redis, rate limits and caches",
        "Shared by every replica through Redis; in the process without it.",
        (
            "redis_url",
            "rate_limit_chat",
            "rate_limit_login",
            "rate_limit_generation",
            "rate_limit_search",
            "rate_limit_feedback",
            "max_search_terms",
            "search_concurrency",
            "search_concurrency_per_client",
            "search_wait_seconds",
            "answer_cache_ttl_seconds",
        ),
    ),
)

HEADER = """\
# Configuration

<!-- Generated from bookchat.core.config.Settings by scripts/configuration_docs.py
     (`make docs`). Do not edit by hand: a test fails when this file and the code differ. -->

Every setting is an environment variable, also read from a `.env` file in the working
directory (names are case-insensitive; the environment wins over `.env`). With none set,
bookchat runs offline: SQLite and embedded Qdrant in `./data`, BM25 retrieval, the extractive
answerer. `.env.example` lists the same settings with their defaults, ready to copy.

An invalid value stops the process with one line per problem, for example
`RATE_LIMIT_CHAT: Value error, '20 per minute' is not a rate limit; write it like 20/minute`.
Secrets (`*_KEY`, `*_SECRET`, `*_TOKEN`, `DATABASE_URL`, `REDIS_URL`) are never logged.
"""


def default_text(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`{','.join(value)}`" if value else "empty"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def limits_text(field: FieldInfo) -> str:
    """The bounds a value must respect (`1 to 200`, `> 0`), from the field's constraints."""
    bounds: dict[str, Any] = {}
    for item in field.metadata:
        for name in ("ge", "gt", "le", "lt", "pattern"):
            found = getattr(item, name, None)
            if found is not None:
                bounds[name] = found
    low = ("ge", "≥") if "ge" in bounds else ("gt", ">") if "gt" in bounds else None
    high = ("le", "≤") if "le" in bounds else ("lt", "<") if "lt" in bounds else None
    parts = []
    if low and high and low[0] == "ge" and high[0] == "le":
        parts.append(f"{bounds['ge']} to {bounds['le']}")
    else:
        parts.extend(f"{sign} {bounds[key]}" for key, sign in filter(None, (low, high)))
    if "pattern" in bounds:
        parts.append(f"matches `{bounds['pattern']}`")
    return ", ".join(parts)


def row(name: str, field: FieldInfo) -> str:
    description = " ".join((field.description or "").split())
    limits = limits_text(field)
    if limits:
        description += f" Allowed: {limits}."
    description = description.replace("|", "\\|")  # a pipe would end the table cell
    return f"| `{name.upper()}` | {default_text(field)} | {description} |"


def render() -> str:
    fields = Settings.model_fields
    listed = [name for _, _, names in GROUPS for name in names]
    unknown = sorted(set(listed) - set(fields))
    unlisted = sorted(set(fields) - set(listed))
    if unknown or unlisted or len(listed) != len(set(listed)):
        raise SystemExit(
            f"GROUPS in {Path(__file__).name} must list every setting once "
            f"(not settings: {unknown}; missing: {unlisted})"
        )
    lines = [HEADER]
    for title, context, names in GROUPS:
        lines += [f"## {title}", "", context, "", "| Variable | Default | What it does |"]
        lines.append("| --- | --- | --- |")
        lines += [row(name, fields[name]) for name in names]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
