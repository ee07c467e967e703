"""Tiny local embedding models that fastembed loads like the real ones, written on the spot
(no model hub): an ONNX graph and a `tokenizers` tokenizer in a folder.

The graph looks up each token's vector and sums them ([batch, 1, dim], the "CLS" position
fastembed pools for bge), so different texts get different vectors. The ONNX protobuf is
written by hand because the `onnx` package is not a dependency.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = ["robot", "joint", "topic", "node", "publish", "sensor", "camera", "lidar", "arm"]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: int | str | bytes) -> bytes:
    """One protobuf field: an int as a varint, text and bytes length-delimited."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, array: np.ndarray) -> bytes:
    data_type = {np.dtype(np.float32): 1, np.dtype(np.int64): 7}[array.dtype]
    dims = b"".join(_field(1, d) for d in array.shape)
    return dims + _field(2, data_type) + _field(8, name) + _field(9, array.tobytes())


def _value_info(name: str, elem_type: int, dims: list[int | str]) -> bytes:
    shape = b"".join(_field(1, _field(2 if isinstance(d, str) else 1, d)) for d in dims)
    return _field(1, name) + _field(2, _field(1, _field(1, elem_type) + _field(2, shape)))


def _node(op: str, inputs: list[str], outputs: list[str]) -> bytes:
    return b"".join(
        [*(_field(1, i) for i in inputs), *(_field(2, o) for o in outputs), _field(4, op)]
    )


def _with_specials(tokenizer: Tokenizer) -> Tokenizer:
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tokenizer


def word_tokenizer() -> Tokenizer:
    """A word-level tokenizer over a few robotics words; any other word is one `[UNK]`."""
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return _with_specials(tokenizer)


def letter_pair_tokenizer() -> Tokenizer:
    """A BERT-style WordPiece tokenizer that knows only letter pairs, single characters and
    punctuation: English costs about two tokens a word, twice the chunker's estimate, as code or
    a script the vocabulary covers badly would."""
    pairs = [a + b for a in string.ascii_lowercase for b in string.ascii_lowercase]
    singles = list(string.ascii_lowercase + string.digits)
    pieces = [*singles, *pairs]
    vocab = [*SPECIAL_TOKENS, *pieces, *(f"##{p}" for p in pieces), *string.punctuation]
    tokenizer = Tokenizer(
        models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]")
    )
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return _with_specials(tokenizer)


def write_tiny_model(
    folder: Path,
    *,
    tokenizer: Tokenizer | None = None,
    max_length: int = 512,
    dim: int = 384,
    model_file: str = "model_optimized.onnx",
) -> Path:
    """A stand-in for a fastembed ONNX export (by default bge-small's file names) whose
    tokenizer truncates at `max_length`, fastembed's reading of `model_max_length`."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or word_tokenizer()
    rows = tokenizer.get_vocab_size()
    table = np.random.default_rng(7).standard_normal((rows, dim)).astype(np.float32)
    graph = b"".join(
        [
            _field(1, _node("Gather", ["table", "input_ids"], ["token_vectors"])),
            _field(1, _node("ReduceSum", ["token_vectors", "axes"], ["last_hidden_state"])),
            _field(2, "tiny-model"),
            _field(5, _tensor("table", table)),
            _field(5, _tensor("axes", np.array([1], dtype=np.int64))),
            _field(11, _value_info("input_ids", 7, ["batch", "sequence"])),
            _field(12, _value_info("last_hidden_state", 1, ["batch", 1, dim])),
        ]
    )
    opset = _field(1, "") + _field(2, 13)
    (folder / model_file).write_bytes(_field(1, 8) + _field(8, opset) + _field(7, graph))
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"model_max_length": max_length, "pad_token": "[PAD]"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "config.json").write_text(json.dumps({"pad_token_id": 0}))
    return folder


def write_tiny_bge(folder: Path, dim: int = 384) -> Path:
    """A stand-in for the bge-small ONNX export: same file names, random token vectors."""
    return write_tiny_model(folder, dim=dim)
