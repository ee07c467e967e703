"""Settings: environment names, defaults, and the production guards."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bookchat.core.config import LLMProvider, Settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


class TestDefaults:
    def test_embedded_profile_needs_no_configuration(self) -> None:
        s = settings()
        assert s.database_url.get_secret_value() == "sqlite+aiosqlite:///./data/bookchat.db"
        assert s.resolved_llm_provider is LLMProvider.EXTRACTIVE
        assert s.history_messages == 10
        assert s.max_message_chars == 2000
        assert s.cors_origins == ["http://localhost:3000"]

    def test_reads_unprefixed_environment_names(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BOOK_TITLE", "A Robot Book")
        monkeypatch.setenv("HISTORY_MESSAGES", "4")
        monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
        s = settings()
        assert s.book_title == "A Robot Book"
        assert s.history_messages == 4
        assert s.cors_origins == ["https://a.example", "https://b.example"]

    def test_reads_dotenv_file(self, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
        from pathlib import Path

        env = Path(str(tmp_path)) / ".env"
        env.write_text("LLM_MODEL=llama3.1\nOPENAI_API_KEY=\n")
        s = Settings(_env_file=env)
        assert s.llm_model == "llama3.1"
        assert s.openai_api_key is None

    def test_auto_picks_openai_when_a_key_is_set(self) -> None:
        assert settings(openai_api_key="sk-x").resolved_llm_provider is LLMProvider.OPENAI
        assert settings(openai_api_key="  ").resolved_llm_provider is LLMProvider.EXTRACTIVE
        explicit = settings(openai_api_key="sk-x", llm_provider="extractive")
        assert explicit.resolved_llm_provider is LLMProvider.EXTRACTIVE

    def test_auto_picks_anthropic_when_only_its_key_is_set(self) -> None:
        claude = settings(anthropic_api_key="sk-ant-x")
        assert claude.resolved_llm_provider is LLMProvider.ANTHROPIC
        assert claude.resolved_llm_model == "claude-haiku-4-5"
        both = settings(anthropic_api_key="sk-ant-x", openai_api_key="sk-x")
        assert both.resolved_llm_provider is LLMProvider.OPENAI
        assert both.resolved_llm_model == "gpt-4o-mini"
        assert settings(anthropic_api_key="").resolved_llm_provider is LLMProvider.EXTRACTIVE

    def test_secrets_do_not_show_in_repr(self) -> None:
        s = settings(
            openai_api_key="sk-very-secret",
            anthropic_api_key="sk-ant-very-secret",
            database_url="postgresql://u:pw-123@h/d",
        )
        assert "sk-very-secret" not in repr(s)
        assert "sk-ant-very-secret" not in repr(s)
        assert "pw-123" not in repr(s)

    @pytest.mark.parametrize(
        ("name", "value"),
        [("history_messages", -1), ("max_message_chars", 0), ("log_level", "LOUD")],
    )
    def test_invalid_values_are_refused(self, name: str, value: object) -> None:
        with pytest.raises(ValidationError):
            settings(**{name: value})


class TestProductionGuards:
    def test_default_jwt_secret_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="JWT_SECRET"):
            settings(environment="production")

    def test_short_jwt_secret_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="at least 32 bytes"):
            settings(environment="production", jwt_secret="s" * 31)

    def test_short_admin_api_key_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="ADMIN_API_KEY of at least 32 characters"):
            settings(environment="production", jwt_secret="s" * 40, admin_api_key="k" * 31)
        assert settings(environment="production", jwt_secret="s" * 40, admin_api_key="k" * 32)
        assert settings(environment="production", jwt_secret="s" * 40).admin_api_key is None

    def test_wildcard_cors_with_credentials_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="CORS_ORIGINS"):
            settings(environment="production", jwt_secret="s" * 40, cors_origins="*")

    def test_wildcard_cors_without_credentials_is_allowed(self) -> None:
        s = settings(
            environment="production",
            jwt_secret="s" * 40,
            cors_origins="*",
            cors_allow_credentials=False,
        )
        assert s.cors_origins == ["*"]

    def test_development_tolerates_defaults(self) -> None:
        assert settings(cors_origins="*").cors_origins == ["*"]
