"""Accounts fixtures: a JWKS server on a loopback port, signing keys, and account helpers."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from bookchat.accounts.service import ensure_admin
from bookchat.core.config import Settings
from tests.conftest import make_settings
from tests.factories import open_db

SECRET = "test-secret-long-enough-even-for-hs512-0123456789abcdefghijklmnopqrstuv"
ISSUER = "https://auth.example.org"
AUDIENCE = "https://book.example.org"
PASSWORD = "correct horse battery"


def account_settings(database_url: str, **overrides: Any) -> Settings:
    return make_settings(database_url, jwt_secret=SECRET, **overrides)


async def promote(database_url: str, email: str) -> None:
    """Make an existing account an admin, as `bookchat create-admin` does."""
    async with open_db(database_url) as db:
        await ensure_admin(db, email, None)


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the JWKS server is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/auth/jwks"


# --- signing keys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A private key, its algorithm, and its public half as a JWK."""

    kid: str
    alg: str
    private: Any

    @property
    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if self.alg == "EdDSA":
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        elif self.alg == "ES256":
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers}
        )


def new_key(alg: str) -> SigningKey:
    private: Any
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid=f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg=alg, private=private)


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    """One key per accepted algorithm (RSA generation is slow: made once)."""
    return {alg: new_key(alg) for alg in ("EdDSA", "ES256", "RS256")}


def claims(
    subject: str = "ba-user-1",
    *,
    email: str | None = "reader@example.org",
    name: str | None = "Ada Reader",
    lifetime: int = 300,
    **extra: Any,
) -> dict[str, Any]:
    """Claims as Better-Auth's JWT plugin writes them (the user's fields, iss and aud)."""
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": subject,
        "iat": now,
        "exp": now + lifetime,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "emailVerified": True,
    }
    if email is not None:
        values["email"] = email
    if name is not None:
        values["name"] = name
    values.update(extra)
    return values


# --- the JWKS server -------------------------------------------------------------------------


class JWKSServer:
    """Serves a JWKS document over real HTTP on 127.0.0.1 and counts the fetches."""

    path = "/api/auth/jwks"

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.status = 200
        self.fetches = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # DESIGN.md section 9

            def do_GET(self) -> None:
                with server._lock:
                    server.fetches += 1
                    status, document = server.status, server.document
                body = json.dumps(document).encode() if status == 200 else b"oops"
                self.send_response(status if self.path == server.path else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def publish(self, *keys: SigningKey, extra: list[dict[str, Any]] | None = None) -> None:
        with self._lock:
            self.document = {"keys": [key.jwk for key in keys] + (extra or [])}

    def reset(self) -> None:
        with self._lock:
            self.document, self.status, self.fetches = {"keys": []}, 200, 0

    def __enter__(self) -> JWKSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def jwks_server_instance() -> Iterator[JWKSServer]:
    with JWKSServer() as server:
        yield server


@pytest.fixture
def jwks_server(
    jwks_server_instance: JWKSServer, signing_keys: dict[str, SigningKey]
) -> Iterator[JWKSServer]:
    """The JWKS server publishing every signing key, with its fetch count at zero."""
    jwks_server_instance.reset()
    jwks_server_instance.publish(*signing_keys.values())
    yield jwks_server_instance
    jwks_server_instance.reset()
