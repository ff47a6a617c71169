"""SendGrid's events about alerts: each moves its alert delivery and may stop the subscriber.

``campaign.mailings.tracking.receive`` stores every event once and hands here those whose
``custom_args`` carry ``alert_delivery`` (or, without custom args, whose message id and
address name an alert delivery).  The delivery moves as mailing deliveries do
(``tracking.MOVES``: ``processed`` settles ``uncertain``, ``delivered``, ``bounce``,
``dropped``; never backwards), and an event that arrives while its delivery is still
``pending`` or ``sending`` waits (``tracking.apply_waiting``).  Subscribers: a bounce (but one of
type ``blocked``, which is not permanent) or a spam report suppresses the address
(``subscribers.suppress``); ``unsubscribe`` and ``group_unsubscribe`` unsubscribe them
(``subscribers.unsubscribe(via="sendgrid")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaign.alerts.models import AlertDelivery, Subscriber
from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings.models import OPEN, EventOutcome
from campaign.mailings.models import DeliveryStatus as S

_SUPPRESSES = {"bounce": "bounced", "spamreport": "marked as spam"}
_UNSUBSCRIBES = frozenset({"unsubscribe", "group_unsubscribe"})


def delivery_arg(event: Mapping[str, Any]) -> int | None:
    """The ``alert_delivery`` custom arg, as an id; None when absent or not an id."""
    value = event.get("alert_delivery")
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return int(text) if text.isdigit() and len(text) <= 18 and 0 < int(text) < 2**63 else None


def is_alert_event(event: Mapping[str, Any]) -> bool:
    return "alert_delivery" in event or "alert" in event


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
