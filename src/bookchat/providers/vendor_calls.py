"""What every vendor's chat model does alike around a call: pass on the `Retry-After` the vendor
asked for, and log a failed call in one line (vendor-neutral: no SDK imported here)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import structlog

logger = structlog.get_logger(__name__)

# A vendor's Retry-After is passed on to readers within these bounds (seconds): a wait longer
# than a few minutes is no advice a reader can act on.
RETRY_AFTER_RANGE = (1, 300)


def vendor_retry_after(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The vendor's `Retry-After` (from its response's `headers`) in whole seconds, as headers
    for our answer; None when it sent none we can read (an HTTP date is left to our own
    default)."""
    try:
        seconds = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    low, high = RETRY_AFTER_RANGE
    return {"Retry-After": str(min(max(math.ceil(seconds), low), high))}


def log_call_failure(*, provider: str, model: str, exc: Exception, started: float) -> None:
    """`llm.call_failed` with the error's type and status (never its text: it may quote the
    prompt), and how long the call took since `started` (`time.perf_counter()`)."""
    logger.warning(
        "llm.call_failed",
        provider=provider,
        model=model,
        error_type=type(exc).__name__,
        status=getattr(exc, "status_code", None),
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
    )
