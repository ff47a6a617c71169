"""Coordinators' alert pages: the list, composing with translations, the alert's page and its
audience, the sandboxed preview, test sends, sending, cancelling, the CSV report, CSRF, audit."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaign.alerts import services
from campaign.alerts.models import Alert, AlertDelivery, Topic
from campaign.audit import AuditEvent
from campaign.auth.models import User
from campaign.db import utcnow
from campaign.extensions import db


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+" role="\w+">(.*?)</p>', page, re.S)]


def topic_id(app, key: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Topic.id).where(Topic.key == key))


def compose(app, **fields: object) -> dict[str, object]:
    form = {
        "language": "en",
        "subject": "The letter is open",
        "body": "Please **sign** it.",
        "topics": [str(topic_id(app, "letters"))],
        "languages": [],
        "tr_fr-subject": "La lettre est ouverte",
        "tr_fr-body": "Merci de la *signer*.",
    }
    form.update(fields)
    return form


def draft(app, coordinator, **changes) -> int:
    with app.app_context():
        data = services.AlertData(
            original=services.AlertTextData("en", changes.pop("subject", "The letter is open"), "Please sign it."),
            topic_ids=[db.session.scalar(sa.select(Topic.id).where(Topic.key == "letters"))],
            translations=[services.AlertTextData("fr", "La lettre est ouverte", "Merci de la signer.")],
        )
        alert = services.create_alert(data, actor=db.session.get(User, coordinator.id))
        db.session.commit()
        return alert.id


def load(app, alert_id: int) -> Alert:
    with app.app_context():
        alert = db.session.get(Alert, alert_id)
        db.session.refresh(alert)
        list(alert.texts)
        db.session.expunge(alert)
        return alert


@pytest.fixture
def staff(auth, coordinator):
    auth.login(coordinator)
    return coordinator


def test_the_list_shows_each_alert_with_its_kind_status_and_counts(app, client, staff, subscriber):
    subscriber(topics=["letters"])
    sent = draft(app, staff, subject="Sent already")
    with app.app_context():
        services.request_send(db.session.get(Alert, sent), db.session.get(User, staff.id))
    waiting = draft(app, staff, subject="Still a draft")
    page = text(client.get("/admin/alerts"))
    assert 'href="/admin/alerts"' in page  # the main navigation
    assert f'href="/admin/alerts/{sent}"' in page and f'href="/admin/alerts/{waiting}"' in page
    assert "Sent already" in page and "Still a draft" in page
    assert "Finished" in page and "Draft" in page and "Written by hand" in page
    assert "1 in all" in page and "1 sent" in page


def test_compose_saves_a_draft_with_its_translation_and_audits_it(app, client, staff):
    response = client.post("/admin/alerts/new", data=compose(app, languages=["fr", "en"]))
    assert response.status_code == 302
    with app.app_context():
        alert = db.session.scalars(sa.select(Alert)).one()
        assert response.headers["Location"] == f"/admin/alerts/{alert.id}"
        assert {t.language: t.subject for t in alert.texts} == {
            "en": "The letter is open",
            "fr": "La lettre est ouverte",
        }
        assert alert.languages == ["en", "fr"] and alert.created_by_id == staff.id
        audited = sa.select(AuditEvent.actor_id).where(
            AuditEvent.action == "alerts.create",
            AuditEvent.object_type == "Alert",
            AuditEvent.object_id == str(alert.id),
        )
        assert db.session.scalar(audited) == staff.id


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"topics": []}, "Choose at least one topic"),
        ({"subject": ""}, "Write a subject."),
        ({"body": "Dear [%name_text%]"}, "reserved for the personalisation"),
        ({"tr_fr-body": ""}, "text of the Français translation is required"),
        ({"tr_en-subject": "Again", "tr_en-body": "Again"}, "original's language"),
    ],
)
def test_compose_refuses_with_the_reason_beside_the_field(app, client, staff, fields, message):
    response = client.post("/admin/alerts/new", data=compose(app, **fields))
    assert response.status_code == 200
    assert message in text(response)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Alert)) == 0


def test_a_draft_is_edited_and_a_sent_alert_is_not(app, client, staff, subscriber):
    alert_id = draft(app, staff)
    page = text(client.get(f"/admin/alerts/{alert_id}/edit"))
    assert 'value="The letter is open"' in page and "Merci de la signer." in page
    response = client.post(f"/admin/alerts/{alert_id}/edit", data=compose(app, subject="Sign the letter today"))
    assert response.status_code == 302
    assert load(app, alert_id).text_for("en").subject == "Sign the letter today"
    subscriber(topics=["letters"])
    client.post(f"/admin/alerts/{alert_id}/send", data={"when": "now"})
    response = client.get(f"/admin/alerts/{alert_id}/edit")
    assert response.status_code == 302
    assert "can no longer be changed" in text(client.get(response.headers["Location"]))


def test_the_page_counts_the_audience_per_language(app, client, staff, subscriber):
    subscriber(language="en", topics=["letters"])
    subscriber(language="fr", topics=["letters"])
    subscriber(language="fr", topics=["letters"])
    subscriber(language="fr", topics=["letters"], suppressed=True)
    alert_id = draft(app, staff)
    page = text(client.get(f"/admin/alerts/{alert_id}"))
    assert "3 confirmed subscribers would receive it, and 1 suppressed" in page
    assert re.search(r"English</th><td>1</td>", page) and re.search(r"Français</th><td>2</td>", page)
    assert "Send to 3 subscribers" in page


def test_the_preview_frames_the_html_in_a_sandbox(app, client, staff):
    alert_id = draft(app, staff)
    page = text(client.get(f"/admin/alerts/{alert_id}/preview?language=fr"))
    assert "La lettre est ouverte" in page
    assert "List-Unsubscribe-Post" in page and "List-Unsubscribe=One-Click" in page
    assert f'<iframe class="mail-preview" sandbox src="/admin/alerts/{alert_id}/preview.html?language=fr"' in page
    assert "Bonjour Camille Martin," in page
    framed = client.get(f"/admin/alerts/{alert_id}/preview.html?language=fr")
    assert framed.status_code == 200 and framed.mimetype == "text/html"
    assert framed.headers["Content-Security-Policy"].startswith("sandbox; default-src 'none'")
    assert "Merci de la signer." in text(framed)
    russian = text(client.get(f"/admin/alerts/{alert_id}/preview?language=ru"))
    assert "the alert has no text in Русский: the original" in russian and "The letter is open" in russian


def test_a_test_send_goes_to_the_coordinator_and_is_audited(app, client, staff, outbox):
    alert_id = draft(app, staff)
    response = client.post(f"/admin/alerts/{alert_id}/test", data={"language": "fr"})
    assert response.status_code == 302
    assert f"Sent a test to {staff.email}." in flashes(text(client.get(response.headers["Location"])))
    message = outbox.only()
    assert message["To"] == staff.email and message["Subject"] == "[Test] La lettre est ouverte"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with app.app_context():
        assert db.session.scalar(sa.select(AuditEvent.actor_id).where(AuditEvent.action == "alerts.test")) == staff.id


def test_sending_now_reaches_the_audience_once_and_reports_it(app, client, staff, subscriber, outbox):
    english = subscriber(language="en", topics=["letters"])
    french = subscriber(language="fr", topics=["letters"])
    alert_id = draft(app, staff)
    response = client.post(f"/admin/alerts/{alert_id}/send", data={"when": "now"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/admin/alerts/{alert_id}#progress")
    assert sorted(m["To"] for m in outbox.messages()) == sorted([english.email, french.email])
    again = client.post(f"/admin/alerts/{alert_id}/send", data={"when": "now"})
    assert "Only a draft can be sent" in text(client.get(again.headers["Location"]))
    assert len(outbox.messages()) == 2
    page = text(client.get(f"/admin/alerts/{alert_id}"))
    assert "Delivery report" in page and "Finished: 2 of 2 handled (100 %): 2 sent." in page
    assert '<th scope="col">EN</th><th scope="col">FR</th>' in page
    progress = client.get(f"/admin/alerts/{alert_id}/progress").get_json()
    assert progress["counts"]["sent"] == 2 and progress["active"] is False and progress["status"] == "finished"
    with app.app_context():
        assert db.session.scalar(sa.select(AuditEvent.actor_id).where(AuditEvent.action == "alerts.send")) == staff.id


def test_a_send_time_in_the_past_is_refused_as_typed_and_a_later_one_can_be_cancelled(app, client, staff, subscriber,
                                                                                       outbox):  # fmt: skip
    subscriber(topics=["letters"])
    alert_id = draft(app, staff)
    refused = client.post(f"/admin/alerts/{alert_id}/send", data={"when": "at", "at": ""})
    assert refused.status_code == 200 and "Give the date and time to send at." in text(refused)
    later = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(f"/admin/alerts/{alert_id}/send", data={"when": "at", "at": later, "at_timezone": "UTC"})
    assert response.status_code == 302
    assert load(app, alert_id).status == "scheduled" and outbox.messages() == []
    assert "Cancel alert" in text(client.get(f"/admin/alerts/{alert_id}/cancel"))
    response = client.post(f"/admin/alerts/{alert_id}/cancel")
    assert "Cancelled the alert: 1 delivery will not be sent." in flashes(
        text(client.get(response.headers["Location"]))
    )
    assert load(app, alert_id).status == "cancelled"
    with app.app_context():
        assert db.session.scalars(sa.select(AlertDelivery.status)).all() == ["cancelled"]
        assert db.session.scalar(sa.select(AuditEvent.id).where(AuditEvent.action == "alerts.cancel")) is not None


def test_the_deliveries_export_neutralises_formulas(app, client, staff, subscriber):
    subscriber(email="=hyperlink@example.org", topics=["letters"])
    subscriber(email="plain@example.org", topics=["letters"])
    alert_id = draft(app, staff)
    client.post(f"/admin/alerts/{alert_id}/send", data={"when": "now"})
    response = client.get(f"/admin/alerts/{alert_id}/deliveries.csv")
    assert response.mimetype == "text/csv"
    assert f'filename="alert-{alert_id}-deliveries-' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert sorted(row["email"] for row in rows) == ["'=hyperlink@example.org", "plain@example.org"]
    assert {row["status"] for row in rows} == {"sent"} and all(row["sent_at"].endswith("Z") for row in rows)
    with app.app_context():
        assert db.session.scalar(sa.select(AuditEvent.id).where(AuditEvent.action == "alerts.export")) is not None


def test_the_pages_load_no_inline_script(app, client, staff):
    alert_id = draft(app, staff)
    for url in ("/admin/alerts", "/admin/alerts/new", f"/admin/alerts/{alert_id}", f"/admin/alerts/{alert_id}/edit",
                f"/admin/alerts/{alert_id}/preview"):  # fmt: skip
        page = text(client.get(url))
        assert "<script>" not in page and " onclick=" not in page and "<style>" not in page, url


def test_every_form_needs_its_csrf_token(separate_app):
    csrf_app = separate_app(WTF_CSRF_ENABLED=True)
    client = csrf_app.test_client()
    for url in ("/admin/alerts/new", "/admin/alerts/1/edit", "/admin/alerts/1/send", "/admin/alerts/1/test",
                "/admin/alerts/1/cancel"):  # fmt: skip
        assert client.post(url, data={"when": "now"}).status_code == 400, url
