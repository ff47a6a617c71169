"""Coordinators approve or reject confirmed public signatures. Functions flush; callers commit.

Only signatures awaiting approval can be decided; the signer is told the outcome
by ``notify``, which the caller runs after its commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from campaign import audit
from campaign.db import utcnow
from campaign.extensions import db
from campaign.signatures.models import Signature, SignatureStatus
from campaign.signatures.services import SignatureError, SignatureInvalid, record_event

REASON_MAX = 500


@dataclass
class Outcome:
    """What a bulk decision did: the signatures decided, and how many were skipped."""

    decided: list[Signature] = field(default_factory=list)
    skipped: int = 0


def _check_pending(signature: Signature) -> None:
    if signature.status != SignatureStatus.PENDING_APPROVAL:
        decided = signature.status in (SignatureStatus.APPROVED, SignatureStatus.REJECTED)
        state = f"already {signature.status}" if decided else signature.status_enum.label.lower()
        raise SignatureError(f"{signature.organisation_name}'s signature is {state}, not awaiting approval.")


def _claim(signature: Signature, status: SignatureStatus) -> None:
    """Move the row out of pending approval only if it is still there, so two coordinators
    deciding at once cannot both succeed (and the signer is told one outcome)."""
    _check_pending(signature)
    claimed = db.session.execute(
        sa.update(Signature)
        .where(Signature.id == signature.id, Signature.status == SignatureStatus.PENDING_APPROVAL.value)
        .values(status=status.value)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        db.session.refresh(signature)
        _check_pending(signature)
    signature.status = status.value


def _clean_reason(reason: str) -> str:
    reason = " ".join((reason or "").split())
    if not reason:
        raise SignatureInvalid("reason", "Give a reason for rejecting: the signer is told it.")
    if len(reason) > REASON_MAX:
        raise SignatureInvalid("reason", f"The reason is too long (at most {REASON_MAX} characters).")
    return reason


def approve(signature: Signature, actor: Any) -> Signature:
    """Approve a signature awaiting approval: it counts publicly from now."""
    _claim(signature, SignatureStatus.APPROVED)
    now = utcnow()
    signature.decided_at = signature.approved_at = now
    signature.decided_by_id = getattr(actor, "id", None)
    signature.rejection_reason = ""
    record_event(signature, "approved", "Approved by the secretariat", actor)
    audit.record(
        "signature.approve",
        signature,
        f"Approved {signature.organisation_name}'s signature of {signature.letter.slug}",
        actor=actor,
        letter_id=signature.letter_id,
    )
    db.session.flush()
    return signature


def reject(signature: Signature, reason: str, actor: Any) -> Signature:
    """Reject a signature awaiting approval, with a reason the signer is told."""
    reason = _clean_reason(reason)
    _claim(signature, SignatureStatus.REJECTED)
    signature.decided_at = utcnow()
    signature.decided_by_id = getattr(actor, "id", None)
    signature.rejection_reason = reason
    signature.approved_at = None
    record_event(signature, "rejected", f"Rejected: {reason}", actor, reason=reason)
    audit.record(
        "signature.reject",
        signature,
        f"Rejected {signature.organisation_name}'s signature of {signature.letter.slug}",
        actor=actor,
        letter_id=signature.letter_id,
        reason=reason,
    )
    db.session.flush()
    return signature


def _load(ids: Iterable[int]) -> list[Signature]:
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return []
    return list(db.session.scalars(sa.select(Signature).where(Signature.id.in_(wanted)).order_by(Signature.id)))


def approve_many(ids: Iterable[int], actor: Any) -> Outcome:
    """Approve those of ``ids`` awaiting approval; the others (or unknown ids) are skipped and counted."""
    ids = list(ids)
    signatures = _load(ids)
    outcome = Outcome(skipped=len(set(ids)) - len(signatures))
    for signature in signatures:
        if signature.status == SignatureStatus.PENDING_APPROVAL:
            outcome.decided.append(approve(signature, actor))
        else:
            outcome.skipped += 1
    return outcome


def reject_many(ids: Iterable[int], reason: str, actor: Any) -> Outcome:
    """Reject those of ``ids`` awaiting approval with one reason; the others are skipped and counted."""
    reason = _clean_reason(reason)
    ids = list(ids)
    signatures = _load(ids)
    outcome = Outcome(skipped=len(set(ids)) - len(signatures))
    for signature in signatures:
        if signature.status == SignatureStatus.PENDING_APPROVAL:
            outcome.decided.append(reject(signature, reason, actor))
        else:
            outcome.skipped += 1
    return outcome


def notify(signatures: Iterable[Signature]) -> None:
    """Tell each signer the decision; call after the commit that recorded it."""
    from campaign.mailings.notices import external_url, send_template

    for signature in signatures:
        letter = signature.letter
        title = letter.published_revision.title if letter.published_revision else letter.title
        approved = signature.status == SignatureStatus.APPROVED
        send_template(
            signature.signer_email,
            "Your signature is approved" if approved else "Your signature was not accepted",
            "signon_approved" if approved else "signon_rejected",
            signature=signature,
            title=title,
            link=external_url("public.letter", slug=letter.slug),
        )
