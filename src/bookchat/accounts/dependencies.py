"""Who may do what. Today: the admin key for content writes (admin users come with accounts)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header

from bookchat.core.deps import SettingsDep
from bookchat.core.errors import Forbidden, Unauthorized


async def require_admin(
    settings: SettingsDep,
    x_admin_key: Annotated[str | None, Header(description="The ADMIN_API_KEY.")] = None,
) -> None:
    """Allow the request only with the configured admin key."""
    if settings.admin_api_key is None:
        raise Forbidden(
            "Content writes are disabled on this server: set ADMIN_API_KEY and send it in the "
            "X-Admin-Key header."
        )
    expected = settings.admin_api_key.get_secret_value()
    # Constant-time comparison: the key must not leak through response timing.
    if x_admin_key is None or not secrets.compare_digest(x_admin_key.encode(), expected.encode()):
        raise Unauthorized("A valid X-Admin-Key header is required for this operation.")


AdminDep = Depends(require_admin)
