"""Bodies of the accounts API, and the email and password rules they apply."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from bookchat.accounts.models import SkillLevel, UserRole
from bookchat.accounts.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, password_problem

MAX_EMAIL_CHARS = 320
MAX_PROFILE_TEXT_CHARS = 2000

# `email-validator` is not a dependency: a dot-atom local part (Unicode letters allowed), an
# `@`, and a domain of dot-separated labels ending in a letters-only or punycode TLD.
_EMAIL = re.compile(
    r"^(?=[^@]{1,64}@)[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
    r"@(?=.{1,253}$)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})$"
)
# RFC 2606 reserves `.invalid`: accounts without a known email get `<user id>@users.invalid`.
RESERVED_EMAIL_SUFFIX = ".invalid"
_LANGUAGE_TAG = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"


def normalize_email(value: str) -> str:
    """The stored form of an email address: trimmed and lower-cased."""
    return value.strip().lower()


def valid_email(value: str) -> str:
    """The normalized address, or ValueError with a message a reader understands."""
    email = normalize_email(value)
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL.match(email):
        raise ValueError("Enter a valid email address, like reader@example.com.")
    if email.endswith(RESERVED_EMAIL_SUFFIX):
        raise ValueError("Addresses under .invalid are reserved; use a real email address.")
    return email


def _valid_password(value: str) -> str:
    problem = password_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _valid_language(value: str) -> str:
    if not re.match(_LANGUAGE_TAG, value):
        raise ValueError("Use a language tag such as en, ur or pt-BR.")
    primary, *rest = value.split("-")
    # Canonical case (BCP 47): `pt-BR`, `zh-Hant-TW`, `sr-latn` stays lower.
    subtags = [primary.lower()] + [
        part.upper() if len(part) == 2 else part.title() if len(part) == 4 else part.lower()
        for part in rest
    ]
    return "-".join(subtags)


def _blank_is_none(value: str | None) -> str | None:
    return value or None


def _trimmed(value: str | None) -> str | None:
    return _blank_is_none(value.strip()) if value is not None else None


Email = Annotated[
    str,
    AfterValidator(valid_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": MAX_EMAIL_CHARS}),
]
NewPassword = Annotated[
    str,
    AfterValidator(_valid_password),
    WithJsonSchema(
        {
            "type": "string",
            "format": "password",
            "minLength": MIN_PASSWORD_CHARS,
            "maxLength": MAX_PASSWORD_CHARS,
            "description": "8 to 128 characters, not only spaces, not the email address.",
        }
    ),
]
ProfileText = Annotated[
    str | None,
    Field(max_length=MAX_PROFILE_TEXT_CHARS),
    AfterValidator(_blank_is_none),
]
LanguageTag = Annotated[
    str,
    Field(min_length=2, max_length=16, json_schema_extra={"pattern": _LANGUAGE_TAG}),
    AfterValidator(_valid_language),
]


class SignupCreate(BaseModel):
    email: Email
    # Not stripped: spaces are part of a password.
    password: NewPassword
    name: Annotated[str | None, Field(max_length=200), AfterValidator(_trimmed)] = None


class LoginCreate(BaseModel):
    """JSON login; the same as the OAuth2 password form's `username` and `password`."""

    email: str = Field(max_length=MAX_EMAIL_CHARS)
    password: str = Field(max_length=1024, json_schema_extra={"format": "password"})


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None
    role: UserRole
    created_at: datetime


class TokenRead(BaseModel):
    """A new access token (send it as `Authorization: Bearer <access_token>`)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, no secret
    expires_in: int = Field(description="Seconds until the token expires.")
    user: UserRead


class ProfileUpdate(BaseModel):
    """The whole profile: a field left out is cleared."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    software_level: SkillLevel | None = None
    hardware_level: SkillLevel | None = None
    background: ProfileText = None
    goals: ProfileText = None
    preferred_language: LanguageTag | None = Field(
        default=None, description="A BCP 47 language tag: `en`, `ur`, `pt-BR`..."
    )


class ProfileRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    software_level: SkillLevel | None
    hardware_level: SkillLevel | None
    background: str | None
    goals: str | None
    preferred_language: str | None
    updated_at: datetime


class MeRead(UserRead):
    profile: ProfileRead | None = Field(description="Null until the profile is first saved.")
