"""Coordinators' subscriber pages: the list (search, filters, counts, growth), a subscriber's page and
its actions, and the topics; every action in the audit log."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from campaign.alerts import subscribers
from campaign.alerts.models import Alert, AlertDelivery, AlertText, Subscriber, Topic
from campaign.alerts.subscribers import GrowthPoint, SubscriberError
from campaign.audit import AuditEvent
from campaign.extensions import db


def actions(app) -> list[tuple[str, str | None]]:
    with app.app_context():
        return [(e.action, e.summary) for e in db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))]


@pytest.fixture
def signed_in(auth, coordinator):
    auth.login(coordinator)
    return coordinator


def test_the_list_searches_filters_and_counts(app, client, signed_in, subscriber, topic):
    sudan = topic("Sudan", kind="country", country="SD")
    subscriber("amina@example.org", name="Amina Diallo", language="fr", topics=["letters", sudan])
    subscriber("tom@example.org", name="Tom Whitfield", language="en", topics=["letters"])
    subscriber("li@example.org", name="Li Ming", language="zh", topics=["meetings"], status="pending")
    subscriber("gone@example.org", language="en", status="unsubscribed")
    subscriber("bounced@example.org", language="fr", suppressed=True)

    page = client.get("/admin/subscribers")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "2 receive alerts · 3 confirmed · 1 awaiting confirmation · 1 unsubscribed · 1 suppressed" in " ".join(
        html.split()
    )
    assert 'role="img"' in html and "<title" in html and "Subscribers by week" in html

    def listed(**query: str) -> set[str]:
        body = client.get("/admin/subscribers", query_string=query).get_data(as_text=True)
        return {e for e in ("amina", "tom", "li", "gone", "bounced") if f"{e}@example.org" in body}

    assert listed(q="AMINA") == {"amina"}
    assert listed(q="whitfield") == {"tom"}
    assert listed(q="%") == set()
    assert listed(status="pending") == {"li"}
    assert listed(status="suppressed") == {"bounced"}
    assert listed(topic=str(sudan.id)) == {"amina"}
    assert listed(language="fr") == {"amina", "bounced"}
    assert listed(language="xx") == {"amina", "tom", "li", "gone", "bounced"}  # a bad filter is ignored


def test_counts_by_topic_and_language_are_of_subscribers_receiving_alerts(ctx, subscriber, topic):
    sudan = topic("Sudan", kind="country", country="SD")
    subscriber(language="fr", topics=["letters", sudan])
    subscriber(language="fr", topics=["letters"])
    subscriber(language="ar", topics=["meetings"])
    subscriber(language="ar", topics=["meetings"], status="pending")
    subscriber(language="ar", topics=["meetings"], suppressed=True)
    by_topic = {t.key: n for t, n in subscribers.counts_by_topic()}
    assert by_topic["letters"] == 2 and by_topic["meetings"] == 1 and by_topic[sudan.key] == 1
    assert [t.key for t, _ in subscribers.counts_by_topic()][:2] == ["letters", "meetings"]
    assert dict(subscribers.counts_by_language()) == {"ar": 1, "zh": 0, "en": 0, "fr": 2, "ru": 0, "es": 0}
    assert subscribers.status_counts() == {
        "pending": 1,
        "confirmed": 4,
        "unsubscribed": 0,
        "suppressed": 1,
        "receiving": 3,
    }


def at(day: int) -> datetime:
    return datetime(2026, 3, day, 10, 30, tzinfo=UTC)  # 2 March 2026 is a Monday


def test_growth_by_day_and_week_is_grouped_in_sql_with_gaps_filled(ctx, subscriber):
    subscriber(created_at=at(2))
    subscriber(created_at=at(2))
    leaving = subscriber(created_at=at(3))
    subscriber(created_at=at(11))
    subscriber(status="pending", created_at=at(4))
    leaving.status, leaving.unsubscribed_at = "unsubscribed", at(4)
    db.session.commit()

    days = subscribers.growth("day")
    assert days[:3] == [
        GrowthPoint(date(2026, 3, 2), 2, 0, 2),
        GrowthPoint(date(2026, 3, 3), 1, 0, 3),
        GrowthPoint(date(2026, 3, 4), 0, 1, 2),
    ]
    assert len(days) == 10 and days[-1] == GrowthPoint(date(2026, 3, 11), 1, 0, 3)
    assert subscribers.growth("week") == [
        GrowthPoint(date(2026, 3, 2), 3, 1, 2),
        GrowthPoint(date(2026, 3, 9), 1, 0, 3),
    ]
    with pytest.raises(ValueError):
        subscribers.growth("month")


def test_growth_is_empty_without_confirmations(ctx, subscriber):
    subscriber(status="pending")
    assert subscribers.growth() == []


def test_the_chart_and_its_figures_are_on_the_page(client, signed_in, subscriber):
    subscriber(created_at=at(2))
    subscriber(created_at=at(5))
    html = client.get("/admin/subscribers?by=day").get_data(as_text=True)
    assert "Subscribers by day" in html and "<polyline" in html
    assert "<td>2026-03-05</td><td>1</td><td>0</td><td>2</td>" in html
    assert "<script" not in html and "style=" not in html


def test_a_subscribers_page_shows_consent_topics_and_deliveries(client, signed_in, subscriber):
    someone = subscriber("amina@example.org", name="Amina", topics=["letters"])
    html = client.get(f"/admin/subscribers/{someone.id}").get_data(as_text=True)
    assert "amina@example.org" in html and someone.consent_text in html and "New letters" in html
    assert "No alerts yet." in html
    assert client.get("/admin/subscribers/999999").status_code == 404


def test_a_subscribers_page_lists_the_alerts_sent_to_them(app, client, signed_in, subscriber):
    someone = subscriber("amina@example.org", language="fr")
    with app.app_context():
        alert = Alert(kind="manual", status="finished", language="en", topic_ids=[], languages=[])
        alert.texts.append(AlertText(language="en", subject="A letter is open", body="Sign it."))
        alert.texts.append(AlertText(language="fr", subject="Une lettre est ouverte", body="Signez-la."))
        db.session.add(alert)
        db.session.flush()
        db.session.add(
            AlertDelivery(alert_id=alert.id, subscriber_id=someone.id, email=someone.email, language="fr",
                          status="bounced", reason="550 no such user")
        )  # fmt: skip
        db.session.commit()
    html = client.get(f"/admin/subscribers/{someone.id}").get_data(as_text=True)
    assert "Une lettre est ouverte" in html and "bounced" in html and "550 no such user" in html


def test_coordinators_unsubscribe_and_delete_with_audit(app, client, signed_in, subscriber):
    someone = subscriber("amina@example.org")
    response = client.post(f"/admin/subscribers/{someone.id}/unsubscribe")
    assert response.status_code == 302
    with app.app_context():
        row = db.session.get(Subscriber, someone.id)
        assert (row.status, row.unsubscribed_via) == ("unsubscribed", "coordinator")
    refused = client.post(f"/admin/subscribers/{someone.id}/delete")
    assert refused.status_code == 302
    with app.app_context():
        assert db.session.get(Subscriber, someone.id) is not None
    client.post(f"/admin/subscribers/{someone.id}/delete", data={"confirm": "y"})
    with app.app_context():
        assert db.session.get(Subscriber, someone.id) is None
    logged = actions(app)
    assert ("subscribers.unsubscribe", f"Unsubscribed subscriber {someone.id}") in logged
    assert ("subscribers.delete", f"Deleted subscriber {someone.id} and their data") in logged
    assert not any("amina@example.org" in (summary or "") for _, summary in logged)


def test_topics_are_listed_added_renamed_retired_and_restored(app, client, signed_in):
    page = client.get("/admin/subscribers/topics")
    assert page.status_code == 200 and "New letters" in page.get_data(as_text=True)

    added = client.post("/admin/subscribers/topics", data={"kind": "country", "label": "Sudan", "country": "SD"})
    assert added.status_code == 302
    client.post("/admin/subscribers/topics", data={"kind": "situation", "label": "Attacks on health care"})
    twice = client.post("/admin/subscribers/topics", data={"kind": "country", "label": "Sudan again", "country": "SD"})
    assert twice.status_code == 400 and "already a topic" in twice.get_data(as_text=True)
    no_country = client.post("/admin/subscribers/topics", data={"kind": "country", "label": "Nowhere"})
    assert no_country.status_code == 400 and "Choose a country" in no_country.get_data(as_text=True)
    with app.app_context():
        keys = {t.key: t.id for t in db.session.scalars(sa.select(Topic))}
    assert {"country-sd", "situation-attacks-on-health-care"} <= keys.keys()

    sudan = keys["country-sd"]
    client.post(f"/admin/subscribers/topics/{sudan}/rename", data={"label": "Sudan and Darfur"}, follow_redirects=True)
    client.post(f"/admin/subscribers/topics/{sudan}/retire", follow_redirects=True)
    assert "Sudan and Darfur" not in client.get("/subscribe").get_data(as_text=True)
    client.post(f"/admin/subscribers/topics/{sudan}/restore", follow_redirects=True)
    assert "Sudan and Darfur" in client.get("/subscribe").get_data(as_text=True)

    builtin = client.post(f"/admin/subscribers/topics/{keys['letters']}/retire", follow_redirects=True)
    assert "always offered" in builtin.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Topic, keys["letters"]).active

    assert [a for a, _ in actions(app) if a.startswith("topics.")] == [
        "topics.add",
        "topics.add",
        "topics.rename",
        "topics.retire",
        "topics.restore",
    ]


@pytest.mark.parametrize(
    ("kind", "label", "country", "message"),
    [
        ("letters", "More letters", None, "a country or a situation"),
        ("situation", "", None, "Give the topic a label"),
        ("situation", "Line\nbreak", None, "single line"),
        ("situation", "x" * 121, None, "at most 120"),
        ("country", "Atlantis", "XX", "Choose a country"),
    ],
)
def test_add_topic_refuses(ctx, kind, label, country, message):
    with pytest.raises(SubscriberError, match=message):
        subscribers.add_topic(kind, label, country)


def test_situations_with_the_same_label_get_distinct_keys(ctx):
    first = subscribers.add_topic("situation", "Humanitarian access")
    second = subscribers.add_topic("situation", "Humanitarian  access!")
    assert (first.key, second.key) == ("situation-humanitarian-access", "situation-humanitarian-access-2")


def test_members_do_not_see_subscribers(client, auth, member):
    auth.login(member)
    assert client.get("/admin/subscribers").status_code == 403


def test_the_navigation_links_to_subscribers_for_staff_and_the_footer_to_subscribe(client, signed_in):
    html = client.get("/admin/subscribers/topics").get_data(as_text=True)
    assert 'href="/admin/subscribers">Subscribers</a>' in html and 'href="/subscribe">Subscribe to alerts</a>' in html
