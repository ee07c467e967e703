"""ChatKit's ids for bookchat's rows, without a table of their own.

ChatKit names threads and items with short prefixed strings; bookchat's sessions and messages
have UUID keys. The mapping is the UUID's hex behind a fixed prefix (`thr_…`, `msg_…`), so it
needs no lookup, keeps the existing keys, and a stranger's or malformed id is simply not found.
"""

from __future__ import annotations

import uuid

from chatkit.store import NotFoundError

THREAD_PREFIX = "thr_"
ITEM_PREFIX = "msg_"


def thread_id(session_id: uuid.UUID) -> str:
    """The ChatKit id of a chat session."""
    return f"{THREAD_PREFIX}{session_id.hex}"


def item_id(message_id: uuid.UUID) -> str:
    """The ChatKit id of a message."""
    return f"{ITEM_PREFIX}{message_id.hex}"


def session_id(raw: str) -> uuid.UUID:
    """The chat session a ChatKit thread id names; NotFoundError when it names none."""
    return _parse(raw, THREAD_PREFIX, "thread")


def message_id(raw: str) -> uuid.UUID:
    """The message a ChatKit item id names; NotFoundError when it names none."""
    return _parse(raw, ITEM_PREFIX, "item")


def _parse(raw: str, prefix: str, what: str) -> uuid.UUID:
    hex_part = raw.removeprefix(prefix)
    if hex_part == raw or len(hex_part) != 32:
        raise NotFoundError(f"No {what} with this id.")
    try:
        return uuid.UUID(hex=hex_part)
    except ValueError:
        raise NotFoundError(f"No {what} with this id.") from None
