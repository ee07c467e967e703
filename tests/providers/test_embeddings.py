"""Dense embedders: OpenAI through the real SDK against the fake server; fastembed offline."""

from __future__ import annotations

import importlib.util
import math
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from bookchat.core.errors import DependencyUnavailable
from bookchat.providers.embeddings import (
    Embedder,
    EmbedderUnavailable,
    EmbeddingsUnavailable,
    FastEmbedEmbedder,
    OpenAIEmbedder,
    SentenceTransformersEmbedder,
    l2_normalize,
)
from tests.conftest import free_port
from tests.fakes.embedding_model import letter_pair_tokenizer, write_tiny_bge, write_tiny_model
from tests.fakes.openai_server import FakeOpenAIServer, fake_embedding


def test_l2_normalize() -> None:
    assert l2_normalize([3, 4]) == pytest.approx([0.6, 0.8])
    assert l2_normalize([0.0, 0.0]) == [0.0, 0.0]
    assert all(
        type(x) is float
        for x in l2_normalize(cast("list[float]", np.array([1, 2], dtype=np.float32)))
    )


# --- OpenAI --------------------------------------------------------------------------------------


@pytest.fixture
async def openai_embedder(fake_openai: FakeOpenAIServer) -> AsyncIterator[OpenAIEmbedder]:
    """A model the embedder knows nothing about, as on Ollama or vLLM."""
    embedder = OpenAIEmbedder(
        model="nomic-embed-text",
        api_key="sk-test",
        base_url=fake_openai.base_url,
        batch_size=64,
        timeout=2.0,
        max_retries=0,
    )
    yield embedder
    await embedder.aclose()


class TestOpenAIEmbedder:
    async def test_batches_keep_the_input_order(
        self, openai_embedder: OpenAIEmbedder, fake_openai: FakeOpenAIServer
    ) -> None:
        texts = [f"passage number {i} about topic {i % 7}" for i in range(300)]

        vectors = await openai_embedder.embed_documents(texts)

        assert vectors == [pytest.approx(fake_embedding(t, 16), abs=1e-6) for t in texts]
        assert all(type(v) is list and type(v[0]) is float for v in vectors)
        requests = fake_openai.embedding_requests()
        assert sorted(len(r["input"]) for r in requests) == [44, 64, 64, 64, 64]
        assert sorted(t for r in requests for t in r["input"]) == sorted(texts)
        assert all(r["model"] == "nomic-embed-text" and "dimensions" not in r for r in requests)

    async def test_learns_an_unknown_dimension_once(
        self, openai_embedder: OpenAIEmbedder, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.embedding_dim = 24
        with pytest.raises(RuntimeError, match="ensure_ready"):
            _ = openai_embedder.dimension

        await openai_embedder.ensure_ready()
        await openai_embedder.ensure_ready()

        assert openai_embedder.dimension == 24
        assert len(fake_openai.embedding_requests()) == 1
        assert len(await openai_embedder.embed_query("joint")) == 24

    async def test_a_known_model_needs_no_probe(self, fake_openai: FakeOpenAIServer) -> None:
        embedder = OpenAIEmbedder(api_key=None, base_url=fake_openai.base_url)
        await embedder.ensure_ready()
        assert embedder.name == "openai:text-embedding-3-small"
        assert embedder.dimension == 1536
        assert embedder.max_input_tokens == 8191
        assert isinstance(embedder, Embedder)
        assert fake_openai.embedding_requests() == []
        await embedder.aclose()

    def test_counts_at_least_the_tokens_of_a_byte_level_bpe(self) -> None:
        # No tokenizer ships offline: a text's UTF-8 bytes bound what byte-level BPE makes.
        embedder = OpenAIEmbedder(api_key="sk-test")
        assert embedder.count_tokens("naïve robot") == 12
        assert embedder.count_tokens("") == 0

    async def test_an_explicit_dimension_is_requested_from_text_embedding_3(
        self, fake_openai: FakeOpenAIServer
    ) -> None:
        embedder = OpenAIEmbedder(
            model="text-embedding-3-large",
            api_key="sk-test",
            base_url=fake_openai.base_url,
            dimension=256,
        )
        [vector] = await embedder.embed_documents(["Isaac Sim"])
        await embedder.aclose()
        assert embedder.dimension == 256
        assert len(vector) == 256
        assert fake_openai.embedding_requests()[0]["dimensions"] == 256

    async def test_other_models_never_get_the_dimensions_parameter(
        self, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.embedding_dim = 32
        embedder = OpenAIEmbedder(
            model="text-embedding-ada-002",
            api_key="sk-test",
            base_url=fake_openai.base_url,
            dimension=32,
        )
        assert len(await embedder.embed_query("Gazebo")) == 32
        await embedder.aclose()
        assert "dimensions" not in fake_openai.embedding_requests()[0]

    async def test_vectors_of_the_wrong_size_are_refused(
        self, fake_openai: FakeOpenAIServer
    ) -> None:
        embedder = OpenAIEmbedder(  # 1536 expected, the fake answers with 16
            api_key="sk-test", base_url=fake_openai.base_url, max_retries=0
        )
        with pytest.raises(DependencyUnavailable, match="unusable response"):
            await embedder.embed_query("URDF")
        await embedder.aclose()

    async def test_query_and_documents(
        self, openai_embedder: OpenAIEmbedder, fake_openai: FakeOpenAIServer
    ) -> None:
        query = await openai_embedder.embed_query("What is a URDF file?")
        documents = await openai_embedder.embed_documents(["What is a URDF file?", "Nav2"])
        assert query == pytest.approx(fake_embedding("What is a URDF file?", 16), abs=1e-6)
        assert documents[0] == query
        assert [r["input"] for r in fake_openai.embedding_requests()] == [
            ["What is a URDF file?"],
            ["What is a URDF file?", "Nav2"],
        ]

    async def test_empty_input_sends_nothing(
        self, openai_embedder: OpenAIEmbedder, fake_openai: FakeOpenAIServer
    ) -> None:
        assert await openai_embedder.embed_documents([]) == []
        assert fake_openai.embedding_requests() == []

    @pytest.mark.parametrize(
        ("status", "says", "reason"),
        [
            (500, "is failing", "server_error"),
            (503, "is failing", "server_error"),
            (429, "rate limiting", "rate_limited"),
            (401, "OPENAI_API_KEY", "credentials"),
            (400, "rejected our request", "rejected"),
        ],
    )
    async def test_vendor_errors_become_dependency_unavailable(
        self,
        openai_embedder: OpenAIEmbedder,
        fake_openai: FakeOpenAIServer,
        status: int,
        says: str,
        reason: str,
    ) -> None:
        fake_openai.fail_next(status, message="vendor secret sk-live-1")
        with pytest.raises(EmbeddingsUnavailable) as raised:
            await openai_embedder.embed_query("ROS 2")
        assert isinstance(raised.value, DependencyUnavailable)
        assert raised.value.status_code == 503
        assert (raised.value.reason, raised.value.status) == (reason, status)
        assert says in raised.value.message
        assert "vendor secret" not in raised.value.message

    async def test_a_timeout_is_dependency_unavailable(self, fake_openai: FakeOpenAIServer) -> None:
        fake_openai.hang_next(5.0)
        embedder = OpenAIEmbedder(
            model="nomic-embed-text",
            api_key="sk-test",
            base_url=fake_openai.base_url,
            timeout=0.3,
            max_retries=0,
        )
        with pytest.raises(DependencyUnavailable, match="took too long"):
            await embedder.embed_documents(["slow"])
        await embedder.aclose()

    async def test_an_unreachable_endpoint_is_dependency_unavailable(self) -> None:
        embedder = OpenAIEmbedder(
            model="nomic-embed-text",
            api_key="sk-test",
            base_url=f"http://127.0.0.1:{free_port()}/v1",
            max_retries=0,
        )
        with pytest.raises(DependencyUnavailable, match="cannot be reached"):
            await embedder.embed_query("nobody listens")
        await embedder.aclose()

    async def test_one_failed_batch_fails_the_call(
        self, openai_embedder: OpenAIEmbedder, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.fail_next(503)
        with pytest.raises(DependencyUnavailable):
            await openai_embedder.embed_documents([f"text {i}" for i in range(200)])

    async def test_the_sdk_retries_on_its_own(self, fake_openai: FakeOpenAIServer) -> None:
        fake_openai.fail_next(500, retry_after=0)
        embedder = OpenAIEmbedder(
            model="nomic-embed-text",
            api_key="sk-test",
            base_url=fake_openai.base_url,
            max_retries=1,
        )
        assert len(await embedder.embed_query("retry")) == 16
        await embedder.aclose()
        assert len(fake_openai.embedding_requests()) == 2

    def test_settings_are_checked(self) -> None:
        with pytest.raises(ValueError, match="batch_size"):
            OpenAIEmbedder(api_key="k", batch_size=0)
        with pytest.raises(ValueError, match="dimension"):
            OpenAIEmbedder(api_key="k", dimension=0)


# --- fastembed -----------------------------------------------------------------------------------

BGE = "BAAI/bge-small-en-v1.5"
BGE_REPO_FOLDER = "models--Qdrant--bge-small-en-v1.5-onnx-Q"


class TestFastEmbedEmbedder:
    async def test_loads_a_local_model_folder(self, tmp_path: Path) -> None:
        model_path = write_tiny_bge(tmp_path / "bge")
        embedder = FastEmbedEmbedder(
            model=BGE, model_path=str(model_path), cache_dir=str(tmp_path / "cache")
        )
        assert isinstance(embedder, Embedder)
        assert embedder.name == "fastembed:BAAI/bge-small-en-v1.5"
        assert (embedder.dimension, embedder.max_input_tokens) == (384, 512)
        await embedder.ensure_ready()

        vectors = await embedder.embed_documents(["robot joint", "camera lidar", "robot joint"])
        query = await embedder.embed_query("robot joint")

        assert vectors[0] == vectors[2] != vectors[1]
        assert query == pytest.approx(vectors[0], abs=1e-6)
        for vector in [*vectors, query]:
            assert type(vector) is list
            assert len(vector) == 384
            assert all(type(x) is float for x in vector)
            assert math.fsum(x * x for x in vector) == pytest.approx(1.0, abs=1e-5)
        assert await embedder.embed_documents([]) == []
        await embedder.aclose()

    def test_counts_tokens_with_the_models_tokenizer_past_its_window(self, tmp_path: Path) -> None:
        model_path = write_tiny_model(
            tmp_path / "model", tokenizer=letter_pair_tokenizer(), max_length=256
        )
        embedder = FastEmbedEmbedder(
            model=BGE, model_path=str(model_path), cache_dir=str(tmp_path / "cache")
        )
        assert embedder.max_input_tokens == 256
        # "publisher" is pu ##bl ##is ##he ##r; [CLS] and [SEP] count too, and nothing is cut.
        assert embedder.count_tokens("publisher") == 7
        assert embedder.count_tokens("publisher " * 300) == 1502

    async def test_loads_from_the_model_cache_without_downloading(self, tmp_path: Path) -> None:
        revision = "0123456789abcdef0123456789abcdef01234567"
        repo = tmp_path / "cache" / BGE_REPO_FOLDER
        write_tiny_bge(repo / "snapshots" / revision)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(revision)

        embedder = FastEmbedEmbedder(cache_dir=str(tmp_path / "cache"), allow_download=False)

        assert embedder.dimension == 384
        assert len(await embedder.embed_query("robot")) == 384

    def test_no_cached_model_and_no_downloads_fails_at_once(self, tmp_path: Path) -> None:
        with pytest.raises(EmbedderUnavailable) as raised:
            FastEmbedEmbedder(cache_dir=str(tmp_path), allow_download=False)
        message = str(raised.value)
        assert BGE in message
        assert "downloads are off" in message
        assert "EMBEDDINGS_MODEL_PATH" in message
        assert "EMBEDDINGS_PROVIDER=openai" in message
        assert "\n" not in message

    def test_hf_hub_offline_fails_at_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(EmbedderUnavailable, match="HF_HUB_OFFLINE forbids downloading it"):
            FastEmbedEmbedder(cache_dir=str(tmp_path), download_timeout=30)

    def test_an_unknown_model_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(EmbedderUnavailable, match="does not know the embedding model 'nope/x'"):
            FastEmbedEmbedder(model="nope/x", cache_dir=str(tmp_path))

    def test_a_model_path_that_is_not_a_folder(self, tmp_path: Path) -> None:
        with pytest.raises(EmbedderUnavailable, match="is not a folder"):
            FastEmbedEmbedder(model_path=str(tmp_path / "missing"), cache_dir=str(tmp_path))

    def test_a_model_path_without_the_model(self, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        with pytest.raises(EmbedderUnavailable, match="cannot be loaded from"):
            FastEmbedEmbedder(model_path=str(tmp_path / "empty"), cache_dir=str(tmp_path))


DOWNLOAD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from bookchat.providers.embeddings import EmbedderUnavailable, FastEmbedEmbedder

    started = time.perf_counter()
    try:
        FastEmbedEmbedder(cache_dir=sys.argv[1], download_timeout=float(sys.argv[2]))
    except EmbedderUnavailable as exc:
        print(f"{time.perf_counter() - started:.2f}")
        print(exc)
    """
)


def run_download(endpoint: str, cache_dir: Path, timeout: float) -> tuple[float, str]:
    """Build a FastEmbedEmbedder in a fresh interpreter whose Hugging Face hub is `endpoint`.

    huggingface_hub reads HF_ENDPOINT once, at import, hence the separate process; it also makes
    the test independent of whether this machine can reach the real hub.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_ENDPOINT"] = endpoint
    done = subprocess.run(
        [sys.executable, "-c", DOWNLOAD_SCRIPT, str(cache_dir), str(timeout)],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,  # the process must exit even though a download thread may still hang
    )
    assert done.returncode == 0, done.stderr
    elapsed, message = done.stdout.strip().splitlines()[-2:]  # after any log lines
    return float(elapsed), message


@pytest.fixture
def silent_hub() -> Iterator[str]:
    """A hub that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def closed_hub() -> str:
    """A hub nobody listens on: every connection is refused at once, as with no network."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class TestFastEmbedDownload:
    def test_an_unreachable_hub_fails_with_the_reason(
        self, closed_hub: str, tmp_path: Path
    ) -> None:
        elapsed, message = run_download(closed_hub, tmp_path, timeout=20)
        assert elapsed < 20, message  # it failed, it did not time out
        assert f"{BGE} is not in the model cache" in message
        assert "could not be downloaded (ConnectError: " in message
        assert "EMBEDDINGS_MODEL_PATH" in message

    def test_a_silent_hub_is_given_up_on(self, silent_hub: str, tmp_path: Path) -> None:
        elapsed, message = run_download(silent_hub, tmp_path, timeout=1)
        assert elapsed < 30  # safety net only
        assert f"{BGE} is not in the model cache" in message
        assert "could not be downloaded within 1 s" in message


# --- sentence-transformers -----------------------------------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is not None,
    reason="the sentence-transformers extra is installed",
)
def test_sentence_transformers_without_the_extra_says_how_to_install_it() -> None:
    with pytest.raises(EmbedderUnavailable) as raised:
        SentenceTransformersEmbedder()
    assert "pip install 'bookchat[sentence-transformers]'" in str(raised.value)
