"""`bookchat create-admin`: create or promote an admin from the command line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from bookchat.accounts.models import User, UserRole
from bookchat.accounts.passwords import verify_password
from bookchat.cli import app
from bookchat.core.config import get_settings
from tests.factories import stored

runner = CliRunner()


@pytest.fixture(autouse=True)
def _database(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    yield sqlite_url
    get_settings.cache_clear()


def stored_users(url: str) -> list[User]:
    return asyncio.run(stored(url, User))


class TestCreateAdmin:
    def test_creates_an_admin_from_stdin(self, sqlite_url: str) -> None:
        result = runner.invoke(
            app, ["create-admin", "Root@Example.org", "--password-stdin"], input="s3cret pass\n"
        )
        assert result.exit_code == 0, result.output
        assert "Created the admin account root@example.org." in result.output
        [user] = stored_users(sqlite_url)
        assert user.email == "root@example.org"
        assert user.role is UserRole.ADMIN
        assert verify_password("s3cret pass", user.password_hash)  # the newline is not in it

    def test_promotes_an_existing_account_and_keeps_its_password(self, sqlite_url: str) -> None:
        runner.invoke(
            app, ["create-admin", "a@example.org", "--password-stdin"], input="first pass\n"
        )
        again = runner.invoke(
            app, ["create-admin", "a@example.org", "--password-stdin"], input="\n"
        )
        assert again.exit_code == 0, again.output
        assert "already an admin; nothing changed" in again.output
        [user] = stored_users(sqlite_url)
        assert verify_password("first pass", user.password_hash)

    def test_prompts_twice(self, sqlite_url: str) -> None:
        result = runner.invoke(
            app, ["create-admin", "b@example.org"], input="prompted pass\nprompted pass\n"
        )
        assert result.exit_code == 0, result.output
        assert "Repeat for confirmation" in result.output
        assert "prompted pass" not in result.output  # hidden input
        [user] = stored_users(sqlite_url)
        assert verify_password("prompted pass", user.password_hash)

    def test_weak_password_exits_1(self, sqlite_url: str) -> None:
        result = runner.invoke(
            app, ["create-admin", "c@example.org", "--password-stdin"], input="short\n"
        )
        assert result.exit_code == 1
        assert "Weak password: Use at least 8 characters." in result.output
        assert stored_users(sqlite_url) == []

    def test_new_admin_needs_a_password(self, sqlite_url: str) -> None:
        result = runner.invoke(app, ["create-admin", "d@example.org", "--password-stdin"], input="")
        assert result.exit_code == 1
        assert "needs a password" in result.output
        assert stored_users(sqlite_url) == []

    def test_invalid_email(self) -> None:
        result = runner.invoke(app, ["create-admin", "nobody", "--password-stdin"], input="x\n")
        assert result.exit_code == 2
        assert "valid email address" in result.output


class TestLinkIdentity:
    def admin(self) -> None:
        result = runner.invoke(
            app, ["create-admin", "root@example.org", "--password-stdin"], input="s3cret pass\n"
        )
        assert result.exit_code == 0, result.output

    def test_links_an_external_identity_to_an_admin(self, sqlite_url: str) -> None:
        self.admin()
        result = runner.invoke(app, ["link-identity", "Root@Example.org", "ba-root"])
        again = runner.invoke(app, ["link-identity", "root@example.org", "ba-root"])

        assert result.exit_code == 0, result.output
        assert "root@example.org (admin) now signs in as the identity ba-root." in result.output
        assert again.exit_code == 0
        assert "already linked" in again.output
        [user] = stored_users(sqlite_url)
        assert user.external_id == "ba-root"
        assert user.role is UserRole.ADMIN

    def test_refusals_exit_1_and_change_nothing(self, sqlite_url: str) -> None:
        self.admin()
        runner.invoke(app, ["link-identity", "root@example.org", "ba-root"])
        runner.invoke(
            app, ["create-admin", "other@example.org", "--password-stdin"], input="s3cret pass\n"
        )
        unknown = runner.invoke(app, ["link-identity", "nobody@example.org", "ba-x"])
        relink = runner.invoke(app, ["link-identity", "root@example.org", "ba-other"])
        taken = runner.invoke(app, ["link-identity", "other@example.org", "ba-root"])
        invalid = runner.invoke(app, ["link-identity", "not-an-email", "ba-x"])

        assert (unknown.exit_code, relink.exit_code, taken.exit_code) == (1, 1, 1)
        assert "has no account" in unknown.output
        assert "already linked to another identity" in relink.output
        assert "already has the account root@example.org" in taken.output
        assert invalid.exit_code == 2
        linked = {user.email: user.external_id for user in stored_users(sqlite_url)}
        assert linked == {"root@example.org": "ba-root", "other@example.org": None}
