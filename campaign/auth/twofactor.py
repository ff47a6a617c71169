"""TOTP second factor (RFC 6238) and single-use recovery codes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pyotp
import segno
import sqlalchemy as sa
from flask import current_app

from campaign.auth.models import RecoveryCode, User
from campaign.db import utcnow
from campaign.extensions import db

RECOVERY_CODE_COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(user: User, secret: str) -> str:
    issuer = current_app.config["TWO_FACTOR_ISSUER"]
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The provisioning URI as an inline SVG QR code (no external image, no script)."""
    return segno.make(uri, error="m").svg_inline(scale=4, title="Two-factor set-up QR code")


def _matching_step(secret: str, code: str) -> int | None:
    """The time step a code belongs to (one step of drift either way), or None."""
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    now = utcnow()
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def code_is_valid_for_setup(secret: str, code: str) -> bool:
    return _matching_step(secret, code) is not None


def verify_totp(user: User, code: str) -> bool:
    """Accept a code once: a step at or before the last one accepted is refused."""
    if not user.totp_secret:
        return False
    step = _matching_step(user.totp_secret, code)
    if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
        return False
    user.totp_last_step = step
    return True


def _hash_code(code: str) -> str:
    return hashlib.sha256(_normalise_code(code).encode()).hexdigest()


def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def generate_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes; returns the new codes, shown once."""
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash_code(code)) for code in codes)
    return codes


def use_recovery_code(user: User, code: str) -> bool:
    """Spend a recovery code; True when it was valid and unused."""
    if len(_normalise_code(code)) != 10:
        return False
    found = db.session.scalars(
        sa.select(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _hash_code(code))
        .where(RecoveryCode.used_at.is_(None))
        .with_for_update()
    ).first()
    if found is None:
        return False
    found.used_at = utcnow()
    return True


def remaining_recovery_codes(user: User) -> int:
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )


def enable(user: User, secret: str) -> list[str]:
    user.totp_secret = secret
    user.totp_enabled_at = utcnow()
    user.totp_last_step = None
    return generate_recovery_codes(user)


def disable(user: User) -> None:
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
