"""Delivery tracking: SendGrid's events, each stored once and applied to its delivery and contact.

An event names its delivery by the ``custom_args`` every message carries (``delivery``
and ``mailing``; alerts' ``alert_delivery`` and ``alert`` go to ``campaign.alerts.events``),
else by its ``sg_message_id``, whose part before the first dot is the
``X-Message-Id`` recorded when the message was sent; the event's address must be the
delivery's.  Events naming no delivery of this installation (test sends, another
installation on the same SendGrid account) are stored as ``unmatched`` and acknowledged,
so SendGrid does not retry them.

A delivery only moves forward.  The moves, by event (a state not listed for an event
stays as it is, and the event is recorded in the delivery's history):

=====================================  ======================  ==============================
event                                  moves a delivery from   to
=====================================  ======================  ==============================
processed, deferred                    uncertain               sent
delivered                              uncertain, sent         delivered
open, click, spamreport, unsubscribe,  uncertain, sent         delivered (the message arrived)
group_unsubscribe, group_resubscribe
bounce (any type, ``blocked`` too)     uncertain, sent,        bounced (a bounce can follow
                                       delivered               the receiving server's 250)
dropped                                uncertain, sent         dropped
=====================================  ======================  ==============================

``failed``, ``suppressed``, ``cancelled``, ``bounced`` and ``dropped`` never move.  A
delivery still ``pending`` or ``sending`` has not had its send recorded (the event
outran the worker's commit, or a resend is under way): the event is stored as
``waiting`` and applied by ``apply_waiting`` once the delivery has left those states
(after each webhook post, and in the worker's maintenance loop).  The worker records
its own result without looking at the row first, so writing to a ``sending`` delivery
here could be overwritten, and would go backwards.

Contacts: a bounce (but one of type ``blocked``, which is not permanent and only goes
into the contact's history) suppresses the contact as bounced, a spam report as
complained, both asking for the address to be verified again; ``unsubscribe`` and
``group_unsubscribe`` suppress it as unsubscribed.  A contact already suppressed keeps
its reason; the event goes into its history.  Any event also fills in a missing
message id.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from campaign.contacts import services as contacts
from campaign.contacts.models import Contact, ContactEvent, Suppression
from campaign.db import begin_write, utcnow
from campaign.extensions import db
from campaign.mailings.models import OPEN, Delivery, DeliveryEvent, EventOutcome, SendGridEvent
from campaign.mailings.models import DeliveryStatus as S

log = logging.getLogger(__name__)
R = TypeVar("R")

SOURCE = "sendgrid"
_FORWARD = frozenset({S.UNCERTAIN, S.SENT})
#: event → (the state it moves a delivery to, the states it moves it from).
MOVES: dict[str, tuple[S, frozenset[S]]] = {
    "processed": (S.SENT, frozenset({S.UNCERTAIN})),
    "deferred": (S.SENT, frozenset({S.UNCERTAIN})),
    "delivered": (S.DELIVERED, _FORWARD),
    **dict.fromkeys(
        ("open", "click", "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe"),
        (S.DELIVERED, _FORWARD),
    ),
    "bounce": (S.BOUNCED, frozenset({S.UNCERTAIN, S.SENT, S.DELIVERED})),
    "dropped": (S.DROPPED, _FORWARD),
}
#: event → why it suppresses the contact (a bounce of type "blocked" does not).
SUPPRESSES = {
    "bounce": Suppression.BOUNCED,
    "spamreport": Suppression.COMPLAINED,
    "unsubscribe": Suppression.UNSUBSCRIBED,
    "group_unsubscribe": Suppression.UNSUBSCRIBED,
}
#: What a delivery's history keeps of an event (the whole event stays on ``SendGridEvent``).
_KEPT = ("sg_event_id", "sg_message_id", "timestamp", "type", "status", "reason", "response", "attempt",
         "bounce_classification", "url", "asm_group_id")  # fmt: skip
_MAX_STORED = 16_384  # characters of an event's JSON kept whole; past that, the fields above
_IN_CHUNK = 500


@dataclass(frozen=True)
class _Provider:
    """The actor SendGrid's suppressions are recorded under (contact history, audit log)."""

    email: str = "SendGrid"
    id: None = None


PROVIDER = _Provider()


@dataclass
class Received:
    """What became of a webhook post's events."""

    posted: int = 0
    duplicates: int = 0
    #: Items that are not events (not an object, or no ``event`` name).
    ignored: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"posted": self.posted, "stored": sum(self.outcomes.values()), "duplicates": self.duplicates,
                "ignored": self.ignored, **{o.value: self.outcomes[o.value] for o in EventOutcome}}  # fmt: skip


def receive(events: Sequence[Any]) -> Received:
    """Store each event not seen before and apply it (see the module's table).

    Starts a write transaction; the caller commits.  An event is claimed by inserting its
    ``sg_event_id`` first (``ON CONFLICT DO NOTHING``), so the same event posted twice, even
    in two requests at once, is applied once.  The batch's deliveries are locked in id order.
    """
    result = Received(posted=len(events))
    fresh: dict[str, Mapping[str, Any]] = {}
    for raw in events:
        if not isinstance(raw, dict) or not isinstance(raw.get("event"), str) or not raw["event"].strip():
            result.ignored += 1
        elif (key := event_key(raw)) in fresh:
            result.duplicates += 1
        else:
            fresh[key] = raw
    db.session.commit()
    begin_write(db.session)
    seen = _known(list(fresh))
    result.duplicates += len(seen)
    new = sorted(((k, e) for k, e in fresh.items() if k not in seen), key=lambda item: _epoch(item[1]) or 0)
    from campaign.alerts import events as alerts
    from campaign.alerts.models import AlertDelivery

    mailing_events = [event for _, event in new if not alerts.is_alert_event(event)]
    by_id, by_message = rows_for(
        Delivery,
        {i for i in map(_delivery_arg, mailing_events) if i is not None},
        {p for p in map(message_prefix, mailing_events) if p is not None},
    )
    # Alert deliveries: named by their custom args, or by message id for events carrying none.
    bare = {p for _, e in new if "delivery" not in e and not alerts.is_alert_event(e) and (p := message_prefix(e))}
    alert_ids = {i for _, e in new if alerts.is_alert_event(e) and (i := alerts.delivery_arg(e)) is not None}
    alert_by_id, alert_by_message = rows_for(AlertDelivery, alert_ids, bare)
    for key, event in new:
        delivery = None
        if not alerts.is_alert_event(event):
            delivery = match_row(event, by_id, by_message, _delivery_arg(event), "mailing")
        alert_delivery = None
        if delivery is None:
            alert_delivery = match_row(event, alert_by_id, alert_by_message, alerts.delivery_arg(event), "alert")
        row_id = _claim(key, event, delivery, alert_delivery)
        if row_id is None:  # a concurrent post stored it first
            result.duplicates += 1
            continue
        if alert_delivery is not None:
            outcome, detail = alerts.apply(event, alert_delivery)
        else:
            outcome, detail = apply(event, delivery)
        db.session.execute(
            sa.update(SendGridEvent)
            .where(SendGridEvent.id == row_id)
            .values(outcome=outcome.value, detail=detail[:1000])
            .execution_options(synchronize_session=False)
        )
        result.outcomes[outcome.value] += 1
    return result


def apply(
    event: Mapping[str, Any], delivery: Delivery | None, *, arrived: datetime | None = None
) -> tuple[EventOutcome, str]:
    """Apply one event to its delivery and contact; returns the outcome and a line saying what
    happened, also written to the delivery's history.  ``arrived``: when a waiting event came."""
    kind = str(event["event"])
    if delivery is None:
        return EventOutcome.UNMATCHED, "names no delivery of this installation"
    status = S(delivery.status)
    if status in OPEN:
        detail = f"arrived while the delivery was {status}, before its send was recorded: applied once it is"
        _history(delivery, event, detail)
        return EventOutcome.WAITING, detail
    notes, changed = [], False
    target, sources = MOVES.get(kind, (None, frozenset()))
    if target is not None and status in sources:
        delivery.status, delivery.reason = target.value, _reason(event)[:1000]
        delivery.lease_owner = delivery.lease_until = None
        if delivery.sent_at is None:
            delivery.sent_at = _when(event) or utcnow()
        notes.append(f"{status} → {target}")
        changed = True
    else:
        notes.append(f"stays {status}")
    if why := _reason(event):
        notes.append(why)
    prefix = message_prefix(event)
    if prefix and not delivery.message_id:
        delivery.message_id = prefix[:255]
        notes.append(f"message id {prefix} recorded")
        changed = True
    suppressed, contact_note = _contact_effect(delivery, event)
    if contact_note:
        notes.append(contact_note)
    if arrived is not None:
        notes.append(f"received {arrived:%Y-%m-%d %H:%M:%S} UTC, applied once the send was recorded")
    detail = "; ".join(notes)
    _history(delivery, event, detail)
    return (EventOutcome.APPLIED if changed or suppressed else EventOutcome.RECORDED), detail


def apply_waiting(limit: int = 500) -> int:
    """Apply the waiting events whose delivery (or alert delivery) has left ``pending`` and
    ``sending``; commits.  Returns how many were applied.  Runs after each webhook post and in
    the worker's maintenance loop."""
    from campaign.alerts import events as alerts
    from campaign.alerts.models import AlertDelivery

    return _apply_waiting(Delivery, SendGridEvent.delivery_id, apply, limit, "") + _apply_waiting(
        AlertDelivery, SendGridEvent.alert_delivery_id, alerts.apply, limit, " about alerts"
    )


def _apply_waiting(
    model: type[Any],
    key: InstrumentedAttribute[int | None],
    apply_one: Callable[..., tuple[EventOutcome, str]],
    limit: int,
    about: str,
) -> int:
    """Apply with ``apply_one`` up to ``limit`` waiting events whose row of ``model`` (named by
    the event's column ``key``) has left ``pending`` and ``sending``, oldest first; commits."""
    when = sa.func.coalesce(SendGridEvent.occurred_at, SendGridEvent.received_at)
    ready = db.session.execute(
        sa.select(SendGridEvent.id, key.label("target"))
        .join(model, model.id == key)
        .where(SendGridEvent.outcome == EventOutcome.WAITING.value, model.status.not_in([s.value for s in OPEN]))
        .order_by(when, SendGridEvent.id)
        .limit(limit)
    ).all()
    db.session.commit()
    if not ready:
        return 0
    begin_write(db.session)
    deliveries = lock_rows(model, model.id.in_({row.target for row in ready}))
    # Read again under the lock: a sweeper running alongside may have applied some meanwhile.
    waiting = db.session.scalars(
        sa.select(SendGridEvent)
        .where(SendGridEvent.id.in_([row.id for row in ready]), SendGridEvent.outcome == EventOutcome.WAITING.value)
        .order_by(when, SendGridEvent.id)
    ).all()
    applied = 0
    for row in waiting:
        delivery = deliveries.get(getattr(row, key.key) or 0)
        if delivery is None or delivery.status in OPEN:
            continue
        outcome, detail = apply_one(row.data, delivery, arrived=row.received_at)
        row.outcome, row.detail = outcome.value, detail[:1000]
        applied += 1
    db.session.commit()
    if applied:
        log.info("applied %s SendGrid events%s that arrived before their send was recorded", applied, about)
    return applied


def deliveries_of_contact(contact_id: int) -> list[Delivery]:
    """Every delivery to a contact, newest first, with its mailing and history."""
    return list(
        db.session.scalars(
            sa.select(Delivery)
            .where(Delivery.contact_id == contact_id)
            .options(selectinload(Delivery.mailing), selectinload(Delivery.events))
            .order_by(Delivery.id.desc())
        )
    )


# --- matching and storing ---------------------------------------------------------------------


def event_key(event: Mapping[str, Any]) -> str:
    """``sg_event_id``; an event without one (SendGrid always sends it) is keyed by its content."""
    given = event.get("sg_event_id")
    if isinstance(given, str) and 0 < len(given.strip()) <= 128:
        return given.strip()
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()
    return f"sha256:{digest}"


def message_prefix(event: Mapping[str, Any]) -> str | None:
    """The ``X-Message-Id`` an ``sg_message_id`` starts with."""
    value = event.get("sg_message_id")
    if not isinstance(value, str):
        return None
    prefix = value.strip().split(".", 1)[0]
    return prefix or None


def _known(keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        found.update(
            db.session.scalars(sa.select(SendGridEvent.sg_event_id).where(SendGridEvent.sg_event_id.in_(chunk)))
        )
    return found


def _delivery_arg(event: Mapping[str, Any]) -> int | None:
    value = event.get("delivery")
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return int(text) if text.isdigit() and len(text) <= 10 and 0 < int(text) < 2**31 else None


def lock_rows(model: type[R], condition: sa.ColumnElement[bool]) -> dict[int, R]:
    """The rows of ``model`` (deliveries, alert deliveries) matching ``condition``, locked in id
    order (PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers) and read afresh."""
    rows = db.session.scalars(
        sa.select(model).where(condition).order_by(model.id).with_for_update().execution_options(populate_existing=True)
    )
    return {row.id: row for row in rows}


def rows_for(model: type[R], ids: set[int], prefixes: set[str]) -> tuple[dict[int, R], dict[tuple[str, str], R]]:
    """The rows of ``model`` with these ids or whose message id is among ``prefixes``, locked:
    by id, and by (message id, address), as one request carries many deliveries."""
    conditions = []
    if ids:
        conditions.append(model.id.in_(ids))
    if prefixes:
        conditions.append(model.message_id.in_(prefixes))
    if not conditions:
        return {}, {}
    by_id = lock_rows(model, sa.or_(*conditions))
    by_message = {(d.message_id, d.email.lower()): d for d in by_id.values() if d.message_id}
    return by_id, by_message


def match_row(
    event: Mapping[str, Any],
    by_id: dict[int, R],
    by_message: dict[tuple[str, str], R],
    row_id: int | None,
    parent: str,
) -> R | None:
    """The event's row: by its id custom arg (``row_id``), else by message id and address.  Its
    address, and the ``parent`` custom arg (``mailing``, ``alert``) against the row's
    ``<parent>_id``, must agree: another installation may share the SendGrid account."""
    email = str(event.get("email") or "").strip().lower()
    row = by_id.get(row_id or 0)
    if row is None and (prefix := message_prefix(event)):
        row = by_message.get((prefix, email))
    if row is None:
        return None
    if email and row.email.lower() != email:
        return None
    given = event.get(parent)
    if given is not None and str(given).strip() != str(getattr(row, f"{parent}_id")):
        return None
    return row


def _claim(key: str, event: Mapping[str, Any], delivery: Delivery | None, alert_delivery: Any = None) -> int | None:
    """Insert the event's row unless its ``sg_event_id`` is stored already; its id, or None."""
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    values = {
        "sg_event_id": key,
        "event": str(event["event"])[:40],
        "occurred_at": _when(event),
        "received_at": utcnow(),
        "email": str(event.get("email") or "")[:254],
        "sg_message_id": str(event["sg_message_id"])[:255] if event.get("sg_message_id") else None,
        "delivery_id": delivery.id if delivery is not None else None,
        "alert_delivery_id": alert_delivery.id if alert_delivery is not None else None,
        "outcome": EventOutcome.RECORDED.value,
        "detail": "",
        "data": _stored(event),
    }
    statement = insert(SendGridEvent).values(**values).on_conflict_do_nothing(index_elements=["sg_event_id"])
    return db.session.scalar(statement.returning(SendGridEvent.id))


def _stored(event: Mapping[str, Any]) -> dict[str, Any]:
    if len(json.dumps(event, default=str)) <= _MAX_STORED:
        return dict(event)
    kept = {
        name: event[name]
        for name in ("event", "email", "delivery", "mailing", "alert", "alert_delivery", *_KEPT)
        if name in event
    }
    return {name: str(value)[:1000] for name, value in kept.items()} | {"truncated": True}


# --- effects ----------------------------------------------------------------------------------


def _blocked(event: Mapping[str, Any]) -> bool:
    return event.get("event") == "bounce" and str(event.get("type") or "").lower() == "blocked"


def _reason(event: Mapping[str, Any]) -> str:
    """Why a message did not arrive, in SendGrid's words; empty for other events."""
    kind = event.get("event")
    said = " ".join(str(event[name]) for name in ("status", "reason") if event.get(name)).strip()
    if kind == "bounce":
        what = "blocked by the receiving server (not permanent)" if _blocked(event) else "bounced"
        return f"{what}: {said}" if said else what
    if kind == "dropped":
        return f"dropped by SendGrid: {said}" if said else "dropped by SendGrid"
    return ""


def _contact_effect(delivery: Delivery, event: Mapping[str, Any]) -> tuple[bool, str]:
    """Suppress the delivery's contact when the event says so; (suppressed?, what was done)."""
    kind = str(event["event"])
    reason = None if _blocked(event) else SUPPRESSES.get(kind)
    if reason is None and not _blocked(event):
        return False, ""
    contact = None
    if delivery.contact_id is not None:
        contact = db.session.scalars(
            sa.select(Contact)
            .where(Contact.id == delivery.contact_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one_or_none()
    if contact is None:
        return False, "the contact was deleted since"
    when = _when(event) or utcnow()
    said = f" ({_reason(event) or kind})" if kind == "bounce" else ""
    note = f"SendGrid: {kind}{said} on {when:%Y-%m-%d %H:%M} UTC, mailing {delivery.mailing_id}"
    if reason is None:  # a blocked bounce: recorded, the contact stays deliverable
        _contact_history(contact, "blocked", "Blocked by the receiving server (not permanent)", note, delivery)
        return False, "not permanent: the contact stays deliverable"
    if contact.suppression:
        current = (
            Suppression(contact.suppression).label if contact.suppression in set(Suppression) else contact.suppression
        )
        _contact_history(contact, kind, f"SendGrid reported {kind}; already suppressed ({current})", note, delivery)
        return False, f"the contact was already suppressed ({current})"
    contacts.suppress(contact, reason, " ".join(note.split())[:500], actor=PROVIDER)
    return True, f"contact suppressed: {reason.label}"


def _contact_history(contact: Contact, kind: str, summary: str, note: str, delivery: Delivery) -> None:
    db.session.add(
        ContactEvent(contact_id=contact.id, kind=kind[:40], summary=summary[:500], actor_email=PROVIDER.email,
                     details={"note": note[:500], "delivery": delivery.id, "mailing": delivery.mailing_id})
    )  # fmt: skip
    db.session.expire(contact, ["events"])


def _history(delivery: Delivery, event: Mapping[str, Any], detail: str) -> None:
    kind = "blocked" if _blocked(event) else str(event["event"])
    data = {name: event[name] for name in _KEPT if name in event and isinstance(event[name], str | int | float)}
    db.session.add(DeliveryEvent(delivery_id=delivery.id, kind=kind[:40], detail=detail[:1000], source=SOURCE,
                                 data=data))  # fmt: skip


def _epoch(event: Mapping[str, Any]) -> int | None:
    value = event.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = int(float(value))
    except (ValueError, OverflowError):
        return None
    return seconds if 0 < seconds < 2**33 else None


def _when(event: Mapping[str, Any]) -> datetime | None:
    seconds = _epoch(event)
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None
