"""Fixtures shared by the alerts tests: topics and subscribers made directly in the
database (each in any state a test needs), and API bearer headers.

``subscriber(...)`` and ``topic(...)`` work inside an application context (tests using
``ctx``), where they return objects of the current session, and outside one (tests
using ``client``), where they commit in a context of their own and return a detached
object whose columns and topics are loaded (``id``, ``email``, ``token_key`` …).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest
import sqlalchemy as sa
from flask import Flask, has_app_context

from campaign.alerts.models import Subscriber, SubscriberStatus, Topic, TopicKind
from campaign.db import utcnow
from campaign.extensions import db

_counter = itertools.count(1)

#: The consent recorded on subscribers made by the ``subscriber`` fixture.
TEST_CONSENT = ("I agree to receive alerts from the coalition.", "test-1")


@contextmanager
def _session_scope(app: Flask) -> Iterator[bool]:
    """Yields True when a context of its own was pushed (objects are then detached on exit)."""
    if has_app_context():
        yield False
    else:
        with app.app_context():
            yield True


def _detach(obj: object) -> None:
    db.session.refresh(obj)
    if isinstance(obj, Subscriber):
        list(obj.topics)
    db.session.expunge(obj)


@pytest.fixture
def topic(app: Flask, database: None) -> Callable[..., Topic]:
    """``topic(label, kind="situation", country=None, key=None, active=True)``: a listed topic.

    ``topic("letters")`` or ``topic("meetings")`` returns the built-in of that key.
    """

    def make(
        label: str | None = None,
        kind: str = TopicKind.SITUATION.value,
        country: str | None = None,
        key: str | None = None,
        active: bool = True,
    ) -> Topic:
        with _session_scope(app) as own:
            if label in ("letters", "meetings") and key is None:
                found = db.session.scalar(sa.select(Topic).where(Topic.key == label))
            else:
                n = next(_counter)
                label = label or f"Test situation {n}"
                if key is None:
                    key = f"country-{country.lower()}" if kind == TopicKind.COUNTRY and country else f"{kind}-{n}"
                position = (db.session.scalar(sa.select(sa.func.max(Topic.position))) or 0) + 1
                found = Topic(key=key, kind=kind, label=label, country=country, position=position, active=active)
                db.session.add(found)
            db.session.commit()
            if own:
                _detach(found)
            return found

    return make


@pytest.fixture
def subscriber(app: Flask, database: None) -> Callable[..., Subscriber]:
    """``subscriber(email=None, language="en", topics=("letters", "meetings"), status="confirmed",
    name="", suppressed=False)``: a subscriber in the state asked for.

    ``topics`` holds topic keys or ``Topic`` objects; ``email`` is stored as given (give it
    normalised: lower case, no spaces).
    """

    def make(
        email: str | None = None,
        language: str = "en",
        topics: Iterable[str | Topic] = ("letters", "meetings"),
        status: str = SubscriberStatus.CONFIRMED.value,
        name: str = "",
        suppressed: bool = False,
        created_at: datetime | None = None,
    ) -> Subscriber:
        n = next(_counter)
        with _session_scope(app) as own:
            keys = [t.key if isinstance(t, Topic) else t for t in topics]
            chosen = list(db.session.scalars(sa.select(Topic).where(Topic.key.in_(keys)))) if keys else []
            assert len(chosen) == len(set(keys)), f"unknown topic among {keys}"
            now = utcnow()
            made = Subscriber(
                email=email or f"supporter{n}@example.org",
                name=name or f"Supporter {n}",
                language=language,
                status=str(status),
                consent_text=TEST_CONSENT[0],
                consent_version=TEST_CONSENT[1],
                consented_at=created_at or now,
                confirmation_sent_at=created_at or now,
                topics=chosen,
            )
            if created_at is not None:
                made.created_at = created_at
            if status == SubscriberStatus.CONFIRMED:
                made.confirmed_at = created_at or now
            elif status == SubscriberStatus.UNSUBSCRIBED:
                made.confirmed_at = created_at or now
                made.unsubscribed_at = now
                made.unsubscribed_via = "page"
            if suppressed:
                made.suppressed_at = now
                made.suppressed_reason = "bounce: test"
            db.session.add(made)
            db.session.commit()
            if own:
                _detach(made)
            return made

    return make
