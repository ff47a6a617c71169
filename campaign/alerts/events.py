"""SendGrid's events about alerts: each moves its alert delivery and may stop the subscriber.

``campaign.mailings.tracking.receive`` stores every event once and hands here those whose
``custom_args`` carry ``alert_delivery`` (or, without custom args, whose message id and
address name an alert delivery).  The delivery moves as mailing deliveries do
(``tracking.MOVES``: ``processed`` settles ``uncertain``, ``delivered``, ``bounce``,
``dropped``; never backwards), and an event that arrives while its delivery is still
``pending`` or ``sending`` waits (``apply_waiting``).  Subscribers: a bounce (but one of
type ``blocked``, which is not permanent) or a spam report suppresses the address
(``subscribers.suppress``); ``unsubscribe`` and ``group_unsubscribe`` unsubscribe them
(``subscribers.unsubscribe(via="sendgrid")``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaign.alerts.models import AlertDelivery, Subscriber
from campaign.db import begin_write, utcnow
from campaign.extensions import db
from campaign.mailings.models import OPEN, EventOutcome, SendGridEvent
from campaign.mailings.models import DeliveryStatus as S

log = logging.getLogger(__name__)
_SUPPRESSES = {"bounce": "bounced", "spamreport": "marked as spam"}
_UNSUBSCRIBES = frozenset({"unsubscribe", "group_unsubscribe"})


def delivery_arg(event: Mapping[str, Any]) -> int | None:
    """The ``alert_delivery`` custom arg, as an id; None when absent or not an id."""
    value = event.get("alert_delivery")
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return int(text) if text.isdigit() and len(text) <= 18 and 0 < int(text) < 2**63 else None


def is_alert_event(event: Mapping[str, Any]) -> bool:
    return "alert_delivery" in event or "alert" in event


def _lock(condition: sa.ColumnElement[bool]) -> dict[int, AlertDelivery]:
    rows = db.session.scalars(
        sa.select(AlertDelivery)
        .where(condition)
        .order_by(AlertDelivery.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.id: row for row in rows}


def deliveries_for(
    events: Iterable[Mapping[str, Any]], prefixes: set[str]
) -> tuple[dict[int, AlertDelivery], dict[tuple[str, str], AlertDelivery]]:
    """The alert deliveries the events name by id, and those whose message id is among
    ``prefixes`` (one request carries many deliveries: matched with the address), locked."""
    ids = {i for i in map(delivery_arg, events) if i is not None}
    conditions = []
    if ids:
        conditions.append(AlertDelivery.id.in_(ids))
    if prefixes:
        conditions.append(AlertDelivery.message_id.in_(prefixes))
    if not conditions:
        return {}, {}
    by_id = _lock(sa.or_(*conditions))
    by_message = {(d.message_id, d.email.lower()): d for d in by_id.values() if d.message_id}
    return by_id, by_message


def match(
    event: Mapping[str, Any],
    by_id: dict[int, AlertDelivery],
    by_message: dict[tuple[str, str], AlertDelivery],
    prefix: str | None,
) -> AlertDelivery | None:
    """The event's alert delivery; its address and alert must agree with the event's."""
    email = str(event.get("email") or "").strip().lower()
    delivery = by_id.get(delivery_arg(event) or 0)
    if delivery is None and prefix:
        delivery = by_message.get((prefix, email))
    if delivery is None:
        return None
    if email and delivery.email.lower() != email:
        return None
    alert = event.get("alert")
    if alert is not None and str(alert).strip() != str(delivery.alert_id):
        return None
    return delivery


def apply(
    event: Mapping[str, Any], delivery: AlertDelivery | None, *, arrived: datetime | None = None
) -> tuple[EventOutcome, str]:
    """Apply one event to its alert delivery and subscriber; the outcome and what was done."""
    from campaign.mailings import tracking

    kind = str(event["event"])
    if delivery is None:
        return EventOutcome.UNMATCHED, "names no alert delivery of this installation"
    status = S(delivery.status)
    if status in OPEN:
        return EventOutcome.WAITING, f"arrived while the alert delivery was {status}: applied once its send is recorded"
    notes, changed = [], False
    target, sources = tracking.MOVES.get(kind, (None, frozenset()))
    if target is not None and status in sources:
        delivery.status, delivery.reason = target.value, tracking._reason(event)[:1000]
        delivery.lease_until = None
        if delivery.sent_at is None:
            delivery.sent_at = tracking._when(event) or utcnow()
        notes.append(f"{status} → {target}")
        changed = True
    else:
        notes.append(f"stays {status}")
    if why := tracking._reason(event):
        notes.append(why)
    prefix = tracking.message_prefix(event)
    if prefix and not delivery.message_id:
        delivery.message_id = prefix[:255]
        changed = True
    stopped, note = _subscriber_effect(delivery, event)
    if note:
        notes.append(note)
    if arrived is not None:
        notes.append(f"received {arrived:%Y-%m-%d %H:%M:%S} UTC, applied once the send was recorded")
    return (EventOutcome.APPLIED if changed or stopped else EventOutcome.RECORDED), "; ".join(notes)


def _subscriber_effect(delivery: AlertDelivery, event: Mapping[str, Any]) -> tuple[bool, str]:
    """Suppress or unsubscribe the delivery's subscriber when the event says so."""
    from campaign.alerts import subscribers
    from campaign.mailings import tracking

    kind = str(event["event"])
    if kind == "bounce" and tracking._blocked(event):
        return False, "not permanent: the subscriber stays subscribed"
    if kind not in _SUPPRESSES and kind not in _UNSUBSCRIBES:
        return False, ""
    subscriber = None
    if delivery.subscriber_id is not None:
        subscriber = db.session.scalars(
            sa.select(Subscriber)
            .where(Subscriber.id == delivery.subscriber_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one_or_none()
    if subscriber is None:
        return False, "the subscriber was deleted since"
    when = tracking._when(event) or utcnow()
    if kind in _UNSUBSCRIBES:
        if subscriber.status == "unsubscribed":
            return False, "the subscriber had unsubscribed already"
        subscribers.unsubscribe(subscriber, via="sendgrid")
        return True, "subscriber unsubscribed"
    if subscriber.suppressed_at is not None:
        return False, f"the address was suppressed already ({subscriber.suppressed_reason})"
    said = tracking._reason(event) if kind == "bounce" else _SUPPRESSES[kind]
    subscribers.suppress(subscriber, f"{said} (SendGrid, {when:%Y-%m-%d %H:%M} UTC, alert {delivery.alert_id})")
    return True, "address suppressed"


def apply_waiting(limit: int = 500) -> int:
    """Apply the waiting events whose alert delivery has left ``pending`` and ``sending``;
    commits; returns how many were applied."""
    when = sa.func.coalesce(SendGridEvent.occurred_at, SendGridEvent.received_at)
    ready = db.session.execute(
        sa.select(SendGridEvent.id, SendGridEvent.alert_delivery_id)
        .join(AlertDelivery, AlertDelivery.id == SendGridEvent.alert_delivery_id)
        .where(
            SendGridEvent.outcome == EventOutcome.WAITING.value,
            AlertDelivery.status.not_in([s.value for s in OPEN]),
        )
        .order_by(when, SendGridEvent.id)
        .limit(limit)
    ).all()
    db.session.commit()
    if not ready:
        return 0
    begin_write(db.session)
    deliveries = _lock(AlertDelivery.id.in_({row.alert_delivery_id for row in ready}))
    waiting = db.session.scalars(
        sa.select(SendGridEvent)
        .where(SendGridEvent.id.in_([row.id for row in ready]), SendGridEvent.outcome == EventOutcome.WAITING.value)
        .order_by(when, SendGridEvent.id)
    ).all()
    applied = 0
    for row in waiting:
        delivery = deliveries.get(row.alert_delivery_id or 0)
        if delivery is None or delivery.status in OPEN:
            continue
        outcome, detail = apply(row.data, delivery, arrived=row.received_at)
        row.outcome, row.detail = outcome.value, detail[:1000]
        applied += 1
    db.session.commit()
    if applied:
        log.info("applied %s SendGrid events about alerts that arrived before their send was recorded", applied)
    return applied
