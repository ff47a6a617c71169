"""API bearer tokens: shown once, stored as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa

from campaign import audit
from campaign.auth.models import ApiToken, User
from campaign.db import utcnow
from campaign.extensions import db

PREFIX = "dm_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the token, which is never stored."""
    name = " ".join(name.split())[:100] or "API token"
    raw = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user=user, name=name, token_hash=_digest(raw), prefix=raw[:10])
    db.session.add(row)
    db.session.flush()
    audit.record("token.create", row, f"API token {name!r} for {user.email}", user_id=user.id)
    return row, raw


def user_for_token(raw: str) -> User | None:
    """The active user a live token belongs to (and note its use), or None."""
    if not raw.startswith(PREFIX) or len(raw) > 200:
        return None
    row = db.session.scalar(
        sa.select(ApiToken).where(ApiToken.token_hash == _digest(raw), ApiToken.revoked_at.is_(None))
    )
    if row is None or not row.user.active:
        return None
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        db.session.execute(sa.update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
        db.session.commit()
    return row.user


def tokens_of(user: User) -> list[ApiToken]:
    return list(db.session.scalars(sa.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())))


def revoke(row: ApiToken) -> None:
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record("token.revoke", row, f"Revoked API token {row.name!r} of {row.user.email}", user_id=row.user_id)
