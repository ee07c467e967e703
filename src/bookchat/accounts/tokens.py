"""Access tokens: the service's own (HS256, JWT_SECRET) and Better-Auth's (checked against the
keys its JWKS endpoint publishes)."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import structlog
from jwt import PyJWK

from bookchat.core.errors import DependencyUnavailable, Unauthorized
from bookchat.core.ids import parse_uuid

logger = structlog.get_logger(__name__)

LOCAL_ISSUER = "bookchat"
LOCAL_ALGORITHM = "HS256"
# Asymmetric only: an HMAC or `none` token must never be checked against a published key.
EXTERNAL_ALGORITHMS = frozenset({"EdDSA", "ES256", "RS256"})
# Clocks of replicas and of the Better-Auth server drift a little.
LEEWAY_SECONDS = 30
# A token naming an unknown key refetches the JWKS at most this often, so a flood of made-up
# `kid`s cannot turn the service into a flood of requests to the sign-in server.
JWKS_REFETCH_SECONDS = 30.0
MAX_SUBJECT_CHARS = 255


class InvalidToken(Unauthorized):
    default_message = "The access token is invalid or has expired; sign in again."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    """Seconds until the token expires."""


def issue_access_token(
    user_id: uuid.UUID, *, secret: str, minutes: int, now: datetime | None = None
) -> IssuedToken:
    """A signed local access token for this user."""
    issued_at = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iat": issued_at,
        "exp": issued_at + timedelta(minutes=minutes),
        "jti": uuid.uuid4().hex,
        "iss": LOCAL_ISSUER,
        "typ": "access",
    }
    return IssuedToken(jwt.encode(claims, secret, algorithm=LOCAL_ALGORITHM), minutes * 60)


def read_access_token(token: str, *, secret: str) -> uuid.UUID:
    """The user id of a valid local access token; InvalidToken otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[LOCAL_ALGORITHM],
            issuer=LOCAL_ISSUER,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.PyJWTError:
        raise InvalidToken() from None
    if claims.get("typ") != "access":
        raise InvalidToken()
    # PyJWT has checked that `sub` is a string; it must also be a user id.
    user_id = parse_uuid(claims["sub"])
    if user_id is None:
        raise InvalidToken()
    return user_id


def token_algorithm(token: str) -> str:
    """The `alg` a token's header claims (unverified); InvalidToken for anything unreadable."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken() from None
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise InvalidToken()
    return alg


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """Who a verified Better-Auth token says the reader is."""

    subject: str
    email: str | None
    name: str | None
    email_verified: bool | None


def usable_keys(document: Any) -> dict[str, PyJWK]:
    """The signing keys of a JWKS document that this service accepts, by `kid`.

    Keys without a `kid`, encryption keys, and keys of any other algorithm (an `oct` HMAC key
    above all) are skipped.
    """
    keys: dict[str, PyJWK] = {}
    entries = document.get("keys") if isinstance(document, Mapping) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            key = PyJWK(entry)
        except jwt.PyJWTError:
            continue
        if key.algorithm_name in EXTERNAL_ALGORITHMS:
            keys[kid] = key
    return keys


class BetterAuthVerifier:
    """Verifies Better-Auth JWTs against the keys at `jwks_url`.

    The keys are fetched on first use and cached. A token naming a `kid` the cache lacks (the
    server rotated its keys) refetches them, at most once per `refetch_seconds`. Concurrent
    requests share one fetch. The fetch goes through the shared async client: PyJWKClient would
    block the event loop with urllib.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str | None,
        audience: str | None,
        http: httpx.AsyncClient,
        refetch_seconds: float = JWKS_REFETCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self._http = http
        self._refetch_seconds = refetch_seconds
        self._clock = clock
        self._keys: dict[str, PyJWK] | None = None
        self._fetched_at = -math.inf
        self._attempts = 0
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> ExternalIdentity:
        """The identity in a valid token; InvalidToken (401) or DependencyUnavailable (503)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken() from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in EXTERNAL_ALGORITHMS:
            raise InvalidToken()
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The token does not name its signing key (`kid`).")
        key = await self._key(kid)
        try:
            # PyJWT also refuses a token whose `alg` differs from the key's own algorithm.
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError:
            raise InvalidToken() from None
        return _identity(claims)

    async def _key(self, kid: str) -> PyJWK:
        keys = self._keys
        if keys is not None and kid in keys:
            return keys[kid]
        attempts_seen = self._attempts
        async with self._lock:
            # A fetch that finished while this request waited answers for it too.
            if self._attempts == attempts_seen and self._may_fetch():
                await self._fetch()
            keys = self._keys
        if keys is None:
            raise DependencyUnavailable(_UNAVAILABLE)
        key = keys.get(kid)
        if key is None:
            raise InvalidToken("The token is signed with a key the sign-in service does not list.")
        return key

    def _may_fetch(self) -> bool:
        return self._keys is None or self._clock() - self._fetched_at >= self._refetch_seconds

    async def _fetch(self) -> None:
        self._attempts += 1
        self._fetched_at = self._clock()
        try:
            response = await self._http.get(self.jwks_url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("better_auth.jwks_unavailable", error_type=type(exc).__name__)
            raise DependencyUnavailable(_UNAVAILABLE) from None
        keys = usable_keys(document)
        if not keys:
            logger.warning("better_auth.jwks_without_usable_keys")
            raise DependencyUnavailable(_UNAVAILABLE)
        self._keys = keys
        logger.info("better_auth.jwks_fetched", keys=len(keys))


_UNAVAILABLE = "The sign-in service's keys could not be fetched; try again shortly."


def _identity(claims: Mapping[str, Any]) -> ExternalIdentity:
    subject = claims["sub"]  # PyJWT checked it is a string
    if not subject.strip() or len(subject) > MAX_SUBJECT_CHARS:
        raise InvalidToken()
    email, name = claims.get("email"), claims.get("name")
    verified = claims.get("emailVerified", claims.get("email_verified"))
    return ExternalIdentity(
        subject=subject,
        email=email if isinstance(email, str) else None,
        name=(name.strip()[:200] or None) if isinstance(name, str) else None,
        email_verified=verified if isinstance(verified, bool) else None,
    )
