"""Accounts: sign-up, password login, profiles, admins, and whose a bearer token is."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bookchat.accounts.identities import EMAIL_TAKEN, get_user_by_email, user_for_identity
from bookchat.accounts.models import User, UserProfile, UserRole
from bookchat.accounts.passwords import hash_password, password_problem, verify_password
from bookchat.accounts.schemas import (
    LoginCreate,
    MeRead,
    ProfileRead,
    ProfileUpdate,
    SignupCreate,
    TokenRead,
    UserRead,
    normalize_email,
    valid_email,
)
from bookchat.accounts.tokens import (
    EXTERNAL_ALGORITHMS,
    LOCAL_ALGORITHM,
    BetterAuthVerifier,
    InvalidToken,
    IssuedToken,
    issue_access_token,
    read_access_token,
    token_algorithm,
)
from bookchat.core.config import Settings
from bookchat.core.db import utcnow
from bookchat.core.errors import Conflict, Unauthorized, ValidationFailed
from bookchat.core.ratelimit import RateLimiter, enforce

logger = structlog.get_logger(__name__)

INVALID_CREDENTIALS = "The email or password is not correct."
JWKS_TIMEOUT_SECONDS = 5.0


def check_new_password(password: str, email: str) -> None:
    """ValidationFailed (400) naming the rule a new password breaks."""
    problem = password_problem(password, email)
    if problem is not None:
        raise ValidationFailed(
            f"password: {problem}",
            details=[{"loc": ["body", "password"], "msg": problem, "type": "value_error"}],
        )


async def create_user(
    db: AsyncSession,
    *,
    email: str,
    password: str | None,
    name: str | None = None,
    role: UserRole = UserRole.USER,
) -> User:
    """Create a local account; Conflict (409) when the email is taken, in any letter case."""
    email = normalize_email(email)
    if password is not None:
        check_new_password(password, email)
    if await get_user_by_email(db, email) is not None:
        raise Conflict(EMAIL_TAKEN)
    hashed = await asyncio.to_thread(hash_password, password) if password is not None else None
    user = User(email=email, password_hash=hashed, name=name, role=role)
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:  # the same email signed up concurrently
        await db.rollback()
        raise Conflict(EMAIL_TAKEN) from None
    logger.info("accounts.user_created", user_id=str(user.id), role=user.role.value)
    return user


async def authenticate_password(db: AsyncSession, email: str, password: str) -> User:
    """The account these credentials open; one and the same 401 for every failure.

    An unknown email and an account without a password (an external identity) still verify the
    password once, against a dummy hash: same path, same cost as a wrong password.
    """
    user = await get_user_by_email(db, email)
    hashed = user.password_hash if user is not None else None
    valid = await asyncio.to_thread(verify_password, password, hashed)
    if user is None or not valid:
        raise Unauthorized(INVALID_CREDENTIALS, headers={"WWW-Authenticate": "Bearer"})
    return user


async def get_profile(db: AsyncSession, user_id: uuid.UUID) -> UserProfile | None:
    return await db.get(UserProfile, user_id)


async def save_profile(db: AsyncSession, user_id: uuid.UUID, update: ProfileUpdate) -> UserProfile:
    """Replace the user's profile (created on first save)."""
    try:
        return await _write_profile(db, user_id, update)
    except IntegrityError:  # a concurrent first save won: update its row instead
        await db.rollback()
        return await _write_profile(db, user_id, update)


async def _write_profile(
    db: AsyncSession, user_id: uuid.UUID, update: ProfileUpdate
) -> UserProfile:
    profile = await db.get(UserProfile, user_id)
    if profile is None:
        profile = UserProfile(user_id=user_id)
        db.add(profile)
    for field, value in update.model_dump().items():
        setattr(profile, field, value)
    profile.updated_at = utcnow()  # also when nothing changed: the reader saved it
    await db.commit()
    return profile


@dataclass(frozen=True, slots=True)
class AdminResult:
    user: User
    created: bool
    was_admin: bool
    password_set: bool


async def ensure_admin(db: AsyncSession, email: str, password: str | None) -> AdminResult:
    """Create an admin, or promote an existing account (and set its password when given).

    ValueError for an invalid email (callers validate it first), ValidationFailed for a weak
    password or a new account asked for without one.
    """
    email = valid_email(email)
    if password is not None:
        check_new_password(password, email)
    user = await get_user_by_email(db, email)
    if user is None:
        if password is None:
            raise ValidationFailed(f"{email} has no account yet; a new admin needs a password.")
        user = await create_user(db, email=email, password=password, role=UserRole.ADMIN)
        return AdminResult(user, created=True, was_admin=False, password_set=True)
    was_admin = user.is_admin
    user.role = UserRole.ADMIN
    if password is not None:
        user.password_hash = await asyncio.to_thread(hash_password, password)
    await db.commit()
    logger.info("accounts.admin_ensured", user_id=str(user.id), was_admin=was_admin)
    return AdminResult(user, created=False, was_admin=was_admin, password_set=password is not None)


class Authenticator:
    """Issues local access tokens and resolves any accepted bearer token to its user.

    An HS256 token is only ever checked as a local token (JWT_SECRET); EdDSA, ES256 and RS256
    tokens only against Better-Auth's keys, and only when BETTER_AUTH_JWKS_URL is set; anything
    else (`none`, HS512, garbage) is refused.
    """

    def __init__(
        self, *, secret: str, token_minutes: int, better_auth: BetterAuthVerifier | None = None
    ) -> None:
        self._secret = secret
        self.token_minutes = token_minutes
        self.better_auth = better_auth

    def issue(self, user: User) -> IssuedToken:
        return issue_access_token(user.id, secret=self._secret, minutes=self.token_minutes)

    async def authenticate(self, db: AsyncSession, token: str) -> User:
        """The user a bearer token stands for: InvalidToken (401) or DependencyUnavailable."""
        alg = token_algorithm(token)
        if alg == LOCAL_ALGORITHM:
            user = await db.get(User, read_access_token(token, secret=self._secret))
            if user is None:
                raise InvalidToken("The account of this token no longer exists.")
            return user
        if alg in EXTERNAL_ALGORITHMS and self.better_auth is not None:
            return await user_for_identity(db, await self.better_auth.verify(token))
        raise InvalidToken()


@dataclass(frozen=True, slots=True)
class AccountService:
    """What the accounts routes do: sign-up, login, the signed-in user and their profile."""

    auth: Authenticator
    limiter: RateLimiter
    login_rate: str

    def token(self, user: User) -> TokenRead:
        """A new access token for this user, with the user."""
        issued = self.auth.issue(user)
        return TokenRead(
            access_token=issued.access_token,
            expires_in=issued.expires_in,
            user=UserRead.model_validate(user),
        )

    async def sign_up(self, db: AsyncSession, body: SignupCreate) -> TokenRead:
        """Create a local account and sign it in."""
        user = await create_user(db, email=body.email, password=body.password, name=body.name)
        return self.token(user)

    async def log_in(
        self, db: AsyncSession, credentials: LoginCreate, client_identity: str
    ) -> TokenRead:
        """Exchange credentials for a token. Every attempt counts per client address, and per
        account at that address only: an account-wide count would let anyone lock a reader out
        by failing logins against their email (docs/operations.md, "Sign-in and admin-key
        limits")."""
        account = f"email:{normalize_email(credentials.email)}|{client_identity}"
        await enforce(self.limiter, "login", [client_identity, account], self.login_rate)
        user = await authenticate_password(db, credentials.email, credentials.password)
        return self.token(user)

    async def me(self, db: AsyncSession, user: User) -> MeRead:
        """The user and their profile (None until they save one)."""
        profile = await get_profile(db, user.id)
        return MeRead(
            **UserRead.model_validate(user).model_dump(),
            profile=ProfileRead.model_validate(profile) if profile is not None else None,
        )

    async def save_profile(self, db: AsyncSession, user: User, body: ProfileUpdate) -> ProfileRead:
        """Replace the user's profile."""
        return ProfileRead.model_validate(await save_profile(db, user.id, body))


@asynccontextmanager
async def open_authenticator(settings: Settings) -> AsyncIterator[Authenticator]:
    """The authenticator for these settings, with its JWKS client closed on the way out."""
    secret = settings.jwt_secret.get_secret_value()
    minutes = settings.access_token_minutes
    if settings.better_auth_jwks_url is None:
        yield Authenticator(secret=secret, token_minutes=minutes)
        return
    async with httpx.AsyncClient(
        timeout=JWKS_TIMEOUT_SECONDS, follow_redirects=True, max_redirects=3
    ) as http:
        verifier = BetterAuthVerifier(
            settings.better_auth_jwks_url,
            issuer=settings.better_auth_issuer,
            audience=settings.better_auth_audience,
            http=http,
        )
        yield Authenticator(secret=secret, token_minutes=minutes, better_auth=verifier)
