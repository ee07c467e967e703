"""Accounts endpoints: sign-up, login, the signed-in user and their profile."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from bookchat.accounts.dependencies import AccountServiceDep, CurrentUser
from bookchat.accounts.schemas import (
    LoginCreate,
    MeRead,
    ProfileRead,
    ProfileUpdate,
    SignupCreate,
    TokenRead,
)
from bookchat.core.errors import ValidationFailed
from bookchat.core.openapi import error_responses
from bookchat.core.ratelimit import client_ip, ip_identity
from bookchat.dependencies import SessionDep, rate_limited

router = APIRouter(prefix="/auth", tags=["auth"])

FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"

_PASSWORD_FORM: dict[str, Any] = {
    "schema": {
        "title": "OAuth2PasswordForm",
        "type": "object",
        "properties": {
            "grant_type": {"type": "string", "enum": ["password"]},
            "username": {"type": "string", "description": "The email address."},
            "password": {"type": "string", "format": "password"},
        },
        "required": ["username", "password"],
    }
}
_LOGIN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            FORM_TYPE: _PASSWORD_FORM,
            MULTIPART_TYPE: _PASSWORD_FORM,
            "application/json": {"schema": LoginCreate.model_json_schema()},
        },
    }
}


@router.post(
    "/signup",
    status_code=201,
    response_model=TokenRead,
    responses=error_responses(400, 409, 429),
    # Account creation is limited per client address like login attempts are.
    dependencies=[Depends(rate_limited("signup", lambda s, _: s.rate_limit_login))],
)
async def create_account(
    body: SignupCreate, db: SessionDep, accounts: AccountServiceDep
) -> TokenRead:
    """Create an account with an email and a password; answers with an access token."""
    return await accounts.sign_up(db, body)


@router.post(
    "/login",
    response_model=TokenRead,
    responses=error_responses(400, 401, 429),
    openapi_extra=_LOGIN_BODY,
)
async def create_access_token(
    request: Request, db: SessionDep, accounts: AccountServiceDep
) -> TokenRead:
    """Exchange an email and password for an access token (OAuth2 password form or JSON)."""
    credentials = await _read_login(request)
    client = ip_identity(client_ip(request, accounts.limiter.trusted_proxies))
    return await accounts.log_in(db, credentials, client)


async def _read_login(request: Request) -> LoginCreate:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # Swagger's Authorize button and OAuth2 clients send the urlencoded form; some send multipart.
    is_form = content_type in (FORM_TYPE, MULTIPART_TYPE)
    try:
        if is_form:
            form = await request.form()
            if form.get("grant_type") not in (None, "", "password"):
                raise ValidationFailed("grant_type: only the `password` grant is supported.")
            return LoginCreate.model_validate(
                {"email": form.get("username"), "password": form.get("password")}
            )
        return LoginCreate.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _invalid_login(exc, is_form) from None


def _invalid_login(exc: ValidationError, is_form: bool) -> ValidationFailed:
    details = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if is_form and loc[:1] == ["email"]:
            loc[0] = "username"  # the form's name for it
        details.append({"loc": ["body", *loc], "msg": error["msg"], "type": error["type"]})
    first = details[0]
    if first["type"] == "json_invalid":
        message = "Send the credentials as JSON {email, password} or as an OAuth2 password form."
    else:
        message = f"{'.'.join(first['loc'][1:]) or 'body'}: {first['msg']}"
    return ValidationFailed(message, details=details)


@router.get("/me", response_model=MeRead, responses=error_responses(401, 503))
async def read_me(user: CurrentUser, db: SessionDep, accounts: AccountServiceDep) -> MeRead:
    """The signed-in user and their profile."""
    return await accounts.me(db, user)


@router.put("/me/profile", response_model=ProfileRead, responses=error_responses(400, 401, 503))
async def update_profile(
    body: ProfileUpdate, user: CurrentUser, db: SessionDep, accounts: AccountServiceDep
) -> ProfileRead:
    """Replace the signed-in user's profile (levels, background, goals, preferred language)."""
    return await accounts.save_profile(db, user, body)
