"""Better-Auth tokens, verified against a JWKS served over real HTTP on a loopback port."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import jwt
import pytest

from bookchat.accounts.identities import link_identity
from bookchat.accounts.models import User
from bookchat.accounts.tokens import BetterAuthVerifier, InvalidToken, usable_keys
from bookchat.core.errors import DependencyUnavailable
from tests.accounts.conftest import (
    AUDIENCE,
    ISSUER,
    SECRET,
    JWKSServer,
    SigningKey,
    account_settings,
    claims,
    closed_port_url,
    new_key,
    promote,
)
from tests.conftest import AppFactory
from tests.factories import bearer, open_db, sign_up, stored

ME = "/api/v1/auth/me"


def better_auth_settings(database_url: str, jwks_url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "better_auth_jwks_url": jwks_url,
        "better_auth_issuer": ISSUER,
        "better_auth_audience": AUDIENCE,
    }
    values.update(overrides)
    return account_settings(database_url, **values)


async def users(database_url: str) -> list[User]:
    return await stored(database_url, User, order_by=(User.created_at,))


class TestBetterAuthTokens:
    @pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
    async def test_first_sight_creates_the_user_then_finds_it(
        self,
        alg: str,
        database_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        token = signing_keys[alg].sign(claims(f"sub-{alg}", email="Reader@Example.org"))
        async with app_factory(better_auth_settings(database_url, jwks_server.url)) as client:
            first = await client.get(ME, headers=bearer(token))
            second = await client.get(ME, headers=bearer(token))

        assert first.status_code == 200, first.text
        assert first.json()["email"] == "reader@example.org"
        assert first.json()["name"] == "Ada Reader"
        assert first.json()["role"] == "user"
        assert second.json()["id"] == first.json()["id"]
        assert jwks_server.fetches == 1  # the keys are cached
        [user] = await users(database_url)
        assert user.external_id == f"sub-{alg}"
        assert user.password_hash is None

    async def test_links_a_local_account_with_the_same_email(
        self,
        database_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        key = signing_keys["EdDSA"]
        async with app_factory(better_auth_settings(database_url, jwks_server.url)) as client:
            local = await sign_up(client, "reader@example.org")
            external = await client.get(
                ME, headers=bearer(key.sign(claims("ba-1", email="READER@example.org")))
            )
            password_still_works = await client.post(
                "/api/v1/auth/login",
                json={"email": "reader@example.org", "password": "correct horse battery"},
            )
        assert external.json()["id"] == local["user"]["id"]
        assert password_still_works.status_code == 200
        [user] = await users(database_url)
        assert user.external_id == "ba-1"

    async def test_an_email_linked_to_another_identity_is_a_conflict(
        self,
        sqlite_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        key = signing_keys["EdDSA"]
        async with app_factory(better_auth_settings(sqlite_url, jwks_server.url)) as client:
            first = await client.get(ME, headers=bearer(key.sign(claims("ba-1"))))
            second = await client.get(ME, headers=bearer(key.sign(claims("ba-2"))))
        assert first.status_code == 200
        assert second.status_code == 409
        assert [u.external_id for u in await users(sqlite_url)] == ["ba-1"]

    async def test_unverified_email_is_not_linked(
        self,
        sqlite_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        token = signing_keys["EdDSA"].sign(claims("ba-1", emailVerified=False))
        async with app_factory(better_auth_settings(sqlite_url, jwks_server.url)) as client:
            await sign_up(client, "reader@example.org")
            response = await client.get(ME, headers=bearer(token))
        assert response.status_code == 409
        [user] = await users(sqlite_url)
        assert user.external_id is None

    async def test_without_the_verified_claim_is_not_linked(
        self,
        database_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        # Only `emailVerified: true` proves the address: a token that does not say so must not
        # take over the local account that has it.
        unsaid = {k: v for k, v in claims("ba-1").items() if k != "emailVerified"}
        async with app_factory(better_auth_settings(database_url, jwks_server.url)) as client:
            await sign_up(client, "reader@example.org")
            response = await client.get(ME, headers=bearer(signing_keys["EdDSA"].sign(unsaid)))
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "conflict"
        [user] = await users(database_url)
        assert user.external_id is None

    async def test_an_admin_account_is_never_linked_automatically(
        self,
        database_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        token = signing_keys["EdDSA"].sign(claims("ba-admin", email="ADMIN@example.org"))
        async with app_factory(
            better_auth_settings(database_url, jwks_server.url, admin_api_key="k" * 32)
        ) as client:
            await sign_up(client, "admin@example.org")
            await promote(database_url, "admin@example.org")
            me = await client.get(ME, headers=bearer(token))
            write = await client.delete(
                f"/api/v1/content/{uuid.UUID(int=7)}", headers=bearer(token)
            )

        assert me.status_code == 409
        assert "administrator" in me.json()["error"]["message"]
        assert write.status_code == 409  # never admin rights, never a 404 "allowed" answer
        [user] = await users(database_url)
        assert user.external_id is None
        assert user.role.value == "admin"

    async def test_an_identity_an_admin_linked_is_that_admin(
        self,
        sqlite_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        token = signing_keys["EdDSA"].sign(claims("ba-admin", email="admin@example.org"))
        async with app_factory(better_auth_settings(sqlite_url, jwks_server.url)) as client:
            await sign_up(client, "admin@example.org")
            await promote(sqlite_url, "admin@example.org")
            async with open_db(sqlite_url) as db:
                await link_identity(db, "admin@example.org", "ba-admin")
            me = await client.get(ME, headers=bearer(token))
        assert me.status_code == 200
        assert me.json()["role"] == "admin"

    async def test_without_an_email_claim_a_placeholder(
        self,
        sqlite_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        token = signing_keys["ES256"].sign(claims("ba-2", email=None, name=None))
        async with app_factory(better_auth_settings(sqlite_url, jwks_server.url)) as client:
            me = (await client.get(ME, headers=bearer(token))).json()
        assert me["email"] == f"{me['id'].replace('-', '')}@users.invalid"
        assert me["name"] is None

    async def test_hs256_is_only_ever_a_local_token(
        self,
        sqlite_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        # The JWKS also lists an HMAC key; a token "signed" with it must get nowhere.
        hmac_secret = "shared-secret-published-by-mistake-0123456789abcdef"
        oct_key = {
            "kty": "oct",
            "kid": "hmac",
            "alg": "HS256",
            "k": jwt.utils.base64url_encode(hmac_secret.encode()).decode(),
        }
        jwks_server.publish(*signing_keys.values(), extra=[oct_key])
        async with app_factory(better_auth_settings(sqlite_url, jwks_server.url)) as client:
            local = await sign_up(client, "reader@example.org")
            with_local_token = await client.get(ME, headers=bearer(local["access_token"]))
            with_jwks_hmac = await client.get(
                ME,
                headers=bearer(
                    jwt.encode(
                        claims("ba-3"), hmac_secret, algorithm="HS256", headers={"kid": "hmac"}
                    )
                ),
            )
            with_claims_but_hs256 = await client.get(
                ME, headers=bearer(jwt.encode(claims("ba-3"), SECRET, algorithm="HS256"))
            )
        assert with_local_token.status_code == 200
        assert with_jwks_hmac.status_code == 401
        # Signed with the local secret but not a local token (issuer, type): refused too.
        assert with_claims_but_hs256.status_code == 401

    @pytest.mark.parametrize(
        ("token_claims", "settings"),
        [
            (claims(iss="https://evil.example"), {}),
            (claims(aud="https://other-site.example"), {}),
            (claims(lifetime=-120), {}),
            (claims(sub=""), {}),
            ({k: v for k, v in claims().items() if k != "exp"}, {}),
        ],
        ids=["wrong-issuer", "wrong-audience", "expired", "empty-subject", "no-exp"],
    )
    async def test_refused_claims(
        self,
        token_claims: dict[str, Any],
        settings: dict[str, Any],
        sqlite_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        token = signing_keys["EdDSA"].sign(token_claims)
        async with app_factory(better_auth_settings(sqlite_url, jwks_server.url)) as client:
            response = await client.get(ME, headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert await users(sqlite_url) == []

    async def test_issuer_and_audience_are_only_checked_when_configured(
        self,
        sqlite_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        token = signing_keys["EdDSA"].sign(claims(iss="anyone", aud="anything"))
        settings = better_auth_settings(
            sqlite_url, jwks_server.url, better_auth_issuer=None, better_auth_audience=None
        )
        async with app_factory(settings) as client:
            response = await client.get(ME, headers=bearer(token))
        assert response.status_code == 200

    async def test_forged_headers(
        self,
        sqlite_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        stranger = new_key("EdDSA")  # not published
        rsa_kid = signing_keys["RS256"].kid
        tokens = {
            "unlisted-key": stranger.sign(claims()),
            "kid-of-another-key": stranger.sign(claims(), kid=signing_keys["EdDSA"].kid),
            "alg-of-another-key": signing_keys["ES256"].sign(claims(), kid=rsa_kid),
            "no-kid": jwt.encode(claims(), signing_keys["EdDSA"].private, algorithm="EdDSA"),
            "ps256": jwt.encode(
                claims(), signing_keys["RS256"].private, algorithm="PS256", headers={"kid": rsa_kid}
            ),
        }
        async with app_factory(better_auth_settings(sqlite_url, jwks_server.url)) as client:
            responses = {
                name: await client.get(ME, headers=bearer(t)) for name, t in tokens.items()
            }
        for name, response in responses.items():
            assert response.status_code == 401, name

    async def test_without_a_jwks_url_external_tokens_are_refused(
        self, sqlite_url: str, app_factory: AppFactory, signing_keys: dict[str, SigningKey]
    ) -> None:
        async with app_factory(account_settings(sqlite_url)) as client:
            response = await client.get(ME, headers=bearer(signing_keys["EdDSA"].sign(claims())))
        assert response.status_code == 401

    async def test_jwks_server_down_is_503(
        self,
        sqlite_url: str,
        app_factory: AppFactory,
        signing_keys: dict[str, SigningKey],
        jwks_server: JWKSServer,
    ) -> None:
        token = signing_keys["EdDSA"].sign(claims())
        async with app_factory(better_auth_settings(sqlite_url, closed_port_url())) as client:
            down = await client.get(ME, headers=bearer(token))
        jwks_server.status = 500
        async with app_factory(better_auth_settings(sqlite_url, jwks_server.url)) as client:
            failing = await client.get(ME, headers=bearer(token))
            jwks_server.status = 200
            recovered = await client.get(ME, headers=bearer(token))

        for response in (down, failing):
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "dependency_unavailable"
        assert recovered.status_code == 200

    async def test_jwks_without_usable_keys_is_503(
        self,
        sqlite_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        jwks_server.publish(extra=[{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}])
        token = signing_keys["EdDSA"].sign(claims())
        async with app_factory(better_auth_settings(sqlite_url, jwks_server.url)) as client:
            response = await client.get(ME, headers=bearer(token))
        assert response.status_code == 503


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestBetterAuthVerifier:
    async def test_unknown_kid_refetches_once_per_interval(self, jwks_server: JWKSServer) -> None:
        old, new = new_key("EdDSA"), new_key("EdDSA")
        jwks_server.publish(old)
        clock = FakeClock()
        async with httpx.AsyncClient() as http:
            verifier = BetterAuthVerifier(
                jwks_server.url, issuer=ISSUER, audience=AUDIENCE, http=http, clock=clock
            )
            assert (await verifier.verify(old.sign(claims("a")))).subject == "a"
            jwks_server.publish(new)  # the server rotates its keys

            clock.now += 5  # too soon after the last fetch to ask again
            with pytest.raises(InvalidToken):
                await verifier.verify(new.sign(claims("b")))
            assert jwks_server.fetches == 1

            clock.now += 30
            assert (await verifier.verify(new.sign(claims("b")))).subject == "b"  # one refetch
            assert (await verifier.verify(new.sign(claims("c")))).subject == "c"
            assert jwks_server.fetches == 2

            # Made-up kids within the interval: refused without asking the server again.
            for n in range(5):
                with pytest.raises(InvalidToken):
                    await verifier.verify(new_key("EdDSA").sign(claims(), kid=f"spray-{n}"))
            with pytest.raises(InvalidToken):
                await verifier.verify(old.sign(claims()))  # cached keys are the new ones now
            assert jwks_server.fetches == 2

            clock.now += 31
            with pytest.raises(InvalidToken):
                await verifier.verify(new_key("EdDSA").sign(claims(), kid="spray-later"))
            assert jwks_server.fetches == 3

    async def test_concurrent_requests_share_one_fetch(self, jwks_server: JWKSServer) -> None:
        key = new_key("ES256")
        jwks_server.publish(key)
        async with httpx.AsyncClient() as http:
            verifier = BetterAuthVerifier(jwks_server.url, issuer=None, audience=None, http=http)
            identities = await asyncio.gather(
                *(verifier.verify(key.sign(claims(f"s{n}"))) for n in range(10))
            )
        assert [i.subject for i in identities] == [f"s{n}" for n in range(10)]
        assert jwks_server.fetches == 1

    async def test_server_down_then_back(self, jwks_server: JWKSServer) -> None:
        key = new_key("EdDSA")
        jwks_server.publish(key)
        jwks_server.status = 503
        async with httpx.AsyncClient() as http:
            verifier = BetterAuthVerifier(jwks_server.url, issuer=None, audience=None, http=http)
            with pytest.raises(DependencyUnavailable):
                await verifier.verify(key.sign(claims()))
            jwks_server.status = 200
            # Without cached keys there is no waiting period: the next request tries again.
            assert (await verifier.verify(key.sign(claims("x")))).subject == "x"

    def test_usable_keys(self, signing_keys: dict[str, SigningKey]) -> None:
        ed = signing_keys["EdDSA"].jwk
        document = {
            "keys": [
                ed,
                {**signing_keys["ES256"].jwk, "use": "enc"},
                {k: v for k, v in signing_keys["RS256"].jwk.items() if k != "kid"},
                {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
                {**signing_keys["RS256"].jwk, "kid": "ps", "alg": "PS256"},
                {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA"},
                "not a key",
            ]
        }
        assert list(usable_keys(document)) == [ed["kid"]]
        assert usable_keys({"keys": "nope"}) == {}
        assert usable_keys(["not", "a", "document"]) == {}
