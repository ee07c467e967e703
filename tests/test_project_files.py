"""Project files that must stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

from bookchat.core.config import Settings
from tests.conftest import load_module

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert listed == {name.upper() for name in Settings.model_fields}


def test_env_example_values_are_valid_settings(tmp_path: Path) -> None:
    settings = Settings(_env_file=ROOT / ".env.example")
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


def configuration_docs() -> ModuleType:
    return load_module(ROOT / "scripts" / "configuration_docs.py")


def test_configuration_reference_is_generated_from_the_settings() -> None:
    """docs/configuration.md is what `make docs` writes from Settings today."""
    expected = configuration_docs().render()
    assert (ROOT / "docs" / "configuration.md").read_text() == expected, "run `make docs`"


def test_configuration_reference_describes_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for name, field in Settings.model_fields.items():
        assert f"| `{name.upper()}` |" in text
        assert field.description, f"{name} needs a description (the string under it)"
