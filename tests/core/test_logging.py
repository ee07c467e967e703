"""What the logs say: tracebacks without the frames' variables, in either format."""

from __future__ import annotations

import pytest
import structlog

from bookchat.core.logging import configure_logging


def fail_with_a_secret_in_scope() -> None:
    password = "hunter2-do-not-log"  # the value the log must not show
    raise RuntimeError(f"failed after {len(password)} characters")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_logged_traceback_shows_no_local_variables(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", fmt)
    try:
        fail_with_a_secret_in_scope()
    except RuntimeError:
        structlog.get_logger("test").exception("request.failed")
    output = capsys.readouterr().err
    assert "request.failed" in output
    assert "fail_with_a_secret_in_scope" in output  # the traceback is there
    assert "failed after 18 characters" in output
    assert "hunter2" not in output
