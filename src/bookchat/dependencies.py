"""The application's shared dependencies: how routes reach what the lifespan built.

The wiring rule (docs/architecture.md, "Wiring"): every long-lived object is built once, in the
lifespan, by `container.open_container`; each domain hands its services to its routes through
typed dependencies in its own `dependencies.py`, which read them from the container through
`ContainerDep` below. Nothing is built per request except the database session.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

if TYPE_CHECKING:
    from bookchat.books.service import BookConfig
from sqlalchemy.ext.asyncio import AsyncSession

from bookchat.books.names import DEFAULT_BOOK
from bookchat.container import Container
from bookchat.core.budget import Account, charge_to
from bookchat.core.config import Settings
from bookchat.core.ratelimit import enforce, request_identity


async def get_container(request: Request) -> Container:
    """The container the lifespan built for this app."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_db(container: ContainerDep) -> AsyncIterator[AsyncSession]:
    """The request's database session: services commit explicitly; this only closes it.

    Work that outlives the request (a stream's final write, an ingestion job) opens its own
    session from the sessionmaker instead.
    """
    async with container.sessionmaker() as session:
        yield session


async def get_settings_dep(container: ContainerDep) -> Settings:
    """The settings the app was built with."""
    return container.settings


SessionDep = Annotated[AsyncSession, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def _nobody() -> None:
    return None


def rate_limited(
    scope: str,
    rate: Callable[[Settings, BookConfig], str],
    *,
    after: Callable[..., Any] | None = None,
) -> Callable[..., Awaitable[None]]:
    """A dependency that counts the request against the rate `rate(settings, book)` returns,
    per book and per reader: a reader's questions to one book leave their quota with another.

    Pass the authentication dependency as `after` (for example the optional current user): it
    runs first, its result (a user, or None) decides the identity (per user when signed in,
    else per client IP), and FastAPI's per-request cache means the endpoint's own use of that
    dependency does not run it again.
    """
    # Here, not at the top: the books' dependencies read the container through this module.
    from bookchat.books.dependencies import current_book

    first = after or _nobody

    async def check_rate_limit(
        request: Request,
        container: ContainerDep,
        caller: Any = Depends(first),
        book: BookConfig = Depends(current_book),
    ) -> None:
        limiter = container.limiter
        identity = request_identity(request, limiter, caller)
        # The default book keeps the scope it had before books: its counters carry over.
        counted = scope if book.slug == DEFAULT_BOOK else f"{scope}:{book.slug}"
        await enforce(limiter, counted, [identity], rate(container.settings, book))

    return check_rate_limit


def token_budget(
    call: str, *, after: Callable[..., Any] | None = None
) -> Callable[..., Awaitable[None]]:
    """A dependency that charges the model calls of the request to the caller's daily token
    budget (`core/budget.py`), labelled `call`: 429 at once when it is already spent.

    The caller is `after`'s result as for `rate_limited` (a reader, else the client address).
    Admins (an admin's token or the `X-Admin-Key`) and offline servers are not counted.
    """
    first = after or _nobody

    async def open_token_budget(
        request: Request, container: ContainerDep, caller: Any = Depends(first)
    ) -> None:
        # Set on every request: with nothing bound, a model call is charged to nobody.
        charge_to(None)
        budget = container.budget
        if container.providers.chat.mode != "generative" or _is_admin(request, caller, container):
            return
        payer = budget.payer(request_identity(request, container.limiter, caller))
        if payer is None:
            return
        await budget.ensure_left(payer, call)
        charge_to(Account(budget=budget, payer=payer, call=call))

    return open_token_budget


def _is_admin(request: Request, caller: Any, container: Container) -> bool:
    if getattr(caller, "is_admin", False):
        return True
    expected = container.settings.admin_api_key
    given = request.headers.get("x-admin-key")
    # Constant-time comparison, as for the admin routes; a wrong key just counts as anonymous.
    return (
        expected is not None
        and given is not None
        and secrets.compare_digest(given.encode(), expected.get_secret_value().encode())
    )
