"""What a process imports: each command loads what it runs, a server the vendors it is set up for.

Start-up time is mostly imports (`make bench` measures the seconds); these tests pin the import
graph instead, in fresh interpreters, so that a module-level import of a heavy library (the
openai SDK, fastembed and onnxruntime, FastAPI, the chat stack) cannot creep back in unnoticed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bookchat.core.config import Settings
from tests.conftest import MINI_BOOK
from tests.fakes.openai_server import FakeOpenAIServer

# Printed by the wrapper after the command, followed by the loaded top-level packages.
MARK = "--loaded-modules--"

# Run a `bookchat` command in this interpreter, then report what it imported.
RUN_COMMAND = textwrap.dedent(
    f"""
    import json, runpy, sys

    sys.argv = ["bookchat", *sys.argv[1:]]
    code = 0
    try:
        runpy.run_module("bookchat.cli", run_name="__main__")
    except SystemExit as exit:
        code = exit.code or 0
    print({MARK!r} + json.dumps([code, sorted(sys.modules)]))
    """
)

# What no command that does not answer questions needs.
MODEL_LIBRARIES = {"openai", "fastembed", "onnxruntime", "sentence_transformers", "torch"}
WEB_STACK = {"fastapi", "starlette", "uvicorn"}


def command_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This environment without any bookchat setting, plus `settings` (no `.env` in tmp_path)."""
    names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in names}
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'book.db'}",
        QDRANT_PATH=str(tmp_path / "qdrant"),
        BOOK_DOCS_DIR=str(MINI_BOOK),
        BOOK_BASE_URL="https://example.org/book",
        **settings,
    )
    return env


def loaded_by(env: dict[str, str], cwd: Path, *args: str) -> tuple[str, set[str]]:
    """Run `bookchat *args`; its output and every module it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_COMMAND, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output, _, report = done.stdout.rpartition(MARK)
    assert report, done.stderr
    code, modules = json.loads(report)
    assert code == 0, output + done.stderr
    return output + done.stderr, set(modules)


def packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_help_loads_only_the_command_line(tmp_path: Path) -> None:
    output, modules = loaded_by(command_env(tmp_path), tmp_path, "--help")
    assert "ingest" in output
    assert "migrate" in output
    loaded = packages(modules)
    assert not loaded & {"sqlalchemy", "pydantic_settings", "alembic", "qdrant_client", "numpy"}
    assert loaded & (MODEL_LIBRARIES | WEB_STACK) == set()
    assert "bookchat.container" not in modules


def test_migrate_loads_no_index_model_or_web_stack(tmp_path: Path) -> None:
    env = command_env(tmp_path)
    first, _ = loaded_by(env, tmp_path, "migrate")
    again, modules = loaded_by(env, tmp_path, "migrate")
    assert "Running upgrade" in first
    assert "Running upgrade" not in again
    assert "is at revision" in again
    loaded = packages(modules)
    assert loaded & (MODEL_LIBRARIES | WEB_STACK | {"qdrant_client", "redis", "numpy"}) == set()
    # At head, neither Alembic nor its environment (which loads every domain's tables) is run.
    assert "alembic" not in loaded
    assert "bookchat.chat.models" not in modules


def test_purge_loads_the_database_and_the_chat_tables_only(tmp_path: Path) -> None:
    """`bookchat purge` runs from cron next to a server: no index (embedded Qdrant would be
    locked), no model, no web stack, no chat service."""
    env = command_env(tmp_path)
    loaded_by(env, tmp_path, "migrate")
    output, modules = loaded_by(env, tmp_path, "purge", "--days", "30")

    assert "Deleted 0 conversations" in output
    loaded = packages(modules)
    assert loaded & (MODEL_LIBRARIES | WEB_STACK | {"qdrant_client", "redis", "numpy"}) == set()
    assert "bookchat.chat.retention" in modules
    assert not modules & {"bookchat.container", "bookchat.chat.service", "bookchat.chat.schemas"}


def test_an_unchanged_ingest_loads_no_embedder_nor_chat(
    tmp_path: Path, fake_openai: FakeOpenAIServer
) -> None:
    """The embedder is the openai SDK here: the first ingestion needs it, a second one that
    finds every page unchanged and the index whole does not."""
    env = command_env(
        tmp_path,
        EMBEDDINGS_PROVIDER="openai",
        EMBEDDINGS_DIMENSIONS="64",
        OPENAI_API_KEY="test",
        OPENAI_BASE_URL=fake_openai.base_url,
    )
    loaded_by(env, tmp_path, "migrate")
    first, first_modules = loaded_by(env, tmp_path, "ingest")
    again, modules = loaded_by(env, tmp_path, "ingest")

    assert "4 added" in first
    assert "openai" in packages(first_modules)
    assert "Nothing changed: 4 documents already up to date" in again
    loaded = packages(modules)
    assert loaded & (MODEL_LIBRARIES | WEB_STACK | {"redis"}) == set()
    assert not {m for m in modules if m.startswith(("bookchat.chat", "bookchat.accounts"))}


def test_an_ingest_that_finds_the_index_behind_still_repairs_it(tmp_path: Path) -> None:
    """Deciding from the stores never skips work: a lost index is rebuilt by a plain ingest."""
    env = command_env(tmp_path, EMBEDDINGS_PROVIDER="none")
    loaded_by(env, tmp_path, "migrate")
    loaded_by(env, tmp_path, "ingest")
    shutil.rmtree(env["QDRANT_PATH"])
    repaired, _ = loaded_by(env, tmp_path, "ingest")
    found, _ = loaded_by(env, tmp_path, "search", "balance")

    assert "4 documents" in repaired
    assert "motion/walking#balance" in found


def test_an_ingest_with_another_embedder_still_says_to_reindex(
    tmp_path: Path, fake_openai: FakeOpenAIServer
) -> None:
    """Unchanged pages do not hide that the index was built by another embedder."""
    env = command_env(tmp_path, EMBEDDINGS_PROVIDER="none")
    loaded_by(env, tmp_path, "migrate")
    loaded_by(env, tmp_path, "ingest")
    env.update(
        EMBEDDINGS_PROVIDER="openai",
        EMBEDDINGS_DIMENSIONS="64",
        OPENAI_API_KEY="test",
        OPENAI_BASE_URL=fake_openai.base_url,
    )
    for arguments in (["ingest"], ["ingest", "--if-empty"]):
        done = subprocess.run(
            [sys.executable, "-m", "bookchat.cli", *arguments],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 1, arguments
        assert "nothing" not in done.stderr.lower(), arguments
        assert "bookchat reindex" in done.stderr, arguments


@pytest.mark.parametrize("llm", ["extractive", "openai"])
def test_a_server_loads_only_the_vendors_it_is_configured_for(
    tmp_path: Path, fake_openai: FakeOpenAIServer, llm: str
) -> None:
    """The offline profile (BM25, the extractive answerer) loads no model library; with an
    OpenAI-compatible model, the openai SDK and still no ONNX runtime."""
    settings = {"LLM_PROVIDER": llm, "EMBEDDINGS_PROVIDER": "none"}
    if llm == "openai":
        settings.update(OPENAI_API_KEY="test", OPENAI_BASE_URL=fake_openai.base_url)
    env = command_env(tmp_path, **settings)
    loaded_by(env, tmp_path, "migrate")
    script = textwrap.dedent(
        """
        import asyncio, json, sys

        import httpx

        from bookchat.main import create_app

        async def main() -> None:
            app = create_app()
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    answer = await client.post("/api/v1/chat", json={"message": "balance?"})
                    assert answer.status_code == 200, answer.text
            print(json.dumps(sorted(sys.modules)))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    loaded = packages(set(json.loads(done.stdout.splitlines()[-1])))
    assert not loaded & {"fastembed", "onnxruntime", "sentence_transformers", "torch", "PIL"}
    assert ("openai" in loaded) == (llm == "openai")
    # The ChatKit SDK (and the agents library it brings) waits for the first ChatKit request.
    assert not loaded & {"chatkit", "agents"}


def test_without_a_cached_model_or_a_hub_a_fastembed_model_loads_no_onnx_runtime(
    tmp_path: Path,
) -> None:
    """Under `auto`, a named model that could only be downloaded from a hub that does not answer
    is given up on before fastembed and its ONNX runtime are imported: BM25 answers."""
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    env = command_env(
        tmp_path,
        EMBEDDINGS_PROVIDER="auto",
        EMBEDDINGS_MODEL="BAAI/bge-small-en-v1.5",
        FASTEMBED_CACHE_DIR=str(tmp_path / "models"),
        LLM_PROVIDER="extractive",
    )
    env = {key: value for key, value in env.items() if not key.upper().endswith("_PROXY")}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
    loaded_by(env, tmp_path, "migrate")
    loaded_by(env, tmp_path, "ingest")

    output, loaded = loaded_by(env, tmp_path, "search", "balance")

    assert "does not answer" in output
    assert "EMBEDDINGS_MODEL_PATH" in output
    assert not packages(loaded) & {"fastembed", "onnxruntime"}
    assert "balance" in output.lower()  # BM25 found the mini book's passages


# Worded unlike the book: BM25 picks "Gait cycle" (its "leg" and "foot"), all-MiniLM-L6-v2
# picks "Balance" (a biped that tips over).
PARAPHRASE = "How does a two-legged machine avoid falling down?"


def test_the_default_embedder_is_the_minilm_extras_and_needs_no_onnx_runtime_nor_torch(
    tmp_path: Path,
) -> None:
    """With nothing configured, dense retrieval runs offline on the extra's model (numpy): a
    question worded unlike the book finds its section, where BM25 alone does not."""
    env = command_env(tmp_path, LLM_PROVIDER="extractive")
    loaded_by(env, tmp_path, "migrate")
    ingested, ingest_modules = loaded_by(env, tmp_path, "ingest")
    found, search_modules = loaded_by(env, tmp_path, "search", PARAPHRASE, "--limit", "1")

    assert "hybrid" in ingested.lower() or "4 added" in ingested
    assert "bookchat.providers.embeddings.numpy_bert" in search_modules
    for modules in (ingest_modules, search_modules):
        assert not packages(modules) & (MODEL_LIBRARIES - {"openai"})
    assert "motion/walking#balance" in found

    lexical = command_env(tmp_path / "bm25", LLM_PROVIDER="extractive", EMBEDDINGS_PROVIDER="none")
    (tmp_path / "bm25").mkdir()
    loaded_by(lexical, tmp_path, "migrate")
    loaded_by(lexical, tmp_path, "ingest")
    words_only, _ = loaded_by(lexical, tmp_path, "search", PARAPHRASE, "--limit", "1")
    assert "motion/walking#gait-cycle" in words_only


def test_if_empty_rebuilds_an_index_the_previous_default_built(tmp_path: Path) -> None:
    """`make run` after an upgrade: the index was built BM25-only (the default had no model
    here), the default now has one; `ingest --if-empty` rebuilds it instead of the server
    refusing to start. A chosen embedder still gets the error (test above)."""
    env = command_env(tmp_path, EMBEDDINGS_PROVIDER="none", LLM_PROVIDER="extractive")
    loaded_by(env, tmp_path, "migrate")
    loaded_by(env, tmp_path, "ingest")
    del env["EMBEDDINGS_PROVIDER"]

    rebuilt, _ = loaded_by(env, tmp_path, "ingest", "--if-empty")
    again, _ = loaded_by(env, tmp_path, "ingest", "--if-empty")
    found, _ = loaded_by(env, tmp_path, "search", PARAPHRASE, "--limit", "1")

    assert "The index was built with BM25 only: rebuilding it for the default." in rebuilt
    assert "hybrid retrieval" in rebuilt
    assert "nothing to ingest" in again
    assert "motion/walking#balance" in found
