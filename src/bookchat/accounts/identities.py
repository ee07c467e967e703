"""Which local account an external (Better-Auth) identity is, and linking the two."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bookchat.accounts.models import User, UserRole
from bookchat.accounts.schemas import normalize_email, valid_email
from bookchat.accounts.tokens import MAX_SUBJECT_CHARS, ExternalIdentity
from bookchat.core.db import new_id
from bookchat.core.errors import Conflict

logger = structlog.get_logger(__name__)

EMAIL_TAKEN = "An account with this email already exists; sign in instead."
PLACEHOLDER_EMAIL_DOMAIN = "users.invalid"


async def get_user_by_email(db: AsyncSession, email: str) -> User | None:
    return await db.scalar(select(User).where(User.email == normalize_email(email)))


def _claimed_email(identity: ExternalIdentity) -> str | None:
    if identity.email is None:
        return None
    try:
        return valid_email(identity.email)
    except ValueError:
        return None


async def user_for_identity(db: AsyncSession, identity: ExternalIdentity) -> User:
    """The local account of a Better-Auth subject, created on first sight.

    A local account with the token's email and no external identity yet is linked to it only
    when the token says `emailVerified: true` (an unverified or unsaid address would hand that
    account to whoever typed it in) and the account is not an admin's (a sign-in service's
    account must never gain admin rights by itself: an admin links it with `bookchat
    link-identity`); otherwise 409. A token without a (valid) email claim gets the placeholder
    `<user id>@users.invalid`: unique, never deliverable (RFC 2606), refused by sign-up, and
    never used for linking.
    """
    user = await db.scalar(select(User).where(User.external_id == identity.subject))
    if user is not None:
        return user
    email = _claimed_email(identity)
    if email is not None:
        existing = await get_user_by_email(db, email)
        if existing is not None:
            return await _link(db, existing, identity)
    user_id = new_id()
    user = User(
        id=user_id,
        email=email or f"{user_id.hex}@{PLACEHOLDER_EMAIL_DOMAIN}",
        external_id=identity.subject,
        name=identity.name,
        role=UserRole.USER,
    )
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:  # this subject's first two requests raced: use the winner's row
        await db.rollback()
        winner = await db.scalar(select(User).where(User.external_id == identity.subject))
        if winner is None:
            raise Conflict(EMAIL_TAKEN) from None
        return winner
    logger.info("accounts.external_user_created", user_id=str(user.id))
    return user


async def _link(db: AsyncSession, user: User, identity: ExternalIdentity) -> User:
    if user.external_id is not None:
        raise Conflict("This email belongs to an account of another sign-in identity.")
    if identity.email_verified is not True:
        raise Conflict(
            "An account with this email already exists; verify the address with the sign-in "
            "service to link it."
        )
    if user.is_admin:
        # Saying why reveals nothing to a stranger: the token has just proved the address.
        raise Conflict(
            "An account with this email already exists and an administrator must link it to "
            "this sign-in (bookchat link-identity)."
        )
    user.external_id = identity.subject
    await db.commit()
    logger.info("accounts.external_identity_linked", user_id=str(user.id))
    return user


class LinkRefused(Conflict):
    """The explicit link asked for cannot be made (the reason is the message)."""


@dataclass(frozen=True, slots=True)
class LinkResult:
    user: User
    changed: bool


async def link_identity(db: AsyncSession, email: str, subject: str) -> LinkResult:
    """Link the Better-Auth subject `subject` to the account with `email`, for an admin.

    The one way an external identity reaches an admin account: automatic linking never does.
    LinkRefused (409) when the account does not exist, has another identity, or the subject
    already belongs to another account; ValueError for an invalid email.
    """
    email = valid_email(email)
    subject = subject.strip()
    if not subject or len(subject) > MAX_SUBJECT_CHARS:
        raise LinkRefused(f"The identity must be 1 to {MAX_SUBJECT_CHARS} characters.")
    user = await get_user_by_email(db, email)
    if user is None:
        raise LinkRefused(f"{email} has no account.")
    if user.external_id == subject:
        return LinkResult(user, changed=False)
    if user.external_id is not None:
        raise LinkRefused(f"{email} is already linked to another identity.")
    owner = await db.scalar(select(User).where(User.external_id == subject))
    if owner is not None:
        raise LinkRefused(
            f"The identity {subject} already has the account {owner.email}; delete that "
            "account first if it should be this one."
        )
    user.external_id = subject
    try:
        await db.commit()
    except IntegrityError:  # the subject signed in and got an account meanwhile
        await db.rollback()
        raise LinkRefused(f"The identity {subject} already has an account.") from None
    logger.info("accounts.external_identity_linked", user_id=str(user.id), by="admin")
    return LinkResult(user, changed=True)
