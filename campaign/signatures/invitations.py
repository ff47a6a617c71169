"""Invitations of member organisations to sign a letter, and the reminder before its deadline.

Functions flush; callers commit, then ``services.dispatch_after_commit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from campaign import audit, queue
from campaign.auth.models import Organisation, Role, User
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters.models import Letter, LetterStatus
from campaign.queue import Job
from campaign.signatures.models import Invitation
from campaign.signatures.services import (
    LIVE,
    SignatureError,
    defer_dispatch,
    discard_after_commit,
    external_url,
    queue_email,
    signature_of,
    why_not_signable,
)

REMIND_JOB = "signatures.remind"


#: An account that signs for its organisation: a member's, active.
_REPRESENTS = sa.and_(User.role == Role.MEMBER.value, User.active.is_(True))


def representatives(organisation: Organisation) -> list[User]:
    """The active accounts that sign for an organisation."""
    return list(
        db.session.scalars(
            sa.select(User).where(User.organisation_id == organisation.id, _REPRESENTS).order_by(User.id)
        )
    )


@dataclass
class Invited:
    """What ``invite`` did with the organisations it was given, for the coordinator to be told."""

    invited: list[Organisation] = field(default_factory=list)
    already_invited: list[Organisation] = field(default_factory=list)
    signed: list[Organisation] = field(default_factory=list)
    #: No active representative: nobody would receive the invitation, so it is not recorded.
    unrepresented: list[Organisation] = field(default_factory=list)


def invite(letter: Letter, organisations: list[Organisation], actor: Any = None) -> Invited:
    """Invite member organisations to sign: an Invitation row each and an email to its representatives.

    An organisation is invited only if someone receives the invitation: one without an
    active representative is left out, and can be invited once it has one.  Idempotent:
    an organisation already invited, or already signed, is not invited again.  Emails go
    out with ``dispatch_after_commit``.
    """
    reason = why_not_signable(letter)
    if reason:
        raise SignatureError(reason)
    invited = set(db.session.scalars(sa.select(Invitation.organisation_id).where(Invitation.letter_id == letter.id)))
    outcome = Invited()
    for organisation in organisations:
        if not organisation.member:
            continue
        if organisation.id in invited:
            outcome.already_invited.append(organisation)
            continue
        signed = signature_of(letter, organisation)
        if signed is not None and signed.status in LIVE:
            outcome.signed.append(organisation)
            continue
        users = representatives(organisation)
        if not users:
            outcome.unrepresented.append(organisation)
            continue
        try:
            with db.session.begin_nested():
                db.session.add(
                    Invitation(
                        letter_id=letter.id, organisation_id=organisation.id, invited_by_id=getattr(actor, "id", None)
                    )
                )
        except IntegrityError:  # another coordinator invited it at the same moment
            outcome.already_invited.append(organisation)
            continue
        invited.add(organisation.id)
        outcome.invited.append(organisation)
        for user in users:
            queue_email(
                user.email,
                f"Invitation to sign: {letter.title}",
                "signature_invitation",
                user=user,
                organisation=organisation,
                letter=letter,
                sign_url=external_url("signatures.sign_letter", slug=letter.slug),
            )
    db.session.flush()
    if count := len(outcome.invited):
        audit.record("signatures.invite", letter, f"Invited {count} member organisations", actor=actor, count=count)
        schedule_reminders(letter)
    return outcome


def unrepresented(organisations: list[Organisation]) -> set[int]:
    """The ids of those of ``organisations`` that no active account signs for."""
    ids = [organisation.id for organisation in organisations]
    represented = db.session.scalars(sa.select(User.organisation_id).where(User.organisation_id.in_(ids), _REPRESENTS))
    return set(ids) - set(represented)


def reminder_due(letter: Letter) -> datetime | None:
    if letter.signature_deadline is None:
        return None
    return letter.signature_deadline - timedelta(days=current_app.config["REMINDER_DAYS"])


def _deadline_key(letter: Letter) -> str:
    """The deadline a reminder job is for, as its payload records it (UTC, whatever zone it was given in)."""
    return letter.signature_deadline.astimezone(UTC).isoformat()


def schedule_reminders(letter: Letter) -> Job | None:
    """Keep one queued reminder job for the letter, due ``REMINDER_DAYS`` before its current
    deadline, or none when no reminder is due: no deadline, the letter not open, the deadline
    passed, or no invited organisation left to remind.

    Called after invitations and whenever the letter's deadline or status changes, in the
    caller's transaction.  A queued job for another deadline is replaced: finished here, and
    taken off RQ's queue by ``dispatch_after_commit``.  The letter's row is locked first, so
    that of two transactions rescheduling at once the second sees the first's job.  Whatever
    is scheduled, the job decides when it runs (``send_reminders``).
    """
    db.session.execute(sa.select(Letter.id).where(Letter.id == letter.id).with_for_update(key_share=True))
    queued = db.session.execute(
        sa.select(Job.id, Job.payload)
        .where(
            Job.kind == REMIND_JOB,
            Job.status == queue.JobStatus.QUEUED.value,
            Job.payload["letter_id"].as_integer() == letter.id,
        )
        .order_by(Job.id)
    ).all()
    due = reminder_due(letter)
    wanted = None
    if due is not None and letter.status_enum is LetterStatus.OPEN and utcnow() < letter.signature_deadline:
        to_remind = sa.select(Invitation.id).where(
            Invitation.letter_id == letter.id, Invitation.reminded_at.is_(None), Invitation.invited_at < due
        )
        if db.session.scalar(to_remind.limit(1)) is not None:
            wanted = {"letter_id": letter.id, "deadline": _deadline_key(letter)}
    kept = next((job_id for job_id, payload in queued if payload == wanted), None)
    if kept is not None:
        row = db.session.get(Job, kept)
    elif wanted is not None:
        row = queue.schedule(
            REMIND_JOB,
            wanted,
            due_at=max(due, utcnow()),
            description=f"Remind invited organisations to sign {letter.slug}"[:200],
        )
        defer_dispatch(row)
    else:
        row = None
    stale = [job_id for job_id, _ in queued if job_id != kept]
    if stale:
        _replace(stale, f"replaced by job {row.id}" if row else "dropped: no reminder is due for this letter now")
    return row


def _replace(job_ids: list[int], message: str) -> None:
    """Finish queued reminder jobs without running them.  Conditional: one that a worker
    claimed meanwhile runs, and finds out for itself."""
    now = utcnow()
    replaced = db.session.scalars(
        sa.update(Job)
        .where(Job.id.in_(job_ids), Job.status == queue.JobStatus.QUEUED.value)
        .values(status=queue.JobStatus.FINISHED.value, finished_at=now, message=message)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).all()
    discard_after_commit(replaced)


def send_reminders(letter_id: int, deadline: str) -> int:
    """Email the invited organisations that have not signed; returns how many were reminded.

    Re-reads the letter: nothing happens if it no longer takes signatures, and a
    moved deadline schedules a reminder of its own instead.  An organisation is
    reminded once (``reminded_at``, set by a conditional update, so that of two jobs
    running at once one reminds it), not at all if it was invited within the reminder
    period (the invitation was reminder enough), and not while no one represents it.
    """
    letter = db.session.get(Letter, letter_id)
    if letter is None or why_not_signable(letter):
        return 0
    if letter.signature_deadline is None or _deadline_key(letter) != deadline:
        schedule_reminders(letter)
        return 0
    due = reminder_due(letter)
    invitations = db.session.scalars(
        sa.select(Invitation)
        .where(Invitation.letter_id == letter.id, Invitation.reminded_at.is_(None), Invitation.invited_at < due)
        .options(selectinload(Invitation.organisation))
        .order_by(Invitation.id)
    ).all()
    count = 0
    for invitation in invitations:
        signed = signature_of(letter, invitation.organisation)
        if signed is not None and signed.status in LIVE:
            continue
        users = representatives(invitation.organisation)
        if not users or not _mark_reminded(invitation):
            continue
        count += 1
        for user in users:
            queue_email(
                user.email,
                f"Reminder: {letter.title} closes for signatures on {letter.signature_deadline:%d %B %Y}",
                "signature_reminder",
                user=user,
                organisation=invitation.organisation,
                letter=letter,
                sign_url=external_url("signatures.sign_letter", slug=letter.slug),
            )
    db.session.flush()
    return count


def _mark_reminded(invitation: Invitation) -> bool:
    """Set ``reminded_at`` unless another job did; whether this one did."""
    return bool(
        db.session.execute(
            sa.update(Invitation)
            .where(Invitation.id == invitation.id, Invitation.reminded_at.is_(None))
            .values(reminded_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
    )
