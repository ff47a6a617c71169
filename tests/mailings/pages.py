"""What the mailing page tests share: reading pages and flashes, rows as the database holds them, forms."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings.models import Delivery, Mailing


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+" role="\w+">(.*?)</p>', page, re.S)]


def load(app, mailing_id: int) -> Mailing:
    with app.app_context():
        mailing = db.session.get(Mailing, mailing_id)
        db.session.expunge(mailing)
        return mailing


def deliveries_of(app, mailing_id: int) -> dict[str, str]:
    """Email → state of each delivery of the mailing."""
    with app.app_context():
        rows = db.session.execute(sa.select(Delivery.email, Delivery.status).where(Delivery.mailing_id == mailing_id))
        return dict(rows.all())


def compose(world, **fields: object) -> dict[str, object]:
    form = {
        "letter": str(world.letter_id),
        "name": "Ministerial meeting",
        "subject": "Open letter: {{ letter.title }}",
        "introduction": "{{ contact.salutation }}\n\n{% if 'P5' in contact.tags %}As a permanent member…{% endif %}",
        "tags": [],
        "countries": [],
        "languages": [],
        "rate_per_minute": "100000",
    }
    form.update(fields)
    return form


def local(days: int = 0, hours: int = 0, zone: str = "UTC") -> str:
    return (utcnow() + timedelta(days=days, hours=hours)).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")
