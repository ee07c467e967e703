"""Password hashing and the rules for new passwords."""

from __future__ import annotations

import pytest

from bookchat.accounts import passwords
from bookchat.accounts.passwords import (
    DUMMY_HASH,
    hash_password,
    password_problem,
    verify_password,
)


def test_hash_and_verify() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert verify_password("correct horse battery", hashed)
    assert not verify_password("correct horse batterY", hashed)
    assert not verify_password("anything", "not-a-hash")


def test_no_hash_still_verifies_against_the_dummy_and_fails() -> None:
    assert not verify_password("anything", None)


def test_dummy_hash_costs_what_a_real_one_costs() -> None:
    # Same algorithm and parameters as new hashes: an unknown email takes as long as a known one.
    [hasher] = passwords.PASSWORD_HASH.hashers
    assert not hasher.check_needs_rehash(DUMMY_HASH)
    assert DUMMY_HASH.split("$")[:4] == hash_password("x" * 8).split("$")[:4]


@pytest.mark.parametrize(
    ("password", "email", "problem"),
    [
        ("1234567", None, "at least 8"),
        ("x" * 129, None, "at most 128"),
        ("\t \n     ", None, "only spaces"),
        (" Ada@Example.org ", "ada@example.org", "email address"),
        ("12345678", None, None),
        ("x" * 128, "ada@example.org", None),
    ],
)
def test_password_rules(password: str, email: str | None, problem: str | None) -> None:
    found = password_problem(password, email)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
