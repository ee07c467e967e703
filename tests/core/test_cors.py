"""`ScopedCORSMiddleware` on its own: the global origins, the lookup's origins on its paths, and
what happens when the lookup is not needed or fails."""

from __future__ import annotations

from collections.abc import Collection

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Scope

from bookchat.core.cors import ScopedCORSMiddleware

GLOBAL = "https://global.example.org"
SHOP = "https://shop.example.org"


class ShopOrigins:
    """Allows SHOP on /shop/...; counts its calls, and fails on /broken/..."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope) -> Collection[str]:
        self.calls += 1
        if scope["path"].startswith("/broken/"):
            raise ConnectionError("the database is down")
        return (SHOP,) if scope["path"].startswith("/shop/") else ()


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def client_for(lookup: ShopOrigins) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/{path:path}", ok, methods=["GET", "POST"])])
    app.add_middleware(
        ScopedCORSMiddleware,
        allow_origins=[GLOBAL],
        extra_origins=lookup,
        allow_methods=["GET", "POST"],
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def preflight(client: httpx.AsyncClient, path: str, origin: str) -> httpx.Response:
    return await client.options(
        path, headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )


class TestScopedCors:
    async def test_the_lookups_origins_only_on_its_paths(self) -> None:
        async with client_for(ShopOrigins()) as client:
            on_shop = await preflight(client, "/shop/cart", SHOP)
            elsewhere = await preflight(client, "/blog/post", SHOP)
            simple = await client.get("/shop/cart", headers={"Origin": SHOP})
        assert on_shop.status_code == 200
        assert on_shop.headers["access-control-allow-origin"] == SHOP
        assert elsewhere.status_code == 400
        assert "access-control-allow-origin" not in elsewhere.headers
        assert simple.headers["access-control-allow-origin"] == SHOP
        assert simple.headers["vary"] == "Origin"

    async def test_no_lookup_for_a_request_the_global_list_decides(self) -> None:
        lookup = ShopOrigins()
        async with client_for(lookup) as client:
            same_origin = await client.get("/shop/cart")
            global_origin = await preflight(client, "/shop/cart", GLOBAL)
        assert same_origin.status_code == 200
        assert global_origin.headers["access-control-allow-origin"] == GLOBAL
        assert lookup.calls == 0

    async def test_a_failing_lookup_gets_the_global_policy(self) -> None:
        async with client_for(ShopOrigins()) as client:
            refused = await preflight(client, "/broken/cart", SHOP)
            answered = await client.get("/broken/cart", headers={"Origin": SHOP})
            still_global = await preflight(client, "/broken/cart", GLOBAL)
        assert refused.status_code == 400
        assert answered.status_code == 200
        assert "access-control-allow-origin" not in answered.headers
        assert still_global.headers["access-control-allow-origin"] == GLOBAL
