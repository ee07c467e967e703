"""Password hashing (Argon2id through pwdlib) and the rules a new password must meet.

Hashing and verifying cost ~0.1 s of CPU on purpose: async callers run them in a worker thread.
"""

from __future__ import annotations

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 128

PASSWORD_HASH = PasswordHash((Argon2Hasher(),))

# The hash of a random password nobody knows, made with the hasher's current parameters (a test
# checks they still match). Logging in with an unknown email verifies the password against it,
# so an unknown account costs the same time and takes the same path as a wrong password and
# response timing does not reveal which emails have accounts.
DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$Txe5GOBwK1zZ4Uf1SrEGxA"
    "$XkXGZqMkIm2ijIJHuRMpVSURz/i3pJi8fy7m3yExkXM"
)


def hash_password(password: str) -> str:
    """The Argon2id hash to store for `password`."""
    return PASSWORD_HASH.hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """True when `password` matches `hashed`.

    `hashed=None` (no such account, or an account without a password) still runs one full
    verification, against DUMMY_HASH, and returns False.
    """
    try:
        valid = PASSWORD_HASH.verify(password, hashed or DUMMY_HASH)
    except UnknownHashError:
        return False
    return valid and hashed is not None


def password_problem(password: str, email: str | None = None) -> str | None:
    """Why `password` is not acceptable for a new account, or None when it is."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"Use at least {MIN_PASSWORD_CHARS} characters."
    if len(password) > MAX_PASSWORD_CHARS:
        return f"Use at most {MAX_PASSWORD_CHARS} characters."
    if not password.strip():
        return "The password cannot be only spaces."
    if email is not None and password.strip().lower() == email.strip().lower():
        return "The password cannot be the email address."
    return None
