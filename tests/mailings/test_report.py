"""A mailing's delivery report: counts by state, language and country, the charts and their tables,
the deliveries that need a look with their evidence, filters, the CSV export, the printable record,
who may see them, and a page whose queries do not grow with the deliveries."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from campaign import queue
from campaign.audit import AuditEvent
from campaign.auth.models import User
from campaign.contacts import services as contacts
from campaign.contacts.validation import ContactData
from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings import report, services, tracking
from campaign.mailings.models import Delivery, DeliveryEvent, Mailing
from tests.mailings.events import FakeSendGrid, event
from tests.mailings.pages import text as page_text
from tests.mailings.world import World, approved, make_world
from tests.signatures.test_listing import count_queries

#: The world's contacts, in order: IE (en, suppressed), FR (fr), EG (ar), CN (zh), RU (ru), AR (es).
ONEILL, DUPONT, HASSAN, WANG, IVANOV, GARCIA = range(6)
FORMULA = "oddone@mission.example"


def text(response) -> str:
    """The page unescaped, runs of white space as one space."""
    return " ".join(page_text(response).split())


@pytest.fixture
def world(app: Flask, database: None) -> World:
    """The mailing world, O'Neill suppressed, and a seventh contact whose name is a formula."""
    built = make_world(app, suppressed=1)
    with app.app_context():
        odd = contacts.create_contact(
            ContactData(country="KE", email=FORMULA, organisation="+Mission of Kenya", given_name="",
                        family_name="=cmd()", language="en", tags=["P5"], timezone="Africa/Nairobi")
        )  # fmt: skip
        db.session.commit()
        return World(built.letter_id, built.letter_slug, built.author, built.approver, [*built.contact_ids, odd.id])


@pytest.fixture
def sent(app: Flask, world: World, monkeypatch: pytest.MonkeyPatch) -> int:
    """The world's mailing sent through a provider that lost Wang's answer, then SendGrid's events
    through the tracking code: Dupont delivered, Hassan bounced, Ivanov dropped; García and the
    Kenyan contact stay sent.  Its id."""
    monkeypatch.setitem(app.extensions, "mail_backend", FakeSendGrid(lose={"wang@mission.example"}))
    mailing_id = approved(app, world)
    with app.test_request_context():
        row = services.request_send(
            db.session.get(Mailing, mailing_id), {}, actor=db.session.get(User, world.author.id)
        )
        db.session.commit()
        queue.dispatch(row)
        by_contact = {
            d.contact_id: d for d in db.session.scalars(sa.select(Delivery).where(Delivery.mailing_id == mailing_id))
        }
        dupont, hassan, ivanov = (by_contact[world.contact_ids[i]] for i in (DUPONT, HASSAN, IVANOV))
        tracking.receive([
            event(dupont, "processed"),
            event(dupont, "delivered", response="250 2.0.0 OK"),
            event(hassan, "bounce", type="bounce", status="5.1.1", reason="550 5.1.1 The email account does not exist"),
            event(ivanov, "dropped", reason="Bounced Address"),
        ])  # fmt: skip
        db.session.commit()
    return mailing_id


@pytest.fixture
def coordinator_client(auth, world: World, client):
    auth.login(world.author)
    return client


def test_counts_by_state_language_and_country(app, sent, ctx):
    states = report.by_state(sent)
    assert {state: n for state, n in states.items() if n} == {
        "suppressed": 1, "delivered": 1, "bounced": 1, "uncertain": 1, "dropped": 1, "sent": 2,
    }  # fmt: skip
    assert set(states) >= {"pending", "failed", "cancelled"}
    languages = {g.key: (g.name, g.counts) for g in report.by_language(sent)}
    assert languages == {
        "en": ("English", {"suppressed": 1, "sent": 1}), "fr": ("French", {"delivered": 1}),
        "ar": ("Arabic", {"bounced": 1}), "zh": ("Chinese", {"uncertain": 1}), "ru": ("Russian", {"dropped": 1}),
        "es": ("Spanish", {"sent": 1}),
    }  # fmt: skip
    countries = report.by_country(sent)
    assert [(g.key, g.name) for g in countries] == [
        ("AR", "Argentina"), ("CN", "China"), ("EG", "Egypt"), ("FR", "France"), ("IE", "Ireland"), ("KE", "Kenya"),
        ("RU", "Russian Federation"),
    ]  # fmt: skip
    assert [g.key for g in countries if g.reached] == ["AR", "FR", "KE"]
    france = next(g for g in countries if g.key == "FR")
    assert france.outcomes["delivered"] == 1 and france.total == 1
    regions = {g.name: g.total for g in report.by_region(countries)}
    assert regions == {"African Group": 2, "Asia-Pacific Group": 1, "Eastern European Group": 1,
                       "Latin American and Caribbean Group": 1, "Western European and Others Group": 2}  # fmt: skip


def test_the_report_page_shows_counts_charts_and_their_tables(sent, coordinator_client):
    response = coordinator_client.get(f"/admin/mailings/{sent}/report")
    assert response.status_code == 200
    page = text(response)
    assert re.search(r'data-state-count="sent">2<', page) and re.search(r'data-state-count="bounced">1<', page)
    assert "7 deliveries to contacts in 7 countries; delivered or sent to at least one contact in 3 of them." in page
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"') == 2
    assert (
        '<desc id="by-language-desc">All deliveries: 7 (Delivered 1, Sent 2, Uncertain 1, Not delivered 2, '
        "Suppressed 1); Arabic: 1 (Not delivered 1);" in page
    )
    assert "<caption>Deliveries by language and outcome</caption>" in page
    assert '<th scope="row">Russian Federation</th>' in page
    assert "<script" not in page


def test_the_evidence_lists_what_needs_a_look_with_reasons_and_events(sent, coordinator_client):
    page = text(coordinator_client.get(f"/admin/mailings/{sent}/report"))
    listed = re.findall(r'<h3 id="evidence-\d+">([^ ]+)', page)
    # By state, then id: bounced, dropped, suppressed, uncertain.
    assert listed == ["hassan@mission.example", "ivanov@mission.example", "oneill@mission.example",
                      "wang@mission.example"]  # fmt: skip
    assert "bounced: 5.1.1 550 5.1.1 The email account does not exist" in page
    assert "sent → bounced" in page and "dropped by SendGrid: Bounced Address" in page
    assert "The last steps of the delivery to wang@mission.example" in page
    assert "no answer after sending" in page  # the uncertain one's evidence
    assert "dupont@mission.example" not in page.split('id="attention-heading"')[1].split("</section>")[0]


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        ("state=bounced", ["hassan@mission.example"]),
        ("language=ru", ["ivanov@mission.example"]),
        ("country=CN", ["wang@mission.example"]),
        ("country=cn&language=zh", ["wang@mission.example"]),
        ("state=delivered", []),
        ("state=nonsense&language=<b>&country=France", ["hassan@mission.example", "ivanov@mission.example",
                                                       "oneill@mission.example", "wang@mission.example"]),
    ],
)  # fmt: skip
def test_filters_narrow_the_list(sent, coordinator_client, args, listed):
    page = text(coordinator_client.get(f"/admin/mailings/{sent}/report?{args}"))
    assert re.findall(r'<h3 id="evidence-\d+">([^ ]+)', page) == listed
    if not listed:
        assert "No delivery matching the filters needs a look." in page
        assert "Deliveries in the state delivered need no look: the export and the record list them." in page


def _csv(response) -> list[dict[str, str]]:
    body = response.get_data()
    assert body.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def test_the_csv_export_is_every_delivery_neutralised_and_audited(app, sent, coordinator_client):
    response = coordinator_client.get(f"/admin/mailings/{sent}/report.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert re.fullmatch(rf'attachment; filename="mailing-{sent}-deliveries-\d{{8}}-\d{{4}}\.csv"',
                        response.headers["Content-Disposition"])  # fmt: skip
    rows = _csv(response)
    assert list(rows[0]) == list(report.EXPORT_FIELDS)
    by_email = {row["email"]: row for row in rows}
    assert len(rows) == 7 and len(by_email) == 7
    odd = by_email[FORMULA]
    assert (odd["contact_name"], odd["organisation"]) == ("'=cmd()", "'+Mission of Kenya")
    assert by_email["hassan@mission.example"]["contact_name"] == "H.E. Mr أحمد حسن"
    assert by_email["oneill@mission.example"]["contact_name"] == "H.E. Ms Siobhán O'Neill"
    dupont = by_email["dupont@mission.example"]
    assert (dupont["status"], dupont["last_event"], dupont["country_name"]) == ("delivered", "delivered", "France")
    assert dupont["message_id"] and dupont["sent_date"]
    assert by_email["oneill@mission.example"]["message_id"] == ""
    with app.app_context():
        audit = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "mailings.report_export")).one()
        assert audit.object_id == str(sent)


def test_the_csv_export_applies_the_filters(sent, coordinator_client):
    rows = _csv(coordinator_client.get(f"/admin/mailings/{sent}/report.csv?state=sent"))
    assert sorted(row["email"] for row in rows) == ["garcia@mission.example", FORMULA]
    rows = _csv(coordinator_client.get(f"/admin/mailings/{sent}/report.csv?language=en&state=suppressed"))
    assert [(row["email"], row["status"]) for row in rows] == [("oneill@mission.example", "suppressed")]
    assert "mailbox full" in rows[0]["reason"]


def test_the_record_lists_each_delivery_with_its_message_id_and_events(app, sent, coordinator_client):
    response = coordinator_client.get(f"/admin/mailings/{sent}/record")
    assert response.status_code == 200
    page = text(response)
    assert "<script" not in page and "css/mailings.css" in page
    with app.app_context():
        mailing = db.session.get(Mailing, sent)
        approver = mailing.approved_by.email
        deliveries = db.session.scalars(sa.select(Delivery).where(Delivery.mailing_id == sent)).all()
        assert f"by {approver} (version 1)" in page
        for delivery in deliveries:
            assert f"Events of the delivery to {delivery.email}" in page
            if delivery.message_id:
                assert f"<code>{delivery.message_id}</code>" in page
            for history in delivery.events:
                assert history.detail in page
    dupont = page.split("Events of the delivery to dupont@mission.example")[1].split("</table>")[0]
    rows = re.findall(r"<tr> <td>([^<]*)</td> <td>([^<]*)</td> <td>(\w+)</td>", dupont)
    assert [kind for _, _, kind in rows][-3:] == ["sent", "processed", "delivered"]
    # SendGrid's events carry the time they occurred beside the time they were recorded; ours do not.
    assert [occurred != "—" for _, occurred, _ in rows][-3:] == [False, True, True]


def test_the_record_applies_the_filters(sent, coordinator_client):
    page = text(coordinator_client.get(f"/admin/mailings/{sent}/record?country=EG"))
    assert re.findall(r"Events of the delivery to (\S+)</caption>", page) == ["hassan@mission.example"]
    assert "only the deliveries to Egypt" in page
    page = text(coordinator_client.get(f"/admin/mailings/{sent}/record?state=cancelled"))
    assert "No delivery in the state cancelled." in page


@pytest.mark.parametrize("path", ["report", "report.csv", "record"])
def test_only_staff_see_the_report(app, sent, client, auth, make_account, path):
    url = f"/admin/mailings/{sent}/{path}"
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    auth.login(make_account("member"))
    assert client.get(url).status_code == 403
    assert client.get(f"/admin/mailings/{sent + 1000}/{path}").status_code == 403


@pytest.mark.parametrize("path", ["report", "report.csv", "record"])
def test_an_unknown_mailing_is_not_found(sent, coordinator_client, path):
    assert coordinator_client.get(f"/admin/mailings/{sent + 1000}/{path}").status_code == 404


def test_the_report_of_an_unsent_mailing_says_so(app, world, coordinator_client):
    mailing_id = approved(app, world)
    page = text(coordinator_client.get(f"/admin/mailings/{mailing_id}/report"))
    assert "The mailing has no deliveries yet: it has not been sent." in page
    assert "No delivery needs a look." in page
    rows = _csv(coordinator_client.get(f"/admin/mailings/{mailing_id}/report.csv"))
    assert rows == []


# --- many deliveries ----------------------------------------------------------------------------------

STATES = ("delivered", "sent", "bounced", "uncertain", "failed", "suppressed", "dropped", "pending")
COUNTRIES = ("FR", "KE", "BR", "JP", "DE", "CL", "IN", "ZA", "PL", "EG")
LANGUAGES = ("en", "fr", "es", "ar", "ru", "zh")


def add_deliveries(app: Flask, mailing_id: int, count: int) -> None:
    """``count`` deliveries without contacts, states, countries and languages in turn, each with two
    lines of history; committed."""
    now = utcnow()
    with app.app_context():
        rows = [
            {"mailing_id": mailing_id, "contact_id": None, "email": f"m{n:05d}@missions.example",
             "country": COUNTRIES[n % len(COUNTRIES)], "language": LANGUAGES[n % len(LANGUAGES)],
             "status": STATES[n % len(STATES)], "due_at": now, "attempts": 1, "message_id": f"msg{n:05d}",
             "reason": f"reason {n}", "sent_at": now, "updated_at": now}
            for n in range(count)
        ]  # fmt: skip
        db.session.execute(sa.insert(Delivery), rows)
        ids = db.session.scalars(sa.select(Delivery.id).where(Delivery.mailing_id == mailing_id)).all()
        events = [
            {"delivery_id": delivery_id, "kind": kind, "detail": f"{kind} {delivery_id}", "source": "test",
             "data": {}, "created_at": now + timedelta(seconds=step)}
            for delivery_id in ids for step, kind in enumerate(("claimed", "sent"))
        ]  # fmt: skip
        db.session.execute(sa.insert(DeliveryEvent), events)
        db.session.commit()


def test_the_report_page_issues_the_same_queries_for_400_deliveries_as_for_8(app, world, coordinator_client):
    small, large = approved(app, world), approved(app, world, name="Second")
    add_deliveries(app, small, 8)
    add_deliveries(app, large, 400)
    coordinator_client.get(f"/admin/mailings/{small}/report")  # warm what any first request loads

    few, small_html = count_queries(app, coordinator_client, f"/admin/mailings/{small}/report")
    lots, large_html = count_queries(app, coordinator_client, f"/admin/mailings/{large}/report")

    assert few == lots <= 16
    assert "8 deliveries to contacts in 8 countries" in small_html
    assert "400 deliveries to contacts in 10 countries" in large_html
    assert "Page 1 of 5 · 250 in all" in text_of(large_html)  # 5 of 8 states need a look, 50 a page
    assert large_html.count('<article class="evidence"') == 50


def text_of(html: str) -> str:
    import html as html_module

    return html_module.unescape(html)


def test_export_and_record_walk_every_delivery_page_by_page(app, world, coordinator_client, ctx):
    mailing_id = approved(app, world)
    add_deliveries(app, mailing_id, 23)
    pages = list(report.pages(mailing_id, report.Filters(), size=5))
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    keys = [(delivery.country, delivery.id) for page in pages for delivery in page]
    assert keys == sorted(set(keys))  # by country, then id; none twice
    batches = list(report.export_rows(mailing_id, report.Filters(country="FR"), size=2))
    assert [row[1] for batch in batches for row in batch] == ["FR"] * 3
    assert all(row[13] == "sent" for batch in batches for row in batch)  # the last event of each
    page = text(coordinator_client.get(f"/admin/mailings/{mailing_id}/record"))
    assert len(re.findall(r"Events of the delivery to", page)) == 23
    assert page.count("<code>msg000") == 23


def test_filters_from_a_query_string_keep_only_what_can_be_a_value():
    assert report.Filters.from_args({"state": "Bounced ", "language": "FR", "country": "ke"}) == report.Filters(
        "bounced", "fr", "KE"
    )
    assert report.Filters.from_args({"state": "gone", "language": "fra", "country": "K1"}) == report.Filters()
    assert report.Filters("sent", "fr", "KE").describe() == "in the state sent, in French, to Kenya"
    assert report.Filters(country="KE").as_args() == {"country": "KE"}
