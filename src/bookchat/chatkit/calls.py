"""What the ChatKit route hands the server: the request and who asks. No SDK import here.

The ChatKit SDK brings the `openai-agents` library with it: about 2 s and 50 MB to import. The
route and its dependencies import only this module, and the server (with the SDK) is built on
the first ChatKit request (`dependencies.chatkit_server`), so a process nobody asks for
ChatKit never loads it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatkit.types import ChatKitReq

    from bookchat.books.service import BookConfig


@dataclass(frozen=True, slots=True)
class ReaderContext:
    """Who is asking (None: an anonymous reader), about which book, and the page they are on,
    if the front end said so in the request's `metadata.page_context`."""

    user_id: uuid.UUID | None
    book: BookConfig
    page_context: str | None = None


@dataclass(frozen=True, slots=True)
class ChatKitCall:
    """A ChatKit request as it arrived (the SDK parses the bytes itself) and as parsed."""

    body: bytes
    request: ChatKitReq

    @property
    def streaming(self) -> bool:
        """Whether the answer is an event stream (a turn of the chat), not one JSON body."""
        from chatkit.types import is_streaming_req

        return is_streaming_req(self.request)
