"""Who is asking: the signed-in user (if any) from a bearer token, and the admin gate."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import OAuth2PasswordBearer

from bookchat.accounts.models import User
from bookchat.accounts.service import AccountService, Authenticator
from bookchat.core.errors import Forbidden, Unauthorized
from bookchat.core.http import parse_bearer
from bookchat.core.ratelimit import client_ip, count_failure, enforce_failures, ip_identity
from bookchat.dependencies import ContainerDep, SessionDep

# Only documents the scheme (the Authorize button of /docs); the header is read below, so that
# a malformed one is an error rather than "anonymous".
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/login",
    auto_error=False,
    description="A bookchat access token (POST /api/v1/auth/login) or a Better-Auth JWT.",
)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
ADMIN_KEY_SCOPE = "admin_key"


async def get_account_service(container: ContainerDep) -> AccountService:
    return container.accounts


async def get_authenticator(container: ContainerDep) -> Authenticator:
    return container.auth


AccountServiceDep = Annotated[AccountService, Depends(get_account_service)]
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header; None without the header, 401 for any
    other form of it."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    token = parse_bearer(header)
    if token is None:
        raise Unauthorized(
            "Send the access token as `Authorization: Bearer <token>`.", headers=_CHALLENGE
        )
    return token


async def get_optional_user(
    request: Request,
    db: SessionDep,
    auth: AuthenticatorDep,
    _documented: Annotated[str | None, Depends(oauth2_scheme)] = None,
) -> User | None:
    """The signed-in user, or None when the request carries no Authorization header.

    A token that fails is a 401, never a silent fall-back to anonymous.
    """
    token = bearer_token(request)
    if token is None:
        return None
    return await auth.authenticate(db, token)


async def get_current_user(user: Annotated[User | None, Depends(get_optional_user)]) -> User:
    """The signed-in user; 401 without one."""
    if user is None:
        raise Unauthorized("Sign-in required.", headers=_CHALLENGE)
    return user


OptionalUser = Annotated[User | None, Depends(get_optional_user)]
CurrentUser = Annotated[User, Depends(get_current_user)]


async def require_admin(
    request: Request,
    container: ContainerDep,
    user: OptionalUser,
    x_admin_key: Annotated[str | None, Header(description="The ADMIN_API_KEY.")] = None,
) -> None:
    """Allow an admin user's bearer token or the configured admin key."""
    if user is not None and user.is_admin:
        return
    settings = container.settings
    if settings.admin_api_key is not None and x_admin_key is not None:
        # Failed keys are limited per client address like logins (RATE_LIMIT_LOGIN): 429
        # once spent, whatever the key, so guessing stops there.
        limiter, rate = container.limiter, settings.rate_limit_login
        address = ip_identity(client_ip(request, limiter.trusted_proxies))
        await enforce_failures(limiter, ADMIN_KEY_SCOPE, address, rate)
        expected = settings.admin_api_key.get_secret_value()
        # Constant-time comparison: the key must not leak through response timing.
        if secrets.compare_digest(x_admin_key.encode(), expected.encode()):
            return
        await count_failure(limiter, ADMIN_KEY_SCOPE, address, rate)
        raise Unauthorized("A valid X-Admin-Key header is required for this operation.")
    if user is not None:
        raise Forbidden("This operation needs an admin account.")
    if settings.admin_api_key is None:
        if x_admin_key is not None:
            raise Forbidden(
                "This server takes no X-Admin-Key (ADMIN_API_KEY is not set): sign in with an "
                "admin account instead."
            )
        raise Unauthorized(
            "Sign in with an admin account (Authorization: Bearer) for this operation; this "
            "server takes no X-Admin-Key (ADMIN_API_KEY is not set)."
        )
    raise Unauthorized(
        "Sign in with an admin account (Authorization: Bearer) or send a valid X-Admin-Key "
        "header for this operation."
    )


AdminDep = Depends(require_admin)
