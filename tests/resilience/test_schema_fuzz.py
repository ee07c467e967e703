"""Schemathesis against the app's own OpenAPI schema: generated inputs for every operation.

Checks: no 5xx; status codes, content types, headers and bodies (the error shape included)
conform to what the schema documents. Valid and invalid inputs are both generated.

Schemathesis's pytest plugin does not run on pytest 9.2 (it reads a private attribute pytest
removed), so each operation is a parametrized case here that draws from Schemathesis's own
Hypothesis strategies.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from sqlalchemy.engine import make_url

from bookchat.core.migrations import upgrade
from bookchat.main import create_app
from tests.conftest import ingest_book, live_server, make_settings, openai_settings, plain_dsn
from tests.fakes.openai_server import FakeOpenAIServer

ADMIN_KEY = "fuzz-admin-key"
EXAMPLES = 20


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """Every operation with valid inputs, and with invalid ones where it takes any."""
    document = create_app(make_settings("sqlite://")).openapi()
    cases = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            cases.append((path, method.upper(), GenerationMode.POSITIVE))
            if _has_invalid_inputs(operation):
                cases.append((path, method.upper(), GenerationMode.NEGATIVE))
    return cases


def _has_invalid_inputs(operation: dict[str, Any]) -> bool:
    """Whether some request is invalid per the schema (a bare string path id accepts anything)."""
    if operation.get("requestBody"):
        return True

    def constrained(parameter: dict[str, Any]) -> bool:
        schema = {k: v for k, v in parameter.get("schema", {}).items() if k != "title"}
        return schema != {"type": "string"}

    return any(constrained(p) for p in operation.get("parameters", []))


# Uploads must be UTF-8 Markdown files: a rule no schema can state for a binary part, so
# "schema-valid data is accepted" cannot hold there (a PNG is schema-valid and rightly refused).
BUSINESS_RULES = {("/api/v1/content/ingest", "POST")}


def echo(request: dict[str, Any]) -> str:
    """A model that hands back what it was given: chat answers echo the question, rewritten
    chapter sections come back intact (so the structure check passes and the 2xx path runs)."""
    return str(request["messages"][-1]["content"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    fake_openai_server: FakeOpenAIServer,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The app on a real server (the fake OpenAI model, the mini book ingested) and its
    schema, on SQLite and on PostgreSQL (whose text rules differ: NUL characters, for one)."""
    fake_openai_server.reset()
    fake_openai_server.reply = echo
    with ExitStack() as stack:
        stack.callback(fake_openai_server.reset)
        if request.param == "sqlite":
            folder = tmp_path_factory.mktemp("fuzz")
            shutil.copy(sqlite_template, folder / "fuzz.db")
            url = f"sqlite+aiosqlite:///{folder / 'fuzz.db'}"
        else:
            server: str = request.getfixturevalue("postgres_server_url")
            url = stack.enter_context(_scratch_database(server))
        app_settings = make_settings(
            url,
            admin_api_key=ADMIN_KEY,
            allow_anonymous_personalization=True,
            allow_anonymous_chapter_content=True,
            **openai_settings(fake_openai_server),
            # Fuzzing sends thousands of requests: limits would only answer 429.
            rate_limit_chat="1000000/minute",
            rate_limit_login="1000000/minute",
            rate_limit_generation="1000000/minute",
            token_budget_anonymous_daily=0,
        )
        asyncio.run(ingest_book(app_settings))
        base = stack.enter_context(live_server(app_settings))
        yield base, create_app(app_settings).openapi()


@contextmanager
def _scratch_database(server: str) -> Iterator[str]:
    """A migrated database of its own on the test server, dropped afterwards."""
    name = f"bookchat_fuzz_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(server: str, statement: str) -> None:
    connection = await asyncpg.connect(plain_dsn(server))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.mark.parametrize(("path", "method", "mode"), _cases(), ids=lambda value: str(value))
def test_operation_conforms_to_its_schema(
    path: str, method: str, mode: GenerationMode, served: tuple[str, dict[str, Any]]
) -> None:
    base, document = served
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base, request_timeout=30)
    # NUL characters are refused on purpose (PostgreSQL text cannot hold them), a rule no JSON
    # Schema can state for every string; tests/core/test_nul.py covers it.
    schema.config.generation.update(allow_x00=False)
    # A body over the size limit is refused with 413 before it is parsed: a rejection too.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    operation = schema[path][method]
    excluded = (
        [schemathesis.checks.positive_data_acceptance] if (path, method) in BUSINESS_RULES else []
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        case.call_and_validate(headers={"X-Admin-Key": ADMIN_KEY}, excluded_checks=excluded)

    run()
