"""The life of a mailing: drafted, checked, approved by a second coordinator, sent once, cancelled."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from campaign import audit, queue
from campaign.contacts.models import Audience, Contact
from campaign.contacts.selection import CoverageRow, audience_query, coverage_for
from campaign.contacts.validation import canonical_tags, country_codes
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters.models import UN_LANGUAGES, Letter
from campaign.mailings import documents, jobs, personalise, schedule, sending  # noqa: F401 - jobs registers handlers
from campaign.mailings.models import OPEN, Delivery, DeliveryEvent, DeliveryStatus, Mailing, MailingStatus
from campaign.mailings.personalise import Failure
from campaign.queue import Job
from campaign.rendering import TemplateError, compile_template


class MailingError(ValueError):
    """A mailing action refused by the rules; the message is for the coordinator."""


@dataclass
class MailingData:
    letter: Letter
    subject: str
    introduction: str = ""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    rate_per_minute: int | None = None


def get_mailing(id: int) -> Mailing | None:
    return db.session.get(Mailing, id)


def _check(data: MailingData) -> MailingData:
    if not data.letter.is_published or not data.letter.published_revision_id:
        raise MailingError("Only a published letter (open, closed or sent) can be mailed.")
    subject = " ".join((data.subject or "").split())
    if not subject or len(subject) > 500:
        raise MailingError("The subject is required and has at most 500 characters.")
    if len(data.introduction or "") > 20_000:
        raise MailingError("The introduction has at most 20,000 characters.")
    try:
        compile_template(subject)
        compile_template(data.introduction or "")
    except TemplateError as exc:
        raise MailingError(f"The templates do not compile: {exc}") from exc
    codes = sorted({c.strip().upper() for c in data.countries if c.strip()})
    unknown = [c for c in codes if c not in country_codes()]
    if unknown:
        raise MailingError(f"Not ISO 3166-1 alpha-2 country codes: {', '.join(unknown)[:200]}.")
    languages = sorted({lang.strip().lower() for lang in data.languages if lang.strip()})
    if any(lang not in UN_LANGUAGES for lang in languages):
        raise MailingError(f"Languages must be among {', '.join(sorted(UN_LANGUAGES))}.")
    rate = data.rate_per_minute or current_app.config["MAILING_RATE"]
    if not 1 <= rate <= 100_000:
        raise MailingError("The rate is between 1 and 100,000 messages a minute.")
    name = " ".join((data.name or "").split())[:200] or f"{data.letter.title[:150]} — {utcnow():%d %b %Y}"
    return MailingData(data.letter, subject, (data.introduction or "").strip(), name,
                       canonical_tags(data.tags), codes, languages, rate)  # fmt: skip


def create_mailing(data: MailingData, actor: Any = None) -> Mailing:
    """A draft mailing; the caller commits."""
    data = _check(data)
    mailing = Mailing(created_by_id=getattr(actor, "id", None), letter_id=data.letter.id, letter=data.letter)
    _apply(mailing, data)
    db.session.add(mailing)
    db.session.flush()
    audit.record("mailings.create", mailing, f"Drafted mailing {mailing.name}", actor=actor)
    return mailing


def _apply(mailing: Mailing, data: MailingData) -> bool:
    changed = False
    for name in ("name", "subject", "introduction", "tags", "countries", "languages", "rate_per_minute"):
        value = getattr(data, name)
        if getattr(mailing, name) != value:
            setattr(mailing, name, value)
            changed = True
    if mailing.letter_id != data.letter.id:
        mailing.letter_id, mailing.letter, changed = data.letter.id, data.letter, True
    return changed


def update_mailing(mailing: Mailing, data: MailingData, actor: Any = None) -> Mailing:
    """Change a draft or approved mailing; any change withdraws an approval.

    The version moves by a conditional UPDATE, so a change racing a send loses cleanly:
    either the send saw the approved version and this is refused, or this withdrew the
    approval first and the send is refused.
    """
    if not mailing.editable:
        raise MailingError(f"A {mailing.status} mailing can no longer be changed.")
    data = _check(data)
    if not _differs(mailing, data):
        return mailing
    withdrawn = mailing.status == MailingStatus.APPROVED
    won = db.session.execute(
        sa.update(Mailing)
        .where(
            Mailing.id == mailing.id,
            Mailing.version == mailing.version,
            Mailing.status.in_([MailingStatus.DRAFT.value, MailingStatus.APPROVED.value]),
        )
        .values(
            version=Mailing.version + 1,
            status=MailingStatus.DRAFT.value,
            approved_by_id=None,
            approved_at=None,
            approved_version=None,
            revisions={},
            signatories=[],
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        raise MailingError("The mailing changed, was approved or is being sent meanwhile; reload it.")
    if withdrawn:
        documents.forget(mailing.id)
    db.session.refresh(mailing)
    _apply(mailing, data)
    actor_id = getattr(actor, "id", None)
    if actor_id is not None and actor_id not in mailing.editor_ids:
        mailing.editor_ids = [*mailing.editor_ids, actor_id]
    db.session.flush()
    note = " (its approval is withdrawn)" if withdrawn else ""
    audit.record("mailings.update", mailing, f"Changed mailing {mailing.name}{note}", actor=actor)
    return mailing


def _differs(mailing: Mailing, data: MailingData) -> bool:
    fields = ("name", "subject", "introduction", "tags", "countries", "languages", "rate_per_minute")
    return mailing.letter_id != data.letter.id or any(getattr(mailing, f) != getattr(data, f) for f in fields)


def audience_of(mailing: Mailing) -> Audience:
    """The mailing's audience as an unsaved ``Audience``, for the contacts' selection helpers."""
    return Audience(
        name="", tags=list(mailing.tags), countries=list(mailing.countries), languages=list(mailing.languages)
    )


def recipients_query(mailing: Mailing) -> sa.Select:
    """Every contact the audience selects, deliverable or suppressed."""
    return audience_query(audience_of(mailing))


def coverage(mailing: Mailing) -> list[CoverageRow]:
    return coverage_for(audience_of(mailing))


def uncovered(mailing: Mailing) -> list[CoverageRow]:
    """The targeted states without a deliverable contact in the audience."""
    return [row for row in coverage(mailing) if not row.deliverable]


def check_recipients(mailing: Mailing) -> list[Failure]:
    """Render the mailing for every deliverable recipient; the failures, each with its reason."""
    contacts = db.session.scalars(
        recipients_query(mailing).where(Contact.suppression.is_(None)).options(selectinload(Contact.tag_rows))
    )
    return personalise.check(mailing, contacts)


def approve(mailing: Mailing, actor: Any) -> Mailing:
    """A second coordinator approves: never the author, only a draft whose every recipient
    renders.  The revisions per language and the signatory list are frozen now."""
    if actor is None or mailing.created_by_id == getattr(actor, "id", None):
        raise MailingError("A mailing is approved by a coordinator other than its author.")
    if actor.id in (mailing.editor_ids or []):
        raise MailingError("You changed this mailing: a coordinator who did not write or edit it approves it.")
    if mailing.status != MailingStatus.DRAFT:
        raise MailingError(f"Only a draft can be approved; this mailing is {mailing.status}.")
    if not mailing.letter.is_published:
        raise MailingError("The letter is not published.")
    deliverable = db.session.scalar(
        sa.select(sa.func.count()).select_from(
            recipients_query(mailing).where(Contact.suppression.is_(None)).order_by(None).subquery()
        )
    )
    if not deliverable:
        raise MailingError("The audience has no deliverable contact.")
    failures = check_recipients(mailing)
    if failures:
        raise MailingError(f"{len(failures)} recipient(s) do not render, first: {failures[0].email or 'templates'}: "
                           f"{failures[0].error}")  # fmt: skip
    from campaign.signatures import listing

    revisions = personalise.published_revisions(mailing.letter)
    signatories = [list(row) for row in listing.pdf_rows(listing.approved_signatories(mailing.letter))]
    # One winner when two coordinators approve at once, and only the version they saw.
    won = db.session.execute(
        sa.update(Mailing)
        .where(
            Mailing.id == mailing.id, Mailing.status == MailingStatus.DRAFT.value, Mailing.version == mailing.version
        )
        .values(
            status=MailingStatus.APPROVED.value,
            approved_by_id=actor.id,
            approved_at=utcnow(),
            approved_version=mailing.version,
            revisions=revisions,
            signatories=signatories,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        raise MailingError("The mailing changed or was approved meanwhile; reload it.")
    db.session.refresh(mailing)
    audit.record("mailings.approve", mailing, f"Approved mailing {mailing.name}", actor=actor,
                 version=mailing.version, recipients=deliverable)  # fmt: skip
    return mailing


def render_documents_later(mailing: Mailing) -> Job:
    """The job rendering the PDFs of the mailing just approved (``documents``); the caller
    commits, then dispatches it."""
    return queue.schedule("mailing.documents", {"mailing_id": mailing.id, "version": mailing.approved_version},
                          description=f"Render the PDFs of mailing {mailing.id}")  # fmt: skip


def request_send(mailing: Mailing, request: dict[str, Any], actor: Any = None) -> Job:
    """Make one delivery per recipient with its due time and schedule the sending; returns the
    job to dispatch after the commit.  Two requests at once: one wins, the other is refused."""
    if mailing.status != MailingStatus.APPROVED or not mailing.is_approved:
        raise MailingError(
            "Only an approved mailing can be sent"
            + (f"; this one is {mailing.status}." if mailing.status != MailingStatus.APPROVED else ".")
        )
    try:
        plan = schedule.plan(request, mailing.letter.meeting)
    except schedule.ScheduleError as exc:
        raise MailingError(str(exc)) from exc
    won = db.session.execute(
        sa.update(Mailing)
        .where(
            Mailing.id == mailing.id,
            Mailing.status == MailingStatus.APPROVED.value,
            Mailing.version == mailing.approved_version,
        )
        .values(
            status=MailingStatus.SCHEDULED.value,
            send_requested_by_id=getattr(actor, "id", None),
            send_requested_at=utcnow(),
            schedule=_schedule_record(request, plan),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        raise MailingError("This mailing is already being sent, or changed meanwhile.")
    db.session.refresh(mailing)
    first_due = sending.make_deliveries(mailing, plan)
    if first_due is None:
        raise MailingError("The audience has no contact any more.")
    mailing.first_due_at = first_due
    audit.record("mailings.send", mailing, f"Asked to send mailing {mailing.name} {plan.describe()}", actor=actor)
    return queue.schedule("mailing.dispatch", {"mailing_id": mailing.id}, due_at=first_due,
                          description=f"Send mailing {mailing.id}", created_by=actor)  # fmt: skip


def _schedule_record(request: dict[str, Any], plan: schedule.Plan) -> dict[str, Any]:
    record: dict[str, Any] = {"description": plan.describe()}
    if plan.at is not None:
        record["at"] = plan.at.isoformat()
    if plan.before is not None:
        record["before_meeting"] = request["before_meeting"].strip().upper()
        record["local_time"] = f"{plan.local_time:%H:%M}"
    return record


def cancel(mailing: Mailing, actor: Any = None) -> int:
    """Stop a mailing: pending deliveries are cancelled (recorded); those in flight finish.
    Returns how many deliveries were cancelled."""
    if mailing.status in (MailingStatus.FINISHED, MailingStatus.CANCELLED):
        raise MailingError(f"The mailing is already {mailing.status}.")
    won = db.session.execute(
        sa.update(Mailing)
        .where(Mailing.id == mailing.id, Mailing.status == mailing.status)
        .values(status=MailingStatus.CANCELLED.value, cancelled_at=utcnow(), cancelled_by_id=getattr(actor, "id", None))
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        raise MailingError("The mailing changed meanwhile; reload it.")
    cancelled = sending.cancel_pending(mailing.id, f"cancelled by {getattr(actor, 'email', 'a coordinator')}")
    db.session.refresh(mailing)
    audit.record("mailings.cancel", mailing, f"Cancelled mailing {mailing.name} ({cancelled} not sent)", actor=actor)
    return cancelled


def test_send(mailing: Mailing, contact: Contact, actor: Any) -> Job:
    """Queue the message ``contact`` would receive, to the coordinator's own address."""
    try:
        personalise.Renderer(mailing).render(contact)
    except TemplateError as exc:
        raise MailingError(f"It does not render for {contact.email}: {exc}") from exc
    audit.record("mailings.test", mailing, f"Test send of mailing {mailing.name} as {contact.email}", actor=actor)
    return queue.schedule("mailing.test", {"mailing_id": mailing.id, "contact_id": contact.id, "to": actor.email},
                          description=f"Test of mailing {mailing.id} to {actor.email}", created_by=actor)  # fmt: skip


#: A coordinator's decisions on an uncertain delivery.
RESOLUTIONS = {
    "sent": "it arrived (confirmed with the recipient or the provider)",
    "failed": "it did not arrive; do not send it again",
    "resend": "send it again",
}


def resolve(delivery: Delivery, outcome: str, note: str, actor: Any) -> Job | None:
    """Settle an ``uncertain`` delivery by hand, with a note; "resend" is the only way an
    uncertain delivery is ever sent again.  Returns the job to dispatch for a resend."""
    if outcome not in RESOLUTIONS:
        raise MailingError("Choose whether it arrived, did not arrive, or should be sent again.")
    note = " ".join((note or "").split())[:500]
    if not note:
        raise MailingError("Say what the decision rests on (a reply, the provider's log…).")
    if outcome == "resend" and delivery.mailing.status == MailingStatus.CANCELLED:
        raise MailingError("The mailing was cancelled: nothing of it is sent again.")
    status = {"sent": DeliveryStatus.SENT, "failed": DeliveryStatus.FAILED, "resend": DeliveryStatus.PENDING}[outcome]
    won = db.session.execute(
        sa.update(Delivery)
        .where(Delivery.id == delivery.id, Delivery.status == DeliveryStatus.UNCERTAIN.value)
        .values(
            status=status.value,
            reason=f"resolved by {actor.email}: {note}"[:1000],
            due_at=utcnow(),
            sent_at=utcnow() if outcome == "sent" else Delivery.sent_at,
            lease_owner=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        raise MailingError("This delivery is no longer uncertain; reload the page.")
    db.session.add(DeliveryEvent(delivery_id=delivery.id, kind=f"resolved-{outcome}", detail=note, source=actor.email))
    db.session.refresh(delivery)
    mailing = delivery.mailing
    audit.record("mailings.resolve", mailing, f"Delivery to {delivery.email}: {RESOLUTIONS[outcome]}", actor=actor,
                 delivery=delivery.id, note=note)  # fmt: skip
    if outcome != "resend":
        return None
    if mailing.status == MailingStatus.FINISHED:
        mailing.status, mailing.finished_at = MailingStatus.SENDING.value, None
    return queue.schedule("mailing.chunk", {"mailing_id": mailing.id}, description=f"Resend to {delivery.email}",
                          created_by=actor)  # fmt: skip


def progress(mailing: Mailing) -> sending.Progress:
    return sending.progress(mailing.id)


def progress_of(parent: InstrumentedAttribute[int], ids: Iterable[int]) -> dict[int, sending.Progress]:
    """``sending.progress`` for many mailings (``parent``: ``Delivery.mailing_id``) or alerts
    (``AlertDelivery.alert_id``) in one GROUP BY; every id given has an entry, zeros included."""
    ids = list(ids)
    found: dict[int, dict[str, int]] = defaultdict(dict)
    model = parent.class_
    rows = db.session.execute(
        sa.select(parent, model.status, sa.func.count()).where(parent.in_(ids)).group_by(parent, model.status)
    )
    for parent_id, status, count in rows:
        found[parent_id][status] = count
    result = {}
    for parent_id in ids:
        counts = {state.value: found[parent_id].get(state.value, 0) for state in DeliveryStatus}
        total = sum(counts.values())
        result[parent_id] = sending.Progress(counts, total, total - sum(counts[s.value] for s in OPEN))
    return result


def uncertain_deliveries(mailing: Mailing) -> list[Delivery]:
    return db.session.scalars(
        sa.select(Delivery)
        .where(Delivery.mailing_id == mailing.id, Delivery.status == DeliveryStatus.UNCERTAIN.value)
        .options(selectinload(Delivery.events))
        .order_by(Delivery.id)
    ).all()


# --- for the coordinators' pages -------------------------------------------------------------


def recipient_counts(mailing: Mailing) -> tuple[int, int]:
    """How many contacts the audience selects: (deliverable, suppressed)."""
    contacts = recipients_query(mailing).order_by(None).subquery()
    row = db.session.execute(
        sa.select(
            sa.func.count().filter(contacts.c.suppression.is_(None)),
            sa.func.count().filter(contacts.c.suppression.is_not(None)),
        )
    ).one()
    return int(row[0]), int(row[1])


def due_times(mailing: Mailing) -> list[tuple[Any, int]]:
    """When the mailing's deliveries fall due, with how many at each time (relative schedules
    give one time per recipients' timezone)."""
    rows = db.session.execute(
        sa.select(Delivery.due_at, sa.func.count())
        .where(Delivery.mailing_id == mailing.id, Delivery.status != DeliveryStatus.SUPPRESSED.value)
        .group_by(Delivery.due_at)
        .order_by(Delivery.due_at)
        .limit(50)
    ).all()
    return [(due, count) for due, count in rows]


def template_errors(letter: Letter, subject: str, introduction: str) -> dict[str, str]:
    """What the subject or the introduction fails on for every recipient alike (an unknown merge
    field, a misused filter), found by rendering each for a sample contact; keyed "subject" and
    "introduction", empty when both render.  What depends on the recipient is for
    ``check_recipients``.  Nothing is added to the session."""
    sample = Contact(email="sample@example.org", country="FR", organisation="Permanent Mission of France",
                     honorific="H.E. Ms", given_name="Anne", family_name="Martin", salutation="Excellency,",
                     position="Permanent Representative", language=letter.language, timezone="UTC")  # fmt: skip
    errors = {}
    for name, probe_subject, probe_introduction in (("subject", subject, ""), ("introduction", "-", introduction)):
        probe = Mailing(letter_id=letter.id, letter=letter, subject=probe_subject, introduction=probe_introduction,
                        tags=[], countries=[], languages=[], version=1)  # fmt: skip
        try:
            personalise.Renderer(probe).render(sample)
        except TemplateError as exc:
            errors[name] = str(exc)
    return errors
