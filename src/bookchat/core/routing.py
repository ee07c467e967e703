"""405 answers whose `Allow` lists every method of the path.

Starlette answers a method no route of a path takes with the `Allow` of the first route that
matched the path alone, so a path served by two routes (`PUT` and `DELETE /content/{id}`) was
said to allow only the first one's method.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bookchat.core.errors import error_response


def install_full_allow(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Answer 405 with the methods of every route of `routers` that shares the matched path."""
    by_path: dict[tuple[int, str], set[str]] = {}
    owner: dict[int, tuple[int, str]] = {}
    for router in routers:
        for route in router.routes:
            path, methods = getattr(route, "path", None), getattr(route, "methods", None)
            if isinstance(path, str) and methods:
                key = (id(router), path)
                by_path.setdefault(key, set()).update(methods)
                owner[id(route)] = key

    async def on_method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        key = owner.get(id(request.scope.get("route")))
        if key is not None:
            headers["Allow"] = ", ".join(sorted(by_path[key]))
        message = exc.detail if isinstance(exc.detail, str) else "Method Not Allowed"
        return error_response(405, "method_not_allowed", message, headers=headers)

    app.add_exception_handler(405, on_method_not_allowed)
