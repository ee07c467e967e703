"""The Authorization header as clients send it, read the same way everywhere."""

from __future__ import annotations

import pytest

from bookchat.core.http import parse_bearer


class TestParseBearer:
    @pytest.mark.parametrize(
        "header", ["Bearer abc.def", "bearer abc.def", "BEARER  abc.def ", "  Bearer abc.def"]
    )
    def test_bearer_token_is_read(self, header: str) -> None:
        assert parse_bearer(header) == "abc.def"

    @pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "abc.def"])
    def test_missing_or_other_forms_are_none(self, header: str | None) -> None:
        assert parse_bearer(header) is None
