"""Typed dependencies: how routes reach the long-lived objects the lifespan built."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from bookchat.container import Container
from bookchat.core.config import Settings


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session per request. Services commit explicitly; this only closes it."""
    async with get_container(request).sessionmaker() as session:
        yield session


def get_settings_dep(request: Request) -> Settings:
    return get_container(request).settings


ContainerDep = Annotated[Container, Depends(get_container)]
SessionDep = Annotated[AsyncSession, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
