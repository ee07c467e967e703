"""Structured logging (structlog): JSON in production, readable console otherwise."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

import structlog

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

logger = structlog.get_logger(__name__)


def current_request_id() -> str | None:
    """The id of the request being handled, if any."""
    return request_id_var.get()


class _AlembicSetupNoise(logging.Filter):
    """Drops Alembic's "Context impl" / "Will assume ... DDL" lines: it prints them each time it
    opens a migration context (three times per `bookchat migrate`), and they say nothing an
    operator acts on. "Running upgrade ..." lines stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not message.startswith(("Context impl", "Will assume"))


_ALEMBIC_FILTER = _AlembicSetupNoise()


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Route structlog and the standard library through one renderer."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        # Tracebacks without local variables: structlog's default prints every frame's locals,
        # which would put tokens, passwords and readers' text in the log (and takes seconds).
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(),
            exception_formatter=structlog.dev.plain_traceback,
        )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own access log would duplicate ours; its error log stays.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The SDKs log request URLs and bodies at DEBUG/INFO; keep them quiet unless asked.
    # (openai 3 sends its requests through httpx2, which logs each one at INFO.)
    # Alembic announces each of its plugins at INFO on every migration: noise for an operator.
    for name in ("httpx", "httpx2", "httpcore", "openai", "alembic.runtime.plugins"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    migration = logging.getLogger("alembic.runtime.migration")
    if _ALEMBIC_FILTER not in migration.filters:
        migration.addFilter(_ALEMBIC_FILTER)
