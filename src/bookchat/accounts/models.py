"""Readers and admins, and the profile that personalizes chapters for them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from bookchat.core.db import Base, UTCDateTime, new_id, portable_enum, utcnow


class UserRole(StrEnum):
    USER = "user"
    ADMIN = "admin"


class SkillLevel(StrEnum):
    BEGINNER = "beginner"
    INTERMEDIATE = "intermediate"
    ADVANCED = "advanced"


class User(Base):
    """An account: local (email + password) or external (a Better-Auth subject, no password)."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # Always stored lower-cased, so uniqueness is case-insensitive on every dialect.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # The Better-Auth `sub` of an external identity.
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[UserRole] = mapped_column(
        portable_enum(UserRole, "user_role"), default=UserRole.USER
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_admin(self) -> bool:
        return self.role is UserRole.ADMIN


class UserProfile(Base):
    """What a reader told us about themselves; one row per user, absent until first saved."""

    __tablename__ = "user_profiles"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    software_level: Mapped[SkillLevel | None] = mapped_column(
        portable_enum(SkillLevel, "software_level")
    )
    hardware_level: Mapped[SkillLevel | None] = mapped_column(
        portable_enum(SkillLevel, "hardware_level")
    )
    background: Mapped[str | None] = mapped_column(Text)
    goals: Mapped[str | None] = mapped_column(Text)
    preferred_language: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
