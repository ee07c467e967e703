"""The words of a text as search sees them: lower-cased, stop words dropped, Snowball-stemmed.

The same reading as the BM25 encoder (sparse.py), so that what the reranker, the relevance gate
and the offline answerer call "the question's words" are the words BM25 matched on.
"""

from __future__ import annotations

import re
from functools import lru_cache

import mmh3
from py_rust_stemmers import SnowballStemmer

from bookchat.providers.sparse import english_stop_words

# fastembed's BM25 drops longer tokens too (its `token_max_length`).
MAX_TOKEN_CHARS = 40
_NON_WORD = re.compile(r"[^\w]+")


@lru_cache(maxsize=1)
def _stemmer() -> SnowballStemmer:
    return SnowballStemmer("english")


def words(text: str) -> list[str]:
    """The text's words, lower-cased, as BM25 tokenises them (anything not a word character
    separates words)."""
    return _NON_WORD.sub(" ", text.lower()).split()


def content_terms(text: str) -> list[str]:
    """The text's stemmed content words in order, repeats kept: stop words and over-long
    tokens dropped."""
    stop = english_stop_words()
    kept = [w for w in words(text) if w not in stop and len(w) <= MAX_TOKEN_CHARS]
    return _stemmer().stem_words(kept) if kept else []


def term_id(term: str) -> int:
    """The id the BM25 encoder gives a stemmed term in the sparse index."""
    return abs(mmh3.hash(term))
