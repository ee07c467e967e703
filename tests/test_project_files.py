"""Project files that must stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from bookchat.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert listed == {name.upper() for name in Settings.model_fields}


def test_env_example_values_are_valid_settings(tmp_path: Path) -> None:
    settings = Settings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    assert settings.book_title == "Physical AI & Humanoid Robotics"
    assert settings.openai_api_key is None


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_section = readme.split("\n## ", 2)[1]
    assert "make run" in first_section
    assert "make test" in first_section


def test_ci_requires_the_services() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "BOOKCHAT_REQUIRE_SERVICES=1" in ci
    assert "make test" in ci
