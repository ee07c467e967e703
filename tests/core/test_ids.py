"""Ids read from requests and tokens: a UUID, or None for anything else."""

from __future__ import annotations

import uuid

import pytest

from bookchat.core.ids import parse_uuid


class TestParseUuid:
    def test_canonical_and_uppercase_text_parse(self) -> None:
        value = uuid.uuid4()
        assert parse_uuid(str(value)) == value
        assert parse_uuid(str(value).upper()) == value

    @pytest.mark.parametrize("raw", [None, "", "not-a-uuid", "1234", "g" * 32])
    def test_missing_or_malformed_is_none(self, raw: str | None) -> None:
        assert parse_uuid(raw) is None
