"""``/api/v1/mailings``: drafting, preview, checks, approval by a second coordinator, sending."""

# ruff: noqa: RUF001 - names in Arabic and Chinese scripts

from __future__ import annotations

from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from campaign.auth.models import User
from campaign.extensions import db
from campaign.letters.models import Letter
from campaign.mailings import services
from campaign.mailings.models import Delivery, Mailing
from tests.letters.publishing import publish
from tests.mailings.world import approved, at, draft, make_world

URL = "/api/v1/mailings"
#: Indexes into ``world.contact_ids`` (see ``tests/mailings/world.py``).
ONEILL, DUPONT, HASSAN, WANG = 0, 1, 2, 3


@pytest.fixture
def world(app, database):
    return make_world(app)


@pytest.fixture
def author(world, bearer):
    return bearer(world.author)


@pytest.fixture
def approver(world, bearer):
    return bearer(world.approver)


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    return body


def new_mailing(world, **fields: object) -> dict:
    return {
        "letter": world.letter_slug,
        "audience": {"tags": [], "countries": ["fr", "IE"], "languages": []},
        "subject": "Open letter: {{ letter.title }}",
        "introduction": "{{ contact.salutation }}\n\nAhead of {{ meeting.title }}, we enclose our letter.",
    } | fields


def test_create_read_list_and_patch(app, client, world, author, approver):
    response = client.post(URL, json=new_mailing(world, rate_per_minute=120), headers=author)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    url = f"{URL}/{body['id']}"
    assert (body["status"], body["version"], body["letter"], body["created_by"]) == (
        "draft", 1, world.letter_slug, world.author.email,
    )  # fmt: skip
    assert body["audience"] == {"tags": [], "countries": ["FR", "IE"], "languages": []}
    assert (body["rate_per_minute"], body["approved_by"], body["schedule"]) == (120, None, None)
    assert body["progress"]["total"] == 0 and body["progress"]["counts"]["sent"] == 0
    assert body["name"]  # made from the letter's title and the date
    assert client.get(url, headers=author).get_json() == body

    other = approved(app, world)
    listed = client.get(URL, headers=author).get_json()
    assert (listed["total"], [item["id"] for item in listed["items"]]) == (2, [other, body["id"]])

    def ids(query: str) -> list[int]:
        response = client.get(f"{URL}?{query}", headers=author)
        assert response.status_code == 200, response.get_data(as_text=True)
        return [item["id"] for item in response.get_json()["items"]]

    assert ids("status=draft") == [body["id"]]
    assert ids("status=approved") == [other]
    assert ids(f"letter={world.letter_slug}&per_page=1") == [other]
    assert ids("letter=no-such-letter") == []
    assert_problem(client.get(f"{URL}?status=lost", headers=author), 422)

    patched = client.patch(url, json={"subject": "To {{ contact.full_name }}", "audience": {"languages": ["fr"]}},
                           headers=author).get_json()  # fmt: skip
    assert (patched["subject"], patched["version"]) == ("To {{ contact.full_name }}", 2)
    assert patched["audience"] == {"tags": [], "countries": ["FR", "IE"], "languages": ["fr"]}
    assert client.patch(url, json={}, headers=author).get_json()["version"] == 2  # no change, no new version

    # A change withdraws an approval.
    approved_url = f"{URL}/{other}"
    assert client.get(approved_url, headers=author).get_json()["approved_by"] == world.approver.email
    changed = client.patch(approved_url, json={"name": "Second wave"}, headers=author).get_json()
    assert (changed["status"], changed["approved_by"], changed["approved_date"]) == ("draft", None, None)
    assert_problem(client.patch(f"{URL}/999999", json={}, headers=author), 404)
    assert_problem(client.get(f"{URL}/999999", headers=author), 404)


def test_a_draft_letter_cannot_be_mailed(app, client, world, author):
    publish(app, status="draft", slug="not-yet")
    body = assert_problem(client.post(URL, json=new_mailing(world, letter="not-yet"), headers=author), 422)
    assert "published letter" in body["detail"]


def test_preview_as_contacts_in_their_languages(app, client, world, author):
    intro = "{{ contact.salutation }} {{ contact.family_name }}{{ contact.given_name }}, {{ contact.full_name }}"
    mailing_id = draft(app, world, introduction=intro)

    def preview(index: int) -> dict:
        response = client.get(f"{URL}/{mailing_id}/preview?contact={world.contact_ids[index]}", headers=author)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    arabic = preview(HASSAN)
    assert (arabic["language"], arabic["email"]) == ("ar", "hassan@mission.example")
    assert arabic["subject"] == "Open letter: رسالة مفتوحة بشأن حماية المدنيين"
    assert "سعادة السفير، حسنأحمد" in arabic["text"]
    assert 'dir="rtl"' in arabic["html"] and "حماية المدنيين" in arabic["html"]

    chinese = preview(WANG)
    assert chinese["language"] == "en"  # no Chinese translation: the letter's own language
    assert "尊敬的大使阁下： 王伟" in chinese["text"] and "尊敬的大使阁下： 王伟" in chinese["html"]
    assert 'dir="ltr"' in chinese["html"]

    irish = preview(ONEILL)
    assert "Excellency, O'NeillSiobhán, H.E. Ms Siobhán O'Neill" in irish["text"]  # plain text stays plain
    assert "O&#39;Neill" in irish["html"] and "O'Neill" not in irish["html"].split("<body", 1)[1]
    assert preview(DUPONT)["language"] == "fr"

    assert_problem(client.get(f"{URL}/{mailing_id}/preview?contact=999999", headers=author), 404)
    assert_problem(client.get(f"{URL}/{mailing_id}/preview", headers=author), 422)
    assert_problem(client.get(f"{URL}/999999/preview?contact={world.contact_ids[0]}", headers=author), 404)


def test_preview_needs_a_contact_of_the_audience(app, client, world, author):
    mailing_id = draft(app, world, countries=["FR"])
    url = f"{URL}/{mailing_id}/preview?contact={world.contact_ids[HASSAN]}"
    body = assert_problem(client.get(url, headers=author), 422)
    assert "not in this mailing's audience" in body["detail"]
    assert body["errors"] == {"query": {"contact": ["Not in the mailing's audience."]}}


def test_a_template_that_does_not_render_is_named(app, client, world, author, approver):
    mailing_id = draft(app, world, introduction="Dear {{ contact.nickname }},")
    url = f"{URL}/{mailing_id}/preview?contact={world.contact_ids[DUPONT]}"
    body = assert_problem(client.get(url, headers=author), 422)
    assert "dupont@mission.example" in body["detail"] and "nickname" in body["detail"]

    check = client.get(f"{URL}/{mailing_id}/check", headers=author).get_json()
    assert check["ready"] is False and check["recipients"] == 6
    assert {f["contact"] for f in check["failures"]} == set(world.contact_ids)
    assert all("nickname" in f["error"] for f in check["failures"])
    body = assert_problem(client.post(f"{URL}/{mailing_id}/approve", headers=approver), 409)
    assert "do not render" in body["detail"]


def test_check_lists_failures_and_uncovered_states(app, client, bearer):
    world = make_world(app, suppressed=1)  # O'Neill (IE) bounced
    mailing_id = draft(app, world, countries=["IE", "FR", "DE"])
    response = client.get(f"{URL}/{mailing_id}/check", headers=bearer(world.author))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["recipients"], body["suppressed"], body["failures"], body["ready"]) == (1, 1, [], True)
    assert body["uncovered"] == [
        {"country": "DE", "country_name": "Germany", "suppressed": 0},
        {"country": "IE", "country_name": "Ireland", "suppressed": 1},
    ]
    assert_problem(client.get(f"{URL}/999999/check", headers=bearer(world.author)), 404)


def test_approval_by_a_second_coordinator(app, client, world, author, approver, make_account, bearer):
    mailing_id = draft(app, world)
    url = f"{URL}/{mailing_id}/approve"
    body = assert_problem(client.post(url, headers=author), 403)
    assert "other than its author" in body["detail"]
    response = client.post(url, headers=approver)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["status"], body["approved_by"], body["approved_date"] is not None) == (
        "approved", world.approver.email, True,
    )  # fmt: skip
    third = bearer(make_account("coordinator"))
    assert "Only a draft" in assert_problem(client.post(url, headers=third), 409)["detail"]
    assert_problem(client.post(f"{URL}/999999/approve", headers=approver), 404)


def test_two_approvals_at_once_one_wins(app, client, world, approver, make_account, bearer, monkeypatch):
    """The other coordinator's approval commits while this one is checking the recipients."""
    mailing_id = draft(app, world)
    rival = make_account("coordinator")
    check, raced = services.check_recipients, []

    def check_then_lose_the_race(mailing):
        failures = check(mailing)
        if not raced:
            raced.append(True)
            with app.app_context():  # a session of its own, as another request would have
                services.approve(db.session.get(Mailing, mailing.id), db.session.get(User, rival.id))
                db.session.commit()
        return failures

    monkeypatch.setattr(services, "check_recipients", check_then_lose_the_race)
    body = assert_problem(client.post(f"{URL}/{mailing_id}/approve", headers=approver), 409)
    assert raced and "approved meanwhile" in body["detail"]
    # (What the rival committed is not checked afterwards: under the test fixture both sessions
    # share one connection, so the loser's rollback also undoes the rival's savepoint.)


def test_send_now_reaches_every_recipient(app, client, bearer, outbox):
    world = make_world(app, suppressed=1)
    mailing_id = draft(app, world)
    author = bearer(world.author)
    assert "approved mailing" in assert_problem(client.post(f"{URL}/{mailing_id}/send", headers=author), 409)["detail"]
    client.post(f"{URL}/{mailing_id}/approve", headers=bearer(world.approver))

    response = client.post(f"{URL}/{mailing_id}/send", headers=author)  # no body: now
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["status"], body["schedule"], body["send_requested_by"]) == (
        "finished", {"description": "now"}, world.author.email,
    )  # fmt: skip
    progress = body["progress"]
    assert (progress["counts"]["sent"], progress["counts"]["suppressed"], progress["total"]) == (5, 1, 6)
    assert (progress["done"], progress["percent"]) == (6, 100)
    assert body["started_date"] and body["finished_date"] and body["first_due_date"]
    assert len(outbox.messages()) == 5

    again = assert_problem(client.post(f"{URL}/{mailing_id}/send", json={}, headers=author), 409)
    assert "finished" in again["detail"]
    assert_problem(client.post(f"{URL}/{mailing_id}/cancel", headers=author), 409)
    assert_problem(client.patch(f"{URL}/{mailing_id}", json={"name": "Late"}, headers=author), 409)
    assert len(outbox.messages()) == 5


def test_send_before_the_meeting_at_nine_in_each_recipients_timezone(app, client, world, author):
    mailing_id = approved(app, world)
    response = client.post(f"{URL}/{mailing_id}/send", json={"before_meeting": "P3D", "local_time": "09:00"},
                           headers=author)  # fmt: skip
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "scheduled" and body["progress"]["counts"]["pending"] == 6
    assert (body["schedule"]["before_meeting"], body["schedule"]["local_time"]) == ("P3D", "09:00")
    with app.app_context():
        starts = db.session.get(Letter, world.letter_id).meeting.starts_at_aware
        rows = db.session.execute(sa.select(Delivery.email, Delivery.due_at).filter_by(mailing_id=mailing_id))
        due = dict(rows.all())
    for email, zone in (("dupont@mission.example", "Europe/Paris"), ("oneill@mission.example", "America/New_York")):
        local = due[email].astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute) == (9, 0), (email, local)
        assert local.date() == (starts - timedelta(days=3)).astimezone(ZoneInfo(zone)).date()
    assert due["dupont@mission.example"] != due["oneill@mission.example"]
    assert body["first_due_date"] == min(due.values()).astimezone(UTC).isoformat()

    cancelled = client.post(f"{URL}/{mailing_id}/cancel", headers=author).get_json()
    assert (cancelled["status"], cancelled["progress"]["counts"]["cancelled"]) == ("cancelled", 6)
    assert cancelled["cancelled_date"] is not None


def test_send_at_a_time(app, client, world, author):
    mailing_id = approved(app, world)
    when = at(days=2).astimezone(ZoneInfo("Europe/Zurich")).replace(microsecond=0)
    response = client.post(f"{URL}/{mailing_id}/send", json={"at": when.isoformat()}, headers=author)
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["status"], body["schedule"]["at"]) == ("scheduled", when.astimezone(UTC).isoformat())
    with app.app_context():
        dues = set(db.session.scalars(sa.select(Delivery.due_at).filter_by(mailing_id=mailing_id)))
    assert dues == {when}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": 42}, "subject"),
        ({"subject": "x" * 501}, "subject"),
        ({"subject": "Hello\r\nBcc: everyone@example.org"}, "subject"),
        ({"subject": "Hello\nthere"}, "subject"),
        ({"subject": "{% if %}"}, "subject"),
        ({"introduction": "{{ contact.salutation"}, "introduction"),
        ({"introduction": ["not", "text"]}, "introduction"),
        ({"bcc": "everyone@example.org"}, "bcc"),
        ({"letter": "no-such-letter"}, "letter"),
        ({"letter": None}, "letter"),
        ({"audience": ["FR"]}, "audience"),
        ({"audience": {"countries": ["XX"]}}, "audience"),
        ({"audience": {"languages": ["de"]}}, "audience"),
        ({"audience": {"countries": "FR"}}, "audience"),
        ({"audience": {"regions": ["WEOG"]}}, "audience"),
        ({"rate_per_minute": 0}, "rate_per_minute"),
        ({"rate_per_minute": "fast"}, "rate_per_minute"),
        ({"name": "A\nB"}, "name"),
    ],
)
def test_create_refuses_bad_bodies(client, world, author, change, field):
    body = assert_problem(client.post(URL, json=new_mailing(world, **change), headers=author), 422)
    assert field in body["errors"]["json"], body


def test_create_needs_the_required_fields(client, world, author):
    body = assert_problem(client.post(URL, json={}, headers=author), 422)
    assert {"letter", "audience", "subject"} <= set(body["errors"]["json"])
    assert_problem(client.post(URL, data="not json", content_type="application/json", headers=author), 400)
    assert_problem(client.post(URL, json=["a", "list"], headers=author), 422)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"at": "tomorrow"}, "at"),
        ({"at": "2027-03-01T09:00:00"}, "at"),  # no offset
        ({"at": 1767225600}, "at"),
        ({"at": "0001-01-01T00:00:00+01:00"}, "at"),
        ({"at": "2020-03-01T09:00:00Z"}, "at"),  # passed
        ({"at": "2999-03-01T09:00:00Z"}, "at"),  # too far
        ({"before_meeting": "3 days", "local_time": "09:00"}, "before_meeting"),
        ({"before_meeting": "P", "local_time": "09:00"}, "before_meeting"),
        ({"before_meeting": "P3D"}, "local_time"),
        ({"before_meeting": "P3D", "local_time": "9am"}, "local_time"),
        ({"before_meeting": "P3D", "local_time": "24:00"}, "local_time"),
        ({"local_time": "09:00"}, "local_time"),
        ({"at": "2027-03-01T09:00:00Z", "before_meeting": "P3D", "local_time": "09:00"}, "_schema"),
        ({"when": "now"}, "when"),
    ],
)
def test_send_refuses_bad_bodies(app, client, world, author, payload, field):
    mailing_id = approved(app, world)
    body = assert_problem(client.post(f"{URL}/{mailing_id}/send", json=payload, headers=author), 422)
    assert field in body["errors"]["json"], body
    mailing = client.get(f"{URL}/{mailing_id}", headers=author).get_json()
    assert (mailing["status"], mailing["progress"]["total"]) == ("approved", 0)


def test_before_meeting_needs_a_meeting_to_come(app, client, bearer):
    world = make_world(app, meeting_in=timedelta(days=-1))
    mailing_id = approved(app, world)
    payload = {"before_meeting": "P1D", "local_time": "09:00"}
    body = assert_problem(client.post(f"{URL}/{mailing_id}/send", json=payload, headers=bearer(world.author)), 422)
    assert "already started" in body["detail"]


def test_cancel_a_draft(app, client, world, author):
    mailing_id = draft(app, world)
    body = client.post(f"{URL}/{mailing_id}/cancel", headers=author).get_json()
    assert body["status"] == "cancelled"
    again = assert_problem(client.post(f"{URL}/{mailing_id}/cancel", headers=author), 409)
    assert "already cancelled" in again["detail"]
    assert_problem(client.post(f"{URL}/{mailing_id}/approve", headers=author), 403)


def test_members_anonymous_and_session_cookies_are_refused(app, client, world, auth, make_account, bearer):
    mailing_id = draft(app, world)
    member = bearer(make_account("member"))
    calls = [("GET", URL), ("POST", URL), ("GET", f"{URL}/{mailing_id}"), ("PATCH", f"{URL}/{mailing_id}"),
             ("GET", f"{URL}/{mailing_id}/check"), ("POST", f"{URL}/{mailing_id}/approve"),
             ("POST", f"{URL}/{mailing_id}/send"), ("POST", f"{URL}/{mailing_id}/cancel"),
             ("GET", f"{URL}/{mailing_id}/preview?contact={world.contact_ids[0]}")]  # fmt: skip
    for method, url in calls:
        assert_problem(client.open(url, method=method, json={}, headers=member), 403)
        body = assert_problem(client.open(url, method=method, json={}), 401)
        assert "Bearer" in body["detail"]
    auth.login(world.approver)  # a coordinator's session cookie is not a token
    for method, url in calls:
        assert_problem(client.open(url, method=method, json={}), 401)
    with app.app_context():
        assert db.session.get(Mailing, mailing_id).status == "draft"


def test_admins_may(app, client, world, make_account, bearer):
    admin = bearer(make_account("admin"))
    mailing_id = draft(app, world)
    response = client.post(f"{URL}/{mailing_id}/approve", headers=admin)
    assert response.status_code == 200, response.get_data(as_text=True)
