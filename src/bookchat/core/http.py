"""Small readings of HTTP headers that more than one domain needs."""

from __future__ import annotations


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (scheme case-insensitive, spaces
    around the token ignored); None when the value is missing or of any other form."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
