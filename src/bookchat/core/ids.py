"""Identifiers that arrive as text (paths, bodies, token claims), read without raising."""

from __future__ import annotations

import uuid


def parse_uuid(raw: str | None) -> uuid.UUID | None:
    """`raw` as a UUID, or None when it is missing, empty or malformed."""
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None
