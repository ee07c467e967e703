"""The accounts API: sign-up, login, the current user, the profile, tokens and the admin gate."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import text

from bookchat.accounts import passwords
from bookchat.accounts.tokens import issue_access_token
from bookchat.chat.models import ChatSession, Message, MessageFeedback, MessageRole
from tests.accounts.conftest import (
    PASSWORD,
    SECRET,
    account_settings,
    promote,
)
from tests.conftest import AppFactory
from tests.factories import bearer, execute_sql, open_db, sign_up

ME = "/api/v1/auth/me"
PROFILE = "/api/v1/auth/me/profile"
LOGIN = "/api/v1/auth/login"


class TestSignup:
    async def test_creates_an_account_and_a_working_token(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(database_url)) as client:
            response = await client.post(
                "/api/v1/auth/signup",
                json={"email": "  Ada@Example.ORG ", "password": PASSWORD, "name": " Ada "},
            )
            body = response.json()
            me = await client.get(ME, headers=bearer(body["access_token"]))

        assert response.status_code == 201
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 60 * 60
        assert body["user"]["email"] == "ada@example.org"
        assert body["user"]["name"] == "Ada"
        assert body["user"]["role"] == "user"
        assert me.status_code == 200
        assert me.json()["id"] == body["user"]["id"]
        assert me.json()["profile"] is None
        rows = await execute_sql(database_url, "SELECT email, password_hash FROM users")
        assert rows[0][0] == "ada@example.org"
        assert rows[0][1].startswith("$argon2id$")  # never the password itself

    async def test_duplicate_email_in_another_case_is_a_conflict(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(database_url)) as client:
            await sign_up(client, "ada@example.org")
            again = await client.post(
                "/api/v1/auth/signup", json={"email": "ADA@example.org", "password": PASSWORD}
            )
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "conflict"
        assert await execute_sql(database_url, "SELECT count(*) FROM users") == [(1,)]

    @pytest.mark.parametrize(
        ("password", "message"),
        [
            ("short", "at least 8 characters"),
            ("x" * 129, "at most 128 characters"),
            (" " * 12, "only spaces"),
            ("Ada@Example.org", "cannot be the email address"),
        ],
        ids=["short", "long", "blank", "email"],
    )
    async def test_weak_passwords(
        self, password: str, message: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            response = await client.post(
                "/api/v1/auth/signup", json={"email": "ada@example.org", "password": password}
            )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["message"].startswith("password: ")
        assert message in error["message"]

    @pytest.mark.parametrize(
        "email",
        [
            "not-an-email",
            "a@b",
            "two@@example.org",
            "space in@example.org",
            ".dot@example.org",
            "a@-example.org",
            "x" * 65 + "@example.org",
            "someone@users.invalid",
        ],
    )
    async def test_invalid_emails(
        self, email: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            response = await client.post(
                "/api/v1/auth/signup", json={"email": email, "password": PASSWORD}
            )
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith("email: ")

    @pytest.mark.parametrize(
        "email",
        ["o'brien+book@mail.example.co.uk", "δοκιμή@παράδειγμα.δοκιμή", "a@xn--bcher-kva.de"],
    )
    async def test_unusual_but_valid_emails(
        self, email: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            body = await sign_up(client, email)
        assert body["user"]["email"] == email.lower()


class TestLogin:
    async def test_json_and_oauth2_form(self, database_url: str, app_factory: AppFactory) -> None:
        async with app_factory(account_settings(database_url)) as client:
            await sign_up(client, "ada@example.org")
            as_json = await client.post(
                LOGIN, json={"email": "Ada@Example.org", "password": PASSWORD}
            )
            as_form = await client.post(
                LOGIN,
                data={
                    "grant_type": "password",
                    "username": "ada@example.org",
                    "password": PASSWORD,
                },
            )
            as_multipart = await client.post(
                LOGIN, files={"username": (None, "ada@example.org"), "password": (None, PASSWORD)}
            )
            me = await client.get(ME, headers=bearer(as_form.json()["access_token"]))

        assert as_json.status_code == 200
        assert as_form.status_code == 200
        assert as_multipart.status_code == 200
        assert as_json.json()["user"]["email"] == "ada@example.org"
        assert as_form.json()["token_type"] == "bearer"
        assert me.json()["email"] == "ada@example.org"

    async def test_unknown_email_and_wrong_password_look_the_same(
        self, database_url: str, app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        counting = CountingHash(passwords.PASSWORD_HASH)
        async with app_factory(account_settings(database_url)) as client:
            await sign_up(client, "ada@example.org")
            monkeypatch.setattr(passwords, "PASSWORD_HASH", counting)
            wrong = await client.post(
                LOGIN, json={"email": "ada@example.org", "password": "wrong password"}
            )
            wrong_verified = list(counting.verified)
            counting.verified.clear()
            unknown = await client.post(
                LOGIN, data={"username": "nobody@example.org", "password": "wrong password"}
            )

        assert wrong.status_code == unknown.status_code == 401
        assert _without_request_id(wrong.json()) == _without_request_id(unknown.json())
        assert wrong.json()["error"]["message"] == "The email or password is not correct."
        assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"
        # Same code path: one Argon2 verification each, the unknown email's against the dummy.
        assert len(wrong_verified) == 1
        assert wrong_verified[0].startswith("$argon2id$")
        assert wrong_verified[0] != passwords.DUMMY_HASH
        assert counting.verified == [passwords.DUMMY_HASH]

    async def test_account_without_password_is_refused_the_same_way(
        self, sqlite_url: str, app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        counting = CountingHash(passwords.PASSWORD_HASH)
        async with app_factory(account_settings(sqlite_url)) as client:
            await sign_up(client, "ada@example.org")
            await execute_sql(sqlite_url, "UPDATE users SET password_hash = NULL")
            monkeypatch.setattr(passwords, "PASSWORD_HASH", counting)
            response = await client.post(
                LOGIN, json={"email": "ada@example.org", "password": PASSWORD}
            )
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "The email or password is not correct."
        assert counting.verified == [passwords.DUMMY_HASH]

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"json": {"email": "ada@example.org"}}, "password: Field required"),
            ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, "JSON"),
            ({"data": {"password": PASSWORD}}, "username: "),
            (
                {"data": {"grant_type": "client_credentials", "username": "a", "password": "b"}},
                "grant_type",
            ),
        ],
        ids=["json-missing-password", "bad-json", "form-missing-username", "wrong-grant"],
    )
    async def test_malformed_requests(
        self, kwargs: dict[str, Any], message: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            response = await client.post(LOGIN, **kwargs)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"
        assert message in response.json()["error"]["message"]

    async def test_openapi_documents_the_form_and_the_security_scheme(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            schema = (await client.get("/openapi.json")).json()
        body = schema["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]
        assert set(body) == {
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "application/json",
        }
        schemes = schema["components"]["securitySchemes"]
        flow = next(iter(schemes.values()))["flows"]["password"]
        assert flow["tokenUrl"] == "/api/v1/auth/login"
        assert "security" in schema["paths"]["/api/v1/auth/me"]["get"]


class TestLoginLimits:
    """RATE_LIMIT_LOGIN counts per client address, and per account only at that address."""

    @staticmethod
    def login(client: Any, address: str, password: str) -> Any:
        return client.post(
            LOGIN,
            json={"email": "ada@example.org", "password": password},
            headers={"X-Forwarded-For": address},
        )

    @pytest.mark.parametrize("storage", ["memory", "redis"])
    async def test_a_stranger_cannot_lock_a_reader_out(
        self, storage: str, sqlite_url: str, app_factory: AppFactory, request: pytest.FixtureRequest
    ) -> None:
        redis_url = request.getfixturevalue("redis_url") if storage == "redis" else None
        # The in-process transport's peer is 127.0.0.1: the proxy that forwards both addresses.
        settings = account_settings(
            sqlite_url,
            rate_limit_login="3/minute",
            trusted_proxies="127.0.0.1",
            redis_url=redis_url,
        )
        async with app_factory(settings) as client:
            await sign_up(client, "ada@example.org")
            guesses = [await self.login(client, "203.0.113.66", "wrong guess") for _ in range(4)]
            ada = await self.login(client, "198.51.100.7", PASSWORD)

        assert [r.status_code for r in guesses] == [401, 401, 401, 429]
        assert int(guesses[-1].headers["retry-after"]) >= 1
        assert ada.status_code == 200

    async def test_one_address_guessing_many_accounts_is_limited(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = account_settings(sqlite_url, rate_limit_login="3/minute")
        async with app_factory(settings) as client:
            codes = [
                (
                    await client.post(
                        LOGIN, json={"email": f"user{n}@example.org", "password": "guess pass"}
                    )
                ).status_code
                for n in range(4)
            ]
        assert codes == [401, 401, 401, 429]


class TestMe:
    async def test_needs_a_token(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            response = await client.get(ME)
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "Sign-in required."
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("header", ["Basic YWRhOnB3", "Bearer", "Bearer   ", "Token abc"])
    async def test_other_authorization_forms_are_refused(
        self, header: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            response = await client.get(ME, headers={"Authorization": header})
        assert response.status_code == 401
        assert "Bearer" in response.json()["error"]["message"]


def _segment(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


class TestTokens:
    async def test_tampered_and_foreign_tokens_are_refused(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(database_url)) as client:
            ada = await sign_up(client, "ada@example.org")
            bob = await sign_up(client, "bob@example.org")
            token = ada["access_token"]
            header, _, signature = token.split(".")
            good = _claims_of(token)
            now = datetime.now(UTC)
            forged = {
                # Bob's id in Ada's payload, Ada's signature.
                "tampered": f"{header}.{_segment({**good, 'sub': bob['user']['id']})}.{signature}",
                "alg-none": jwt.encode(good, "", algorithm="none"),
                "alg-none-unsigned": f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(good)}.",
                "other-secret": jwt.encode(good, "another-secret-of-enough-length-0123456789"),
                "hs512": jwt.encode(good, SECRET, algorithm="HS512"),
                "expired": issue_access_token(
                    uuid.UUID(ada["user"]["id"]),
                    secret=SECRET,
                    minutes=5,
                    now=now - timedelta(hours=2),
                ).access_token,
                "wrong-issuer": jwt.encode({**good, "iss": "someone-else"}, SECRET),
                "wrong-type": jwt.encode({**good, "typ": "refresh"}, SECRET),
                "no-exp": jwt.encode({k: v for k, v in good.items() if k != "exp"}, SECRET),
                "not-a-uuid": jwt.encode({**good, "sub": "ada"}, SECRET),
                "garbage": "not.a.jwt",
            }
            responses = {
                name: await client.get(ME, headers=bearer(t)) for name, t in forged.items()
            }
            still_good = await client.get(ME, headers=bearer(token))

        for name, response in responses.items():
            assert response.status_code == 401, name
            assert response.json()["error"]["code"] == "unauthorized", name
            assert response.headers["www-authenticate"].startswith("Bearer"), name
        assert still_good.status_code == 200

    async def test_token_of_a_deleted_user(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(database_url)) as client:
            ada = await sign_up(client, "ada@example.org")
            await execute_sql(database_url, "DELETE FROM users")
            response = await client.get(ME, headers=bearer(ada["access_token"]))
        assert response.status_code == 401
        assert "no longer exists" in response.json()["error"]["message"]

    async def test_claims(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(account_settings(sqlite_url, access_token_minutes=15)) as client:
            ada = await sign_up(client, "ada@example.org")
        claims = jwt.decode(ada["access_token"], SECRET, algorithms=["HS256"], issuer="bookchat")
        assert jwt.get_unverified_header(ada["access_token"])["alg"] == "HS256"
        assert claims["sub"] == ada["user"]["id"]
        assert claims["typ"] == "access"
        assert claims["exp"] - claims["iat"] == 15 * 60
        assert len(claims["jti"]) == 32
        assert ada["expires_in"] == 15 * 60


class TestProfile:
    async def test_round_trip(self, database_url: str, app_factory: AppFactory) -> None:
        profile = {
            "software_level": "advanced",
            "hardware_level": "beginner",
            "background": "  Web developer, new to robots.  ",
            "goals": "Build a walking robot.",
            "preferred_language": "PT-br",
        }
        async with app_factory(account_settings(database_url)) as client:
            ada = await sign_up(client, "ada@example.org")
            saved = await client.put(PROFILE, json=profile, headers=bearer(ada["access_token"]))
            me = await client.get(ME, headers=bearer(ada["access_token"]))
            cleared = await client.put(
                PROFILE,
                json={"software_level": "intermediate"},
                headers=bearer(ada["access_token"]),
            )

        assert saved.status_code == 200
        body = saved.json()
        assert body["background"] == "Web developer, new to robots."
        assert body["preferred_language"] == "pt-BR"
        assert body["software_level"] == "advanced"
        assert me.json()["profile"] == body
        # PUT replaces the profile: what is left out is cleared.
        assert cleared.json()["software_level"] == "intermediate"
        assert cleared.json()["goals"] is None
        assert cleared.json()["preferred_language"] is None

    @pytest.mark.parametrize(
        "profile",
        [
            {"software_level": "expert"},
            {"hardware_level": "Beginner"},
            {"background": "x" * 2001},
            {"goals": "y" * 2001},
            {"preferred_language": "e"},
            {"preferred_language": "english_us"},
            {"preferred_language": "en-" + "x" * 14},
            {"preferred_language": "12"},
            {"favourite_robot": "Atlas"},
        ],
    )
    async def test_invalid_profiles(
        self, profile: dict[str, Any], sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            ada = await sign_up(client, "ada@example.org")
            response = await client.put(PROFILE, json=profile, headers=bearer(ada["access_token"]))
            me = await client.get(ME, headers=bearer(ada["access_token"]))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"
        assert me.json()["profile"] is None

    @pytest.mark.parametrize("tag", ["en", "ur", "pt-BR", "zh-Hant-TW", "es-419"])
    async def test_language_tags(self, tag: str, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            ada = await sign_up(client, "ada@example.org")
            response = await client.put(
                PROFILE, json={"preferred_language": tag}, headers=bearer(ada["access_token"])
            )
        assert response.status_code == 200
        assert response.json()["preferred_language"] == tag

    async def test_needs_sign_in(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            response = await client.put(PROFILE, json={})
        assert response.status_code == 401


class TestDeletingAUser:
    async def test_profile_and_feedback_go_sessions_stay_anonymous(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(account_settings(database_url)) as client:
            ada = await sign_up(client, "ada@example.org")
            await client.put(
                PROFILE, json={"goals": "Learn ROS"}, headers=bearer(ada["access_token"])
            )
        user_id = uuid.UUID(ada["user"]["id"])
        session_id, message_id = uuid.uuid4(), uuid.uuid4()
        now = datetime.now(UTC)
        async with open_db(database_url) as db:
            db.add(ChatSession(id=session_id, user_id=user_id, created_at=now, updated_at=now))
            await db.flush()
            db.add(
                Message(id=message_id, session_id=session_id, role=MessageRole.USER, content="hi")
            )
            await db.flush()
            db.add(MessageFeedback(message_id=message_id, user_id=user_id, rating=1))
            await db.commit()
            await db.execute(text("DELETE FROM users"))
            await db.commit()
            db.expire_all()
            session = await db.get(ChatSession, session_id)
            feedback = (await db.execute(text("SELECT count(*) FROM message_feedback"))).scalar()
            profiles = (await db.execute(text("SELECT count(*) FROM user_profiles"))).scalar()
        assert session is not None
        assert session.user_id is None
        assert feedback == 0
        assert profiles == 0


class TestAdminGate:
    """A content write accepts an admin's token or the admin key; 404 means the gate let it by."""

    path = f"/api/v1/content/{uuid.UUID(int=7)}"

    async def test_admin_token_user_token_and_key(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = account_settings(database_url, admin_api_key="the-admin-key")
        async with app_factory(settings) as client:
            admin = await sign_up(client, "admin@example.org")
            reader = await sign_up(client, "reader@example.org")
            await promote(database_url, "admin@example.org")
            as_admin = await client.delete(self.path, headers=bearer(admin["access_token"]))
            as_reader = await client.delete(self.path, headers=bearer(reader["access_token"]))
            as_reader_with_key = await client.delete(
                self.path,
                headers={**bearer(reader["access_token"]), "X-Admin-Key": "the-admin-key"},
            )
            with_key = await client.delete(self.path, headers={"X-Admin-Key": "the-admin-key"})
            wrong_key = await client.delete(self.path, headers={"X-Admin-Key": "nope"})
            nothing = await client.delete(self.path)
            bad_token = await client.delete(self.path, headers=bearer("not.a.jwt"))
            me = await client.get(ME, headers=bearer(admin["access_token"]))

        assert as_admin.status_code == 404
        assert as_reader.status_code == 403
        assert as_reader.json()["error"]["message"] == "This operation needs an admin account."
        assert as_reader_with_key.status_code == 404
        assert with_key.status_code == 404
        assert wrong_key.status_code == 401
        assert nothing.status_code == 401
        assert bad_token.status_code == 401
        assert me.json()["role"] == "admin"

    async def test_without_an_admin_key(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            admin = await sign_up(client, "admin@example.org")
            reader = await sign_up(client, "reader@example.org")
            await promote(sqlite_url, "admin@example.org")
            as_admin = await client.delete(self.path, headers=bearer(admin["access_token"]))
            as_reader = await client.delete(self.path, headers=bearer(reader["access_token"]))
            anonymous = await client.delete(self.path)

        assert as_admin.status_code == 404
        assert as_reader.status_code == 403
        # Nobody signed in: 401 (an admin's token would do), saying that no key is taken.
        assert anonymous.status_code == 401
        assert "ADMIN_API_KEY is not set" in anonymous.json()["error"]["message"]


ADMIN_KEY = "an-admin-key-of-at-least-32-chars-0123456789"


class TestAdminKeyGuesses:
    path = f"/api/v1/content/{uuid.UUID(int=7)}"

    @staticmethod
    def delete(client: Any, key: str, address: str) -> Any:
        return client.delete(
            TestAdminKeyGuesses.path, headers={"X-Admin-Key": key, "X-Forwarded-For": address}
        )

    @pytest.mark.parametrize("storage", ["memory", "redis"])
    async def test_failed_keys_are_limited_per_address(
        self, storage: str, sqlite_url: str, app_factory: AppFactory, request: pytest.FixtureRequest
    ) -> None:
        redis_url = request.getfixturevalue("redis_url") if storage == "redis" else None
        settings = account_settings(
            sqlite_url,
            admin_api_key=ADMIN_KEY,
            rate_limit_login="3/minute",
            trusted_proxies="127.0.0.1",
            redis_url=redis_url,
        )
        async with app_factory(settings) as client:
            guesses = [await self.delete(client, f"guess-{n}", "203.0.113.66") for n in range(3)]
            # Over the limit even the right key is refused: otherwise guessing would go on.
            right_key_too_late = await self.delete(client, ADMIN_KEY, "203.0.113.66")
            elsewhere = await self.delete(client, ADMIN_KEY, "198.51.100.7")
            # Successes do not count: CI may use the key as often as it likes.
            many = [await self.delete(client, ADMIN_KEY, "198.51.100.8") for _ in range(5)]

        assert [r.status_code for r in guesses] == [401, 401, 401]
        assert right_key_too_late.status_code == 429
        assert right_key_too_late.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(right_key_too_late.headers["retry-after"]) <= 60
        assert elsewhere.status_code == 404  # the gate let it by
        assert [r.status_code for r in many] == [404] * 5


class CountingHash:
    """The real hasher, recording which stored hash each verification ran against."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.verified: list[str] = []

    def hash(self, password: str) -> str:
        result: str = self.inner.hash(password)
        return result

    def verify(self, password: str, hashed: str) -> bool:
        self.verified.append(hashed)
        result: bool = self.inner.verify(password, hashed)
        return result


def _without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "request_id"}
