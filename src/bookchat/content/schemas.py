"""Bodies of the content API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bookchat.content.models import JobStatus


class DocumentUpload(BaseModel):
    source_path: str = Field(
        min_length=1, max_length=1024, description="Where the page lives, e.g. `ros2/nodes.md`."
    )
    content: str = Field(description="The Markdown, optionally with YAML frontmatter.")
    module: str | None = Field(default=None, max_length=500)


class IngestCreate(BaseModel):
    """Ingest uploaded documents, or (without `documents`) the configured docs folder."""

    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentUpload] | None = Field(default=None, max_length=1000)
    path: str | None = Field(
        default=None, description="A sub-folder of BOOK_DOCS_DIR (folder ingestion only)."
    )
    base_url: str | None = Field(default=None, description="Defaults to BOOK_BASE_URL.")
    prune: bool = Field(
        default=False, description="Folder ingestion: delete stored documents not in the folder."
    )


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: JobStatus
    source: str
    counts: dict[str, int]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class DocumentRead(BaseModel):
    id: uuid.UUID
    source_path: str
    title: str
    page_url: str
    module: str | None
    content_hash: str
    chunk_count: int
    metadata: dict[str, Any]
    updated_at: datetime


class ChunkRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    ordinal: int
    heading_path: list[str]
    page_url: str
    token_count: int
    text: str


class DocumentDetail(DocumentRead):
    content: str
    chunks: list[ChunkRead]


class DocumentPage(BaseModel):
    items: list[DocumentRead]
    total: int
    limit: int
    offset: int


class DocumentUpdate(BaseModel):
    """The page's new Markdown (frontmatter allowed); its path and URL stay the same."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1)
    module: str | None = Field(default=None, max_length=500)


class SearchHitRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    chunk_id: uuid.UUID
    document_id: uuid.UUID
    title: str
    section: str | None
    heading_path: list[str]
    page_url: str
    source_path: str
    module: str | None
    text: str
    score: float


class SearchRead(BaseModel):
    query: str
    mode: Literal["hybrid", "bm25"]
    results: list[SearchHitRead]
