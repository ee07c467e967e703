"""A ChatKit server (OpenAI's chat front end protocol) over bookchat's own chat.

The SDK (`openai-chatkit`, import `chatkit`) is the optional extra `bookchat[chatkit]`:
without it the app runs as before and `POST /chatkit` is simply not there (`available()`).
"""

from __future__ import annotations

from importlib.util import find_spec


def available() -> bool:
    """Whether the ChatKit SDK is installed (the `chatkit` extra)."""
    return find_spec("chatkit") is not None
