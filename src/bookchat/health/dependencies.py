"""How the health routes reach the checks the lifespan built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from bookchat.dependencies import ContainerDep
from bookchat.health.service import HealthService


async def get_health_service(container: ContainerDep) -> HealthService:
    return container.health


HealthServiceDep = Annotated[HealthService, Depends(get_health_service)]
