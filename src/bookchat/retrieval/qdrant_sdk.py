"""qdrant-client, imported and opened without optional integrations bookchat never uses.

qdrant-client imports fastembed whenever fastembed is installed (at import, and again in every
client's constructor) for its helpers that embed text on the client: `add`, and `query` with
documents. bookchat encodes its own vectors and never calls them, yet that import loads
fastembed's every model family with onnxruntime, Pillow and huggingface_hub: about a second and
65 MB in each process that opens the index, the offline server and every CLI command included.
Likewise embedded Qdrant's file lock (portalocker) imports the redis client, when installed, for
a Redis-backed lock nobody asks for here: half a second for a command that uses no Redis.

While qdrant-client is imported and while a client is built, those packages, when not loaded
yet, are marked absent in `sys.modules` (importing one raises `ImportError`, which both
libraries read as "not installed"). The marks are removed right after, so the fastembed
embedder, the cross-encoder and the Redis-backed caches still import them when configured.
Import the client from here and build it with `open_client`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_UNUSED_EXTRAS = ("fastembed", "redis")


@contextmanager
def _extras_hidden() -> Iterator[None]:
    hidden = [name for name in _UNUSED_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            del sys.modules[name]


with _extras_hidden():
    from qdrant_client import QdrantClient, models
    from qdrant_client.http.exceptions import ApiException


def open_client(**options: Any) -> QdrantClient:
    """`QdrantClient(**options)`, without loading the unused extras (see the module's docs)."""
    with _extras_hidden():
        return QdrantClient(**options)


__all__ = ["ApiException", "QdrantClient", "models", "open_client"]
