"""Rules for signatures shared by every way of signing. Functions flush; callers commit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_request_context, url_for
from flask_login import current_user
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from campaign import audit, queue
from campaign.auth.models import Organisation, Role, User
from campaign.auth.services import organisation_name_key
from campaign.db import utcnow
from campaign.extensions import db
from campaign.forms import has_control_characters
from campaign.letters.models import Letter, LetterStatus
from campaign.queue import Job
from campaign.signatures.models import Signature, SignatureEvent, SignatureSource, SignatureStatus


class SignatureError(ValueError):
    """A signing request that breaks a rule; the message is for the person signing."""


class SignatureInvalid(SignatureError):
    """A value given with the request is unusable, whatever the signature's state; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


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


# --- members signing -----------------------------------------------------------------

#: A signature that counts or may yet count: the organisation cannot sign again while it has one.
LIVE = (
    SignatureStatus.PENDING_VERIFICATION.value,
    SignatureStatus.PENDING_APPROVAL.value,
    SignatureStatus.APPROVED.value,
)
#: Deferred jobs (emails, reminders) scheduled in this session: sent by ``dispatch_after_commit``.
_AFTER_COMMIT = "signatures.after_commit_jobs"
#: Jobs this session finished without running: taken off RQ's queue by ``dispatch_after_commit``.
_REPLACED = "signatures.replaced_jobs"


def _one_line(value: str, field: str, what: str, required: bool = True) -> str:
    # Any control character: these values reach mail headers and CSV files.
    if has_control_characters(value):
        raise SignatureInvalid(field, f"The {what} must be a single line.")
    value = " ".join(value.split())
    if required and not value:
        raise SignatureInvalid(field, f"Give the {what}.")
    if len(value) > 200:
        raise SignatureInvalid(field, f"Keep the {what} under 200 characters.")
    return value


def signature_of(letter: Letter, organisation: Organisation) -> Signature | None:
    """The organisation's signature of the letter in any state (there is at most one)."""
    key = organisation_name_key(organisation.name)
    return db.session.scalar(
        sa.select(Signature)
        .where(Signature.letter_id == letter.id)
        .where(sa.or_(Signature.organisation_key == key, Signature.organisation_id == organisation.id))
        .order_by(Signature.id)
        .limit(1)
    )


def _already_signed(signature: Signature) -> SignatureError:
    when = signature.approved_at or signature.created_at
    date = f" on {when:%d %B %Y}" if when else ""
    state = "" if signature.status == "approved" else f" ({signature.status_enum.label.lower()})"
    return SignatureError(
        f"{signature.organisation_name} has already signed this letter: {signature.signer_name}{date}{state}."
    )


def sign_as_member(letter: Letter, user: User, signer_name: str, signer_title: str = "") -> Signature:
    """Sign for the user's member organisation in one step: approved at once.

    One signature per organisation per letter: the unique (letter, organisation key)
    is the guard, so of concurrent requests exactly one succeeds.  An earlier
    signature that was withdrawn or rejected is signed again (its row, its history).
    """
    reason = why_not_signable(letter)
    if reason:
        raise SignatureError(reason)
    organisation = user.organisation
    if user.role != Role.MEMBER or organisation is None or not organisation.member:
        raise SignatureError("Only the representative of a member organisation can sign here.")
    signer_name = _one_line(signer_name, "signer_name", "signer's name")
    signer_title = _one_line(signer_title or "", "signer_title", "signer's title", required=False)
    now = utcnow()
    fields = {
        "organisation_id": organisation.id,
        "organisation_name": organisation.name,
        "country": organisation.country,
        "website": organisation.website,
        "signer_name": signer_name,
        "signer_title": signer_title,
        "signer_email": user.email.lower(),
        "status": SignatureStatus.APPROVED.value,
        "source": SignatureSource.MEMBER.value,
        "revision_id": letter.published_revision_id,
        "user_id": user.id,
        "approved_at": now,
        "decided_at": now,
        "decided_by_id": None,
        "rejection_reason": "",
        "withdrawn_at": None,
        "needs_reconfirmation": False,
        "reconfirmed_at": None,
    }
    existing = signature_of(letter, organisation)
    if existing is not None:
        if existing.status in LIVE:
            raise _already_signed(existing)
        # Conditional: of two requests signing again at once, one finds the row live.
        reused = db.session.execute(
            sa.update(Signature)
            .where(Signature.id == existing.id, Signature.status.not_in(LIVE))
            .values(**fields, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.refresh(existing)
        if not reused:
            raise _already_signed(existing)
        record_event(existing, "signed_again", f"Signed again for {organisation.name} by {signer_name}", actor=user)
        db.session.flush()
        return existing
    signature = Signature(letter_id=letter.id, organisation_key=organisation_name_key(organisation.name), **fields)
    try:
        with db.session.begin_nested():
            db.session.add(signature)
            db.session.flush()
    except IntegrityError:
        raise SignatureError(f"{organisation.name} has already signed this letter.") from None
    record_event(signature, "signed", f"Signed for {organisation.name} by {signer_name}", actor=user)
    db.session.flush()
    return signature


def withdraw(signature: Signature, actor: Any = None) -> Signature:
    """Withdraw a pending or approved signature, while the letter is open and before its deadline."""
    if signature.status not in LIVE:
        raise SignatureError("This signature is not current: there is nothing to withdraw.")
    reason = why_not_signable(signature.letter)
    if reason:
        raise SignatureError(f"{reason} Signatures can no longer be withdrawn.")
    before = signature.status
    signature.status = SignatureStatus.WITHDRAWN.value
    signature.withdrawn_at = utcnow()
    signature.needs_reconfirmation = False
    record_event(signature, "withdrawn", f"Withdrawn (was {before})", actor=actor, before=before)
    db.session.flush()
    return signature


def reconfirm(signature: Signature, actor: Any = None) -> Signature:
    """Confirm the signature for the letter's current published text."""
    if signature.status not in LIVE or not signature.needs_reconfirmation:
        raise SignatureError("This signature has nothing to re-confirm.")
    reason = why_not_signable(signature.letter)
    if reason:
        raise SignatureError(reason)
    signature.needs_reconfirmation = False
    signature.revision_id = signature.letter.published_revision_id
    signature.reconfirmed_at = utcnow()
    number = signature.letter.published_revision.number if signature.letter.published_revision else None
    record_event(signature, "reconfirmed", f"Re-confirmed for revision {number}", actor=actor, revision=number)
    db.session.flush()
    return signature


def mark_for_reconfirmation(letter: Letter, actor: Any = None) -> int:
    """After a substantive change: confirmed signatures of an earlier revision (approved, or
    awaiting approval) are asked to re-confirm, once for each published revision: one asked
    about an earlier change and not yet answered is asked again, as its link is for a text
    that is no longer current.  One still awaiting its email confirmation is not asked: its
    confirmation page says that the text changed, and it confirms the new one.

    Each signer gets an email (sent by ``dispatch_after_commit``): members a link to their
    signing page, the others a link of their own; returns how many were asked.
    """
    from campaign.signatures.public_signon import reconfirmation_token

    number = letter.published_revision.number if letter.published_revision else None
    confirmed = (SignatureStatus.APPROVED.value, SignatureStatus.PENDING_APPROVAL.value)
    found = [
        signature
        for signature in db.session.scalars(
            sa.select(Signature)
            .where(Signature.letter_id == letter.id, Signature.status.in_(confirmed))
            .where(sa.or_(Signature.revision_id.is_(None), Signature.revision_id != letter.published_revision_id))
            .options(selectinload(Signature.events))
            .order_by(Signature.id)
        )
        if not _asked_about(signature, number)
    ]
    for signature in found:
        signature.needs_reconfirmation = True
        record_event(
            signature, "reconfirmation_requested", f"Asked to re-confirm revision {number}", actor, revision=number
        )
        links = {"letter_url": external_url("public.letter", slug=letter.slug)}
        if signature.source == SignatureSource.MEMBER:
            links["sign_url"] = external_url("signatures.sign_letter", slug=letter.slug)
        else:
            links["reconfirm_url"] = external_url(
                "signatures.reconfirm_by_link", slug=letter.slug, token=reconfirmation_token(signature)
            )
        queue_email(
            signature.signer_email,
            f"Please re-confirm your signature: {letter.title}",
            "signature_reconfirm",
            signature=signature,
            letter=letter,
            **links,
        )
    db.session.flush()
    if found:
        audit.record("signatures.reconfirmation", letter, f"Asked {len(found)} signatories to re-confirm", actor=actor)
    return len(found)


def _asked_about(signature: Signature, number: int | None) -> bool:
    """Whether the signature is already waiting to re-confirm revision ``number``."""
    return signature.needs_reconfirmation and any(
        event.kind == "reconfirmation_requested" and event.details.get("revision") == number
        for event in signature.events
    )


def signatures_of_organisation(organisation: Organisation) -> list[Signature]:
    """Every signature the organisation gave, newest first, with its letter and history."""
    key = organisation_name_key(organisation.name)
    return list(
        db.session.scalars(
            sa.select(Signature)
            .where(sa.or_(Signature.organisation_id == organisation.id, Signature.organisation_key == key))
            .options(selectinload(Signature.events), selectinload(Signature.letter), selectinload(Signature.revision))
            .order_by(Signature.created_at.desc(), Signature.id.desc())
        )
    )


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute link for an email, built on ``SITE_URL``, never on a Host header.

    Works without a request too: reminders are built by a job.
    """
    if has_request_context():
        path = url_for(endpoint, **values)
    else:
        path = current_app.url_map.bind("localhost").build(endpoint, values)
    return current_app.config["SITE_URL"] + path


# --- mail after commit -----------------------------------------------------------------


def queue_email(to: str, subject: str, template: str, **context: Any) -> Job:
    """Render an email and add its send job to this transaction; ``dispatch_after_commit`` sends it.

    The job row commits (or rolls back) with the change it reports, so no message
    goes out about something that did not happen.
    """
    # Imported here: the mail modules import the admin and letters packages, which import this one.
    from campaign.mailings import notices as mail

    row = mail.queue_email(to, subject, template, **context)
    defer_dispatch(row)
    return row


def defer_dispatch(row: Job) -> None:
    db.session.info.setdefault(_AFTER_COMMIT, []).append(row)


def discard_after_commit(job_ids: Iterable[int]) -> None:
    """Jobs this transaction finished without running (replaced ones): ``dispatch_after_commit``
    takes them off RQ's queue, if the commit kept them finished."""
    db.session.info.setdefault(_REPLACED, set()).update(job_ids)


def dispatch_after_commit() -> int:
    """Hand the jobs this session scheduled (emails, reminders) to the queue; call after the commit.

    Rows a rollback undid are no longer persistent and are left out; the others are not
    reloaded (``queue.dispatch`` needs only their ids).  Reminder jobs that were replaced,
    if the commit kept them finished, are taken off RQ's queue.
    """
    replaced = db.session.info.pop(_REPLACED, set())
    rows = [
        row
        for row in db.session.info.pop(_AFTER_COMMIT, [])
        if sa.inspect(row).persistent and sa.inspect(row).identity[0] not in replaced
    ]
    if rows:
        queue.dispatch(*rows)
    if replaced and queue.mode() == "redis":
        for rq_job_id in db.session.scalars(
            sa.select(Job.rq_job_id).where(Job.id.in_(sorted(replaced)), Job.status == queue.JobStatus.FINISHED.value)
        ):
            queue.discard(rq_job_id)
    return len(rows)
