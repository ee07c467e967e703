"""How the content routes reach the content service the lifespan built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from bookchat.content.service import ContentService
from bookchat.dependencies import ContainerDep


def get_content_service(container: ContainerDep) -> ContentService:
    """The book's content service (documents, search, ingestion jobs)."""
    return container.content


ContentServiceDep = Annotated[ContentService, Depends(get_content_service)]
