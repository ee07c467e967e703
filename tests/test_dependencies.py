"""Requests never wait for a worker thread just to be routed: every dependency and endpoint is
a coroutine, so a thread pool busy with blocking work (SQLite, embedded Qdrant, model loading)
cannot hold up the answers that need none of it."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from bookchat.main import create_app
from tests.conftest import AppFactory, make_settings


def _dependants(route: Any) -> Iterator[tuple[str, Dependant]]:
    if isinstance(route, APIRoute):
        yield route.path, route.dependant
    for context in getattr(route, "effective_route_contexts", lambda: ())():
        yield context.path, context.dependant


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for inner in dependant.dependencies:
        yield from _calls(inner)


def _runs_on_the_loop(call: Callable[..., Any]) -> bool:
    target = call if inspect.isfunction(call) else getattr(call, "__call__", call)  # noqa: B004
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_no_route_hands_a_dependency_or_endpoint_to_the_thread_pool(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url))
    calls = [
        (path, call)
        for route in app.routes
        for path, dependant in _dependants(route)
        for call in _calls(dependant)
    ]
    assert len({path for path, _ in calls}) > 20  # the routes were really walked
    in_threads = sorted(
        {
            f"{getattr(call, '__qualname__', repr(call))} ({path})"
            for path, call in calls
            if not _runs_on_the_loop(call)
        }
    )
    assert in_threads == []


async def test_answers_that_need_no_thread_come_while_every_worker_thread_is_busy(
    sqlite_url: str, app_factory: AppFactory
) -> None:
    async with app_factory(make_settings(sqlite_url)) as client:
        limiter = anyio.to_thread.current_default_thread_limiter()
        workers = int(limiter.total_tokens)
        loop = asyncio.get_running_loop()
        all_busy = asyncio.Event()
        release = threading.Event()
        busy = 0
        counting = threading.Lock()

        def block() -> None:  # in a worker thread, until the test is done
            nonlocal busy
            with counting:
                busy += 1
                if busy == workers:
                    loop.call_soon_threadsafe(all_busy.set)
            release.wait(30)

        holders = [asyncio.create_task(anyio.to_thread.run_sync(block)) for _ in range(workers)]
        try:
            async with asyncio.timeout(5):
                await all_busy.wait()
                live = await client.get("/api/v1/health/live")
                anonymous = await client.get("/api/v1/chat/sessions")
                empty = await client.get("/api/v1/content/search", params={"q": ""})
        finally:
            release.set()
            await asyncio.gather(*holders)

    assert live.status_code == 200
    assert anonymous.status_code == 401
    assert empty.status_code == 400
