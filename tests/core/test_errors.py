"""One error family: everything the project raises on purpose is an `AppError`."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from bookchat.content.loader import LoaderError
from bookchat.core.errors import (
    INTERNAL_ERROR_MESSAGE,
    AppError,
    ConfigurationError,
    DependencyUnavailable,
    LLMTimeout,
    ValidationFailed,
    install_error_handlers,
)
from bookchat.evaluation.questions import QuestionFileError
from bookchat.providers.embeddings import EmbedderUnavailable
from bookchat.providers.factory import ProviderConfigError
from bookchat.retrieval.index import IndexLocked, IndexMismatch, IndexUnreachable
from bookchat.serverless import ServerlessConfigError


@pytest.mark.parametrize(
    ("error", "family", "code", "status"),
    [
        (IndexUnreachable, DependencyUnavailable, "dependency_unavailable", 503),
        (IndexLocked, ConfigurationError, "internal_error", 500),
        (IndexMismatch, ConfigurationError, "internal_error", 500),
        (ProviderConfigError, ConfigurationError, "internal_error", 500),
        (EmbedderUnavailable, ConfigurationError, "internal_error", 500),
        (ServerlessConfigError, ConfigurationError, "internal_error", 500),
        (LoaderError, ValidationFailed, "validation_error", 400),
        (QuestionFileError, ValidationFailed, "validation_error", 400),
    ],
)
def test_every_family_is_an_app_error(
    error: type[AppError], family: type[AppError], code: str, status: int
) -> None:
    assert issubclass(error, family)
    assert issubclass(error, AppError)
    assert (error.code, error.status_code) == (code, status)
    assert str(error("what happened")) == "what happened"


async def test_a_500_never_shows_its_message() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/misconfigured")
    async def misconfigured() -> None:
        raise ConfigurationError("The store at /srv/secret/qdrant is locked")

    @app.get("/outage")
    async def outage() -> None:
        raise IndexUnreachable()

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        misconfigured_answer = await client.get("/misconfigured")
        outage_answer = await client.get("/outage")

    assert misconfigured_answer.status_code == 500
    assert misconfigured_answer.json()["error"] == {
        "code": "internal_error",
        "message": INTERNAL_ERROR_MESSAGE,
        "details": [],
    }
    assert "/srv/secret" not in misconfigured_answer.text
    assert outage_answer.status_code == 503
    assert outage_answer.json()["error"]["message"] == IndexUnreachable.default_message


def test_what_clients_are_told() -> None:
    """The JSON handler and the stream `error` events tell clients the same: a 500's own text
    (meant for the operator) never, any other status's text as it is."""
    assert ConfigurationError("QDRANT_PATH=/srv/x is locked").public_message == (
        INTERNAL_ERROR_MESSAGE
    )
    assert ValidationFailed("message is too long").public_message == "message is too long"
    assert LLMTimeout().public_message == LLMTimeout.default_message
