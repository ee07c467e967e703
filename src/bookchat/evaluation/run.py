"""One evaluation run: a scratch store (SQLite and embedded Qdrant in a temporary folder), the
book ingested into it, retrieval ranked per mode, then every question asked through the chat
path with the chat model and embedder the settings configure."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pydantic import SecretStr

from bookchat.container import open_container
from bookchat.content.loader import load_folder
from bookchat.core.config import Settings
from bookchat.core.migrations import upgrade
from bookchat.evaluation.answers import answer_all, book_text
from bookchat.evaluation.questions import Question
from bookchat.evaluation.ranking import evaluate, modes_for
from bookchat.evaluation.report import Evaluation, Setup, score_answers


def scratch_settings(settings: Settings, scratch: Path) -> Settings:
    """The settings with every store in `scratch`, and the answer cache off: a question asked
    twice in the set is answered twice, and timed twice."""
    return settings.model_copy(
        update={
            "database_url": SecretStr(f"sqlite+aiosqlite:///{scratch}/eval.db"),
            "qdrant_url": None,
            "qdrant_path": str(scratch / "qdrant"),
            "qdrant_collection": "eval",
            "answer_cache_ttl_seconds": 0,
        }
    )


async def run_evaluation(
    settings: Settings,
    questions: list[Question],
    docs: Path,
    *,
    base_url: str,
    k: int = 5,
    questions_file: str = "",
) -> Evaluation:
    """Ingest `docs` into a scratch store, then rank and ask `questions`."""
    with tempfile.TemporaryDirectory(prefix="bookchat-eval-") as folder:
        scratch = scratch_settings(settings, Path(folder))
        await asyncio.to_thread(upgrade, scratch.database_url.get_secret_value())
        async with open_container(scratch) as container:
            documents = await asyncio.to_thread(load_folder, docs, base_url)
            report = await container.ingestor.ingest(documents)
            retrieval = [
                await evaluate(container.retriever, questions, mode=mode, k=k)
                for mode in modes_for(container.retriever)
            ]
            async with container.sessionmaker() as db:
                book = await book_text(container.content, db)
            results = await answer_all(
                container.chat,
                container.sessionmaker,
                questions,
                book,
                await container.books.default(),
            )
            embedder = container.providers.embedder
            setup = Setup(
                questions_file=questions_file,
                docs=str(docs),
                documents=len(documents),
                chunks=report.chunks,
                ingest_seconds=round(report.seconds, 3),
                questions=len(questions),
                retrieval=container.retriever.name,
                embedder=embedder.name if embedder else None,
                model=container.providers.chat.model,
                k=k,
            )
    return Evaluation(
        setup=setup, retrieval=retrieval, answers=score_answers(results), results=results
    )
