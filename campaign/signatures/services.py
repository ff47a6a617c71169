"""Rules for signatures shared by every way of signing. Functions flush; callers commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import has_request_context
from flask_login import current_user

from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters.models import Letter, LetterStatus
from campaign.signatures.models import Signature, SignatureEvent


class SignatureError(ValueError):
    """A signing request that breaks a rule; the message is for the person signing."""


def record_event(signature: Signature, kind: str, summary: str = "", actor: Any = None, **details: Any) -> None:
    """Add a line to the signature's history (kept through withdrawal and rejection)."""
    if actor is None and has_request_context() and current_user.is_authenticated:
        actor = current_user
    db.session.add(
        SignatureEvent(
            signature=signature,
            kind=kind,
            summary=summary[:500],
            actor_email=getattr(actor, "email", None) or (signature.signer_email if actor == "signer" else None),
            details=details,
        )
    )


def why_not_signable(letter: Letter, now: datetime | None = None) -> str | None:
    """Why the letter refuses signatures now, or None.  Read from the letter, whatever jobs ran."""
    now = now or utcnow()
    if letter.status_enum is not LetterStatus.OPEN or not letter.is_public(now):
        return "This letter is not open for signatures."
    if letter.signature_deadline is not None and now >= letter.signature_deadline:
        deadline = letter.signature_deadline.strftime("%d %B %Y, %H:%M UTC")
        return f"The deadline for signing this letter passed on {deadline}; it no longer takes signatures."
    return None
