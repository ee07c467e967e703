"""Schemathesis against the app's own OpenAPI schema, as `st run --checks all` runs it.

Its own engine drives every phase (the schema's examples, coverage of each parameter's edges,
unsupported methods and missing headers, fuzzing with valid and invalid inputs, stateful
sequences) and every check: no 5xx; status codes, content types, headers and bodies (the error
shape included) conform to what the schema documents; invalid data is refused and valid data
accepted; a 405 names the allowed methods, and they are the documented ones. On SQLite and on
PostgreSQL, whose text rules differ (NUL characters, for one). A failure is reported with the
request that caused it.

(Schemathesis's pytest plugin does not run on pytest 9.2: it reads a private attribute pytest
removed. The engine needs no plugin.)
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
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from sqlalchemy.engine import make_url

from bookchat.core.migrations import upgrade
from bookchat.main import create_app
from tests.conftest import ingest_book, live_server, make_settings, openai_settings, plain_dsn
from tests.fakes.openai_server import FakeOpenAIServer

ADMIN_KEY = "fuzz-admin-key"
EXAMPLES = 20


# Uploads must be UTF-8 Markdown files: a rule no schema can state for a binary part, so
# "schema-valid data is accepted" cannot hold there (a PNG is schema-valid and rightly refused).
# The insights' date ranges must run forwards and span at most 366 days: rules between two
# parameters, which a schema cannot state either. A book's docs folder must lie inside the
# server's BOOK_DOCS_ROOT (and fit its column once resolved there): a rule of the server's
# configuration, not of the request's shape.
BUSINESS_RULES = {
    ("/api/v1/content/ingest", "POST"),
    ("/api/v1/admin/books", "POST"),
    ("/api/v1/admin/books/{slug}", "PATCH"),
    *(
        (f"/api/v1/insights/{name}", "GET")
        for name in ("summary", "unanswered", "sections", "low-rated", "questions.csv")
    ),
}
# Schemathesis's own list of statuses that refuse invalid data.
DEFAULT_REJECTIONS = [
    "400",
    "401",
    "403",
    "404",
    "405",
    "406",
    "409",
    "415",
    "422",
    "428",
    "429",
    "5xx",
]


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


def schemathesis_config(base: str) -> SchemathesisConfig:
    """`st run --checks all` with this suite's budget: every phase and check on, few examples."""
    rejection_statuses = [*DEFAULT_REJECTIONS, "413"]
    return SchemathesisConfig.from_dict(
        {
            "base-url": base,
            "headers": {"X-Admin-Key": ADMIN_KEY},
            "request-timeout": 30,
            "seed": 20260,  # the same inputs every run: a failure here reproduces
            "generation": {
                "max-examples": EXAMPLES,
                # NUL characters are refused on purpose (PostgreSQL text cannot hold them), a
                # rule the schema states in words (info.description, every 400's description),
                # not in JSON Schema; tests/core/test_nul.py covers it.
                "allow-x00": False,
            },
            "checks": {
                "enabled": True,
                # A body over the size limit is refused with 413 before it is parsed.
                "negative_data_rejection": {"expected-statuses": rejection_statuses},
            },
            "operations": [
                {
                    "include-path": path,
                    "include-method": method,
                    "checks": {"positive_data_acceptance": {"enabled": False}},
                }
                for path, method in BUSINESS_RULES
            ],
        }
    )


def failures_of(base: str, document: dict[str, Any]) -> tuple[list[str], int]:
    """Every failed check and engine error of one run, and the number of requests it sent."""
    schema = schemathesis.openapi.from_dict(document, config=schemathesis_config(base))
    found: list[str] = []
    requests = 0
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            requests += len(event.recorder.interactions)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        code = check.failure_info.code_sample
                        found.append(f"{event.label} [{check.name}] {failure.title}\n{code}")
        elif isinstance(event, events.NonFatalError):
            found.append(f"{event.label}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    return sorted(set(found)), requests


def test_the_api_conforms_to_its_schema(served: tuple[str, dict[str, Any]]) -> None:
    base, document = served
    failures, requests = failures_of(base, document)
    assert requests > 500  # the run did reach the server, at every operation
    assert not failures, "\n\n".join(failures)
