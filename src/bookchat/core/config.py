"""Settings: one class read from the environment and `.env`, names as in DESIGN.md section 8."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/bookchat.db"
# A placeholder that production refuses; long enough that development tokens sign without
# PyJWT's short-key warning.
DEFAULT_JWT_SECRET = "change-me-in-production-not-a-secret-at-all"  # noqa: S105
MIN_JWT_SECRET_BYTES = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class LLMProvider(StrEnum):
    AUTO = "auto"
    OPENAI = "openai"
    EXTRACTIVE = "extractive"


class EmbeddingsProvider(StrEnum):
    AUTO = "auto"
    OPENAI = "openai"
    FASTEMBED = "fastembed"
    SENTENCE_TRANSFORMERS = "sentence-transformers"
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
    )

    environment: Environment = Environment.DEVELOPMENT

    # Serving
    migrate_on_start: bool = False
    shutdown_timeout_seconds: float = Field(default=30.0, ge=0, le=3600)
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None

    # Storage
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_echo: bool = False

    # Vector index (Qdrant): embedded at QDRANT_PATH unless QDRANT_URL names a server
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_path: str = "./data/qdrant"
    qdrant_collection: str = Field(default="bookchat", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    qdrant_timeout_seconds: float = Field(default=10.0, gt=0)

    # Embeddings (dense retrieval); lexical BM25 is always on
    embeddings_provider: EmbeddingsProvider = EmbeddingsProvider.AUTO
    embeddings_model: str | None = None
    embeddings_model_path: str | None = None
    embeddings_dimensions: int | None = Field(default=None, ge=8, le=8192)
    embeddings_download_timeout_seconds: float = Field(default=10.0, ge=0)
    fastembed_cache_dir: str | None = "./data/fastembed"

    # The book
    book_docs_dir: str = "sample_book"
    book_base_url: str = "http://localhost:3000/docs"
    retrieval_top_k: int = Field(default=5, ge=1, le=50)
    retrieval_min_dense_score: float = Field(default=0.3, ge=-1.0, le=1.0)
    retrieval_min_term_coverage: float = Field(default=0.34, ge=0.0, le=1.0)
    admin_api_key: SecretStr | None = None
    ingest_jobs_enabled: bool = True
    max_upload_bytes: int = Field(default=5_000_000, ge=1_000)

    # Language model
    llm_provider: LLMProvider = LLMProvider.AUTO
    llm_model: str = "gpt-4o-mini"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    llm_max_tokens: int = Field(default=800, ge=16, le=16_384)

    # Chat
    book_title: str = "Physical AI & Humanoid Robotics"
    history_messages: int = Field(default=10, ge=0, le=100)
    history_token_budget: int = Field(default=3000, ge=0)
    max_message_chars: int = Field(default=2000, ge=1, le=100_000)
    max_selected_text_chars: int = Field(default=20_000, ge=1, le=200_000)
    sse_ping_seconds: float = Field(default=15.0, gt=0)

    # HTTP
    cors_origins: Annotated[list[str], NoDecode] = ["http://localhost:3000"]
    cors_allow_credentials: bool = True
    max_request_bytes: int = Field(default=1_000_000, ge=1_000)
    trusted_proxies: Annotated[list[str], NoDecode] = []

    # Accounts
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    access_token_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    better_auth_jwks_url: str | None = None
    better_auth_issuer: str | None = None
    better_auth_audience: str | None = None
    require_auth_for_chat: bool = False

    # Personalized and translated chapters
    allow_anonymous_personalization: bool = False
    generation_concurrency: int = Field(default=4, ge=1, le=32)
    generation_section_tokens: int = Field(default=1200, ge=100, le=16_000)
    generation_timeout_seconds: float = Field(default=180.0, gt=0)

    # Redis (shared rate limits and caches for several replicas); in-process without it
    redis_url: SecretStr | None = None
    rate_limit_chat: str = "20/minute"
    rate_limit_login: str = "5/minute"
    rate_limit_generation: str = "10/hour"
    answer_cache_ttl_seconds: int = Field(default=3600, ge=0)

    # Logging
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.CONSOLE

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
        "openai_api_key",
        "openai_base_url",
        "qdrant_url",
        "qdrant_api_key",
        "admin_api_key",
        "embeddings_model",
        "embeddings_model_path",
        "embeddings_dimensions",
        "fastembed_cache_dir",
        "better_auth_jwks_url",
        "better_auth_issuer",
        "better_auth_audience",
        "redis_url",
        "metrics_token",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # `.env.example` ships `OPENAI_API_KEY=` and friends; an empty value means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("rate_limit_chat", "rate_limit_login", "rate_limit_generation")
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
        if "*" in self.cors_origins and self.cors_allow_credentials:
            raise ValueError(
                "ENVIRONMENT=production refuses CORS_ORIGINS=* together with credentials: "
                "list the site origins explicitly or set CORS_ALLOW_CREDENTIALS=false"
            )
        return self

    @property
    def resolved_embeddings_provider(self) -> EmbeddingsProvider:
        """The provider `auto` stands for: OpenAI with a key, else fastembed (if it loads)."""
        if self.embeddings_provider is not EmbeddingsProvider.AUTO:
            return self.embeddings_provider
        if self.openai_api_key:
            return EmbeddingsProvider.OPENAI
        return EmbeddingsProvider.FASTEMBED

    @property
    def resolved_llm_provider(self) -> LLMProvider:
        """The provider `auto` stands for: OpenAI when a key is set, else extractive."""
        if self.llm_provider is not LLMProvider.AUTO:
            return self.llm_provider
        return LLMProvider.OPENAI if self.openai_api_key else LLMProvider.EXTRACTIVE


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
