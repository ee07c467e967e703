"""CORS answered per request: the global origins everywhere, and more on some paths (a book's
routes also allow that book's own sites). Each distinct set of origins is served by one of
Starlette's `CORSMiddleware`, built on first use, so the CORS rules themselves stay Starlette's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import structlog
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

logger = structlog.get_logger(__name__)

# The origins a request's path allows on top of the global ones (none: the global policy).
OriginsLookup = Callable[[Scope], Awaitable[Collection[str]]]

# Distinct origin sets kept; past it the policies are built again (one set per book in practice).
MAX_POLICIES = 1024


class ScopedCORSMiddleware:
    """Starlette's CORS with `allow_origins` everywhere, plus on each request the origins
    `extra_origins(scope)` names for its path. `options` are `CORSMiddleware`'s other arguments.

    The lookup runs only for a request whose Origin the global list does not already allow (one
    without an Origin, or from a listed site, costs nothing). A lookup that fails answers with
    the global policy: the stricter one.
    """

    def __init__(
        self,
        app: ASGIApp,
        /,
        *,
        allow_origins: Sequence[str],
        extra_origins: OriginsLookup,
        **options: Any,
    ) -> None:
        self.app = app
        self._allow_origins = tuple(allow_origins)
        self._extra_origins = extra_origins
        self._options = options
        self._global = CORSMiddleware(app, allow_origins=self._allow_origins, **options)
        self._policies: dict[frozenset[str], CORSMiddleware] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        if origin is None or self._global.is_allowed_origin(origin):
            await self._global(scope, receive, send)
            return
        try:
            extra = frozenset(await self._extra_origins(scope)) - set(self._allow_origins)
        except Exception:
            logger.warning("cors.lookup_failed", path=scope["path"], exc_info=True)
            extra = frozenset()
        await self._policy(extra)(scope, receive, send)

    def _policy(self, extra: frozenset[str]) -> CORSMiddleware:
        if not extra:
            return self._global
        policy = self._policies.get(extra)
        if policy is None:
            if len(self._policies) >= MAX_POLICIES:
                self._policies.clear()
            origins = (*self._allow_origins, *sorted(extra))
            policy = CORSMiddleware(self.app, allow_origins=origins, **self._options)
            self._policies[extra] = policy
        return policy
