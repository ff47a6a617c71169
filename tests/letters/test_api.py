"""``/api/v1/letters`` and ``/api/v1/meetings``: roles, validation, the workflow, pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from campaign.audit import AuditEvent
from campaign.auth import tokens
from campaign.auth.models import User
from campaign.extensions import db
from campaign.letters import services
from campaign.letters.models import Letter, Meeting

PROBLEM = "application/problem+json"
LATER = datetime.now(UTC) + timedelta(days=60)


@pytest.fixture
def token_for(app, database):
    def make(account) -> dict[str, str]:
        with app.app_context():
            _, raw = tokens.create_token(db.session.get(User, account.id), "tests")
            db.session.commit()
        return {"Authorization": f"Bearer {raw}"}

    return make


@pytest.fixture
def staff(token_for, coordinator):
    return token_for(coordinator)


@pytest.fixture
def members(token_for, member):
    return token_for(member)


@pytest.fixture
def make_letter(app, database):
    """A letter made through the services, moved to ``status``; returns its slug."""

    def make(title: str = "A letter", status: str = "draft", language: str = "en", **kwargs: object) -> str:
        with app.app_context():
            text = services.LetterText(title=title, body_markdown=f"Excellencies,\n\n**{title}**.", addressee="To: All")
            letter = services.create_letter(text, language=language, **kwargs)
            for move in services.FORWARD[1 : services.FORWARD.index(services.LetterStatus(status)) + 1]:
                services.transition(letter, move.value)
            db.session.commit()
            return letter.slug

    return make


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


# --- reading -----------------------------------------------------------------------


def test_members_list_public_letters_staff_list_all(client, make_letter, staff, members):
    make_letter("Draft one")
    make_letter("Open one", status="open")
    make_letter("Embargoed one", status="open", embargo_until=LATER)
    make_letter("Sent one", status="sent", language="fr")
    public = client.get("/api/v1/letters", headers=members).get_json()
    assert [item["title"] for item in public["items"]] == ["Sent one", "Open one"]
    assert public["total"] == 2
    everything = client.get("/api/v1/letters", headers=staff).get_json()
    assert [item["title"] for item in everything["items"]] == ["Sent one", "Embargoed one", "Open one", "Draft one"]
    drafts = client.get("/api/v1/letters?status=draft", headers=staff).get_json()
    assert [item["slug"] for item in drafts["items"]] == ["draft-one"]
    assert client.get("/api/v1/letters?status=draft", headers=members).get_json()["total"] == 0
    french = client.get("/api/v1/letters?language=fr", headers=members).get_json()
    assert [item["slug"] for item in french["items"]] == ["sent-one"]


def test_letter_lists_are_paged(client, make_letter, staff):
    for n in range(5):
        make_letter(f"Letter {n}")
    body = client.get("/api/v1/letters?per_page=2&page=2", headers=staff).get_json()
    assert (body["page"], body["per_page"], body["total"]) == (2, 2, 5)
    assert [item["title"] for item in body["items"]] == ["Letter 2", "Letter 1"]
    assert client.get("/api/v1/letters?page=9", headers=staff).get_json()["items"] == []


@pytest.mark.parametrize("query", ["status=published", "language=de", "per_page=101", "page=0"])
def test_bad_list_filters_are_problems(client, staff, query):
    response = client.get(f"/api/v1/letters?{query}", headers=staff)
    assert response.status_code == 422 and response.content_type == PROBLEM
    assert response.get_json()["errors"]["query"]


def test_a_letter_reads_with_every_field(app, client, make_letter, staff):
    with app.app_context():
        meeting = services.save_meeting(
            services.MeetingData("Ministerial", datetime(2031, 9, 21, 10), "Europe/Zurich", "Geneva")
        )
        db.session.commit()
        meeting_id = meeting.id
    slug = make_letter("Read me", status="open")
    with app.app_context():
        letter = services.get_letter(slug)
        services.update_settings(
            letter,
            signature_deadline=LATER,
            embargo_until=None,
            meeting=db.session.get(Meeting, meeting_id),
            members_only=False,
        )
        services.save_translation(letter, "fr", services.LetterText(title="Lisez-moi", body_markdown="Excellences,"))
        db.session.commit()
    body = client.get(f"/api/v1/letters/{slug}", headers=staff).get_json()
    assert set(body) == {
        "slug", "title", "language", "status", "addressee", "body_markdown", "body_html", "signature_deadline",
        "embargo_until", "accepts_signatures", "members_only", "meeting", "current_revision", "published_revision",
        "published_date", "created_date", "modified_date", "translations",
    }  # fmt: skip
    assert body["body_html"] == "<p>Excellencies,</p>\n<p><strong>Read me</strong>.</p>"
    assert (body["status"], body["current_revision"], body["published_revision"]) == ("open", 1, 1)
    assert body["accepts_signatures"] is True and body["signature_deadline"].endswith("+00:00")
    assert body["meeting"]["id"] == meeting_id and body["meeting"]["starts_at"] == "2031-09-21T08:00:00+00:00"
    assert body["translations"] == [{"language": "fr", "status": "draft"}]


def test_members_see_the_published_text_and_nothing_unpublished(app, client, make_letter, staff, members):
    draft = make_letter("Still a draft")
    assert client.get(f"/api/v1/letters/{draft}", headers=staff).status_code == 200
    hidden = client.get(f"/api/v1/letters/{draft}", headers=members)
    assert hidden.status_code == 404 and hidden.content_type == PROBLEM
    embargoed = make_letter("Embargoed", status="open", embargo_until=LATER)
    assert client.get(f"/api/v1/letters/{embargoed}", headers=members).status_code == 404
    slug = make_letter("Public", status="open")
    with app.app_context():
        letter = services.get_letter(slug)
        services.save_revision(letter, services.LetterText(title="Public, revised", body_markdown="Not yet public."))
        services.save_translation(letter, "es", services.LetterText(title="Pública", body_markdown="Excelencias,"))
        db.session.commit()
    seen = client.get(f"/api/v1/letters/{slug}", headers=members).get_json()
    assert (seen["title"], seen["current_revision"], seen["published_revision"]) == ("Public", None, 1)
    assert seen["translations"] == []
    assert client.get(f"/api/v1/letters/{slug}", headers=staff).get_json()["title"] == "Public, revised"
    assert client.get("/api/v1/letters/No%20Such", headers=staff).status_code == 404


# --- creating and changing ----------------------------------------------------------


def test_staff_draft_a_letter(app, client, staff, coordinator):
    response = client.post(
        "/api/v1/letters",
        headers=staff,
        json={
            "title": "Protect civilians",
            "language": "fr",
            "addressee": "Aux chefs d'État",
            "body_markdown": "Excellences,\n\nLe 80<sup>e</sup> anniversaire.",
            "signature_deadline": "2031-01-01T12:00:00+01:00",
            "note": "First draft",
        },
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["slug"], body["status"], body["language"], body["current_revision"]) == (
        "protect-civilians",
        "draft",
        "fr",
        1,
    )
    assert "80<sup>e</sup>" in body["body_html"]
    assert body["signature_deadline"] == "2031-01-01T11:00:00+00:00"
    again = client.post("/api/v1/letters", headers=staff, json={"title": "Protect civilians", "body_markdown": "x"})
    assert again.get_json()["slug"] == "protect-civilians-2"
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "letter.create").limit(1))
        assert event.actor_id == coordinator.id


@pytest.mark.parametrize("slug", ["taken", "new"])
def test_a_taken_slug_is_a_conflict(client, make_letter, staff, slug):
    make_letter("Taken")
    response = client.post(
        "/api/v1/letters", headers=staff, json={"title": "Other", "slug": slug, "body_markdown": "Text"}
    )
    assert response.status_code == 409 and response.content_type == PROBLEM
    assert "is taken" in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"body_markdown": "Text"}, "title"),
        ({"title": "T"}, "body_markdown"),
        ({"title": "T", "body_markdown": ""}, "body_markdown"),
        ({"title": "Line\nbreak", "body_markdown": "Text"}, "title"),
        ({"title": "T\x00", "body_markdown": "Text"}, "title"),
        ({"title": "T", "body_markdown": "x" * 200_001}, "body_markdown"),
        ({"title": "T", "body_markdown": "Text", "language": "de"}, "language"),
        ({"title": "T", "body_markdown": "Text", "slug": "Not A Slug"}, "slug"),
        ({"title": "T", "body_markdown": "Text", "signature_deadline": "2031-01-01T12:00:00"}, "signature_deadline"),
        ({"title": "T", "body_markdown": "Text", "embargo_until": "0001-01-01T00:00:00+01:00"}, "embargo_until"),
        ({"title": "T", "body_markdown": "Text", "meeting_id": 999999}, "meeting_id"),
        ({"title": "T", "body_markdown": "Text", "meeting_id": 2**40}, "meeting_id"),
        ({"title": "T", "body_markdown": "Text", "status": "open"}, "status"),
    ],
)
def test_invalid_letters_are_problems_and_create_nothing(app, client, staff, body, field):
    response = client.post("/api/v1/letters", headers=staff, json=body)
    assert response.status_code == 422 and response.content_type == PROBLEM
    assert field in response.get_json()["errors"]["json"]
    assert count(app, Letter) == 0


def test_a_blank_title_is_refused_by_the_rules(client, staff):
    response = client.post("/api/v1/letters", headers=staff, json={"title": "   ", "body_markdown": "Text"})
    assert response.status_code == 422 and response.get_json()["detail"] == "A letter needs a title."


def test_members_and_strangers_cannot_write(client, make_letter, members):
    slug = make_letter("Open", status="open")
    assert client.post("/api/v1/letters", headers=members, json={"title": "T", "body_markdown": "x"}).status_code == 403
    assert client.patch(f"/api/v1/letters/{slug}", headers=members, json={"title": "X"}).status_code == 403
    assert client.post(f"/api/v1/letters/{slug}/transitions", headers=members, json={"to": "closed"}).status_code == 403
    assert client.get(f"/api/v1/letters/{slug}/revisions", headers=members).status_code == 403
    anonymous = client.post("/api/v1/letters", json={"title": "T", "body_markdown": "x"})
    assert anonymous.status_code == 401 and anonymous.content_type == PROBLEM


def test_patch_saves_a_revision_only_when_the_text_changes(app, client, make_letter, staff):
    slug = make_letter("Original")
    url = f"/api/v1/letters/{slug}"
    changed = client.patch(url, headers=staff, json={"body_markdown": "New text.", "note": "Tightened"})
    assert changed.status_code == 200 and changed.get_json()["current_revision"] == 2
    assert changed.get_json()["title"] == "Original"  # omitted fields keep their value
    same = client.patch(url, headers=staff, json={"body_markdown": "New text."})
    assert same.get_json()["current_revision"] == 2
    settings_only = client.patch(url, headers=staff, json={"embargo_until": "2031-02-01T00:00:00Z"})
    assert settings_only.get_json()["embargo_until"] == "2031-02-01T00:00:00+00:00"
    assert settings_only.get_json()["current_revision"] == 2
    cleared = client.patch(url, headers=staff, json={"embargo_until": None})
    assert cleared.get_json()["embargo_until"] is None
    revisions = client.get(f"{url}/revisions", headers=staff).get_json()
    assert [(r["number"], r["note"]) for r in revisions["items"]] == [(2, "Tightened"), (1, "")]


def test_members_only_is_optional_false_by_default_and_settable(app, client, staff, members, coordinator):
    plain = client.post("/api/v1/letters", headers=staff, json={"title": "Plain", "body_markdown": "Text"})
    assert plain.get_json()["members_only"] is False
    body = {"title": "Members", "body_markdown": "Text", "members_only": True}
    created = client.post("/api/v1/letters", headers=staff, json=body).get_json()
    assert created["members_only"] is True
    url = f"/api/v1/letters/{created['slug']}"
    assert client.patch(url, headers=staff, json={"title": "Members only"}).get_json()["members_only"] is True
    opened = client.patch(url, headers=staff, json={"members_only": False}).get_json()
    assert (opened["members_only"], opened["current_revision"]) == (False, 2)
    with app.app_context():
        assert services.get_letter(created["slug"]).members_only is False
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "letter.settings"))
        assert (event.actor_id, event.details) == (coordinator.id, {"members_only": "False"})
    refused = client.patch(url, headers=staff, json={"members_only": "perhaps"})
    assert refused.status_code == 422 and "members_only" in refused.get_json()["errors"]["json"]
    for transition in ("review", "open"):
        client.post(f"{url}/transitions", headers=staff, json={"to": transition})
    client.patch(url, headers=staff, json={"members_only": True})
    assert client.get(url, headers=members).get_json()["members_only"] is True


def test_patch_problems(client, make_letter, staff):
    slug = make_letter("Sent", status="sent")
    final = client.patch(f"/api/v1/letters/{slug}", headers=staff, json={"title": "Too late"})
    assert final.status_code == 409 and "its text is final" in final.get_json()["detail"]
    # An embargo set now would take a sent letter off the public pages: settings are final too.
    late_settings = client.patch(
        f"/api/v1/letters/{slug}", headers=staff, json={"embargo_until": "2099-01-01T00:00:00Z"}
    )
    assert late_settings.status_code == 409 and "settings" in late_settings.get_json()["detail"]
    assert client.patch(f"/api/v1/letters/{slug}", headers=staff, json={"slug": "renamed"}).status_code == 422
    assert client.patch(f"/api/v1/letters/{slug}", headers=staff, json={"meeting_id": 424242}).status_code == 422
    assert client.patch("/api/v1/letters/missing", headers=staff, json={"title": "X"}).status_code == 404


# --- the workflow ------------------------------------------------------------------


def test_transitions_move_the_letter_and_publish_it(app, client, make_letter, staff, members):
    slug = make_letter("Moving")
    url = f"/api/v1/letters/{slug}/transitions"
    refused = client.post(url, headers=staff, json={"to": "open"})
    assert refused.status_code == 409 and refused.content_type == PROBLEM
    assert refused.get_json()["detail"] == "A letter that is draft cannot become open for signatures."
    assert client.post(url, headers=staff, json={"to": "review"}).get_json()["status"] == "review"
    assert client.post(url, headers=staff, json={"to": "draft"}).get_json()["status"] == "draft"
    client.post(url, headers=staff, json={"to": "review"})
    opened = client.post(url, headers=staff, json={"to": "open"}).get_json()
    assert (opened["status"], opened["published_revision"]) == ("open", 1)
    assert client.get(f"/api/v1/letters/{slug}", headers=members).status_code == 200
    for to in ("closed", "sent"):
        assert client.post(url, headers=staff, json={"to": to}).get_json()["status"] == to
    assert client.post(url, headers=staff, json={"to": "open"}).status_code == 409
    with app.app_context():
        moves = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "letter.transition")).all()
        assert len(moves) == 6


def test_opening_after_the_deadline_is_a_conflict(client, make_letter, staff):
    slug = make_letter("Late", status="review", signature_deadline=datetime(2020, 1, 1, tzinfo=UTC))
    response = client.post(f"/api/v1/letters/{slug}/transitions", headers=staff, json={"to": "open"})
    assert response.status_code == 409
    assert "The signature deadline has passed" in response.get_json()["detail"]


@pytest.mark.parametrize("body", [{}, {"to": "published"}, {"to": "open", "extra": 1}, {"to": None}])
def test_bad_transition_bodies_are_problems(client, make_letter, staff, body):
    slug = make_letter("Any")
    response = client.post(f"/api/v1/letters/{slug}/transitions", headers=staff, json=body)
    assert response.status_code == 422 and response.content_type == PROBLEM


def test_revisions_list_every_language_newest_first(app, client, make_letter, staff, coordinator):
    slug = make_letter("Revised")
    with app.app_context():
        letter = services.get_letter(slug)
        author = db.session.get(User, coordinator.id)
        services.save_revision(letter, services.LetterText(title="Revised", body_markdown="Two", note="n"), author)
        services.save_translation(letter, "ar", services.LetterText(title="رسالة", body_markdown="نص"), author)
        db.session.commit()
    body = client.get(f"/api/v1/letters/{slug}/revisions", headers=staff).get_json()
    assert [(r["language"], r["number"], r["author"]) for r in body["items"]] == [
        ("ar", 1, coordinator.email),
        ("en", 2, coordinator.email),
        ("en", 1, None),
    ]
    assert set(body["items"][0]) == {"number", "language", "title", "note", "created_date", "author"}
    arabic = client.get(f"/api/v1/letters/{slug}/revisions?language=ar&per_page=1", headers=staff).get_json()
    assert (arabic["total"], arabic["items"][0]["title"]) == (1, "رسالة")
    assert client.get("/api/v1/letters/nope/revisions", headers=staff).status_code == 404


# --- meetings ----------------------------------------------------------------------

MEETING = {
    "title": "Ministerial Conference on the Protection of Civilians",
    "location": "Palais des Nations, Geneva",
    "starts_at_local": "2031-09-21T10:00:00",
    "ends_at_local": "2031-09-22T17:30:00",
    "timezone": "Europe/Zurich",
}


def test_staff_add_meetings_and_everyone_reads_them(client, staff, members):
    created = client.post("/api/v1/meetings", headers=staff, json=MEETING)
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["starts_at"] == "2031-09-21T08:00:00+00:00"
    assert body["starts_at_local"] == "2031-09-21T10:00:00" and body["description"] == ""
    backwards = {**MEETING, "starts_at_local": "2031-09-23T10:00:00"}
    refused = client.post("/api/v1/meetings", headers=staff, json=backwards)
    assert refused.status_code == 422 and refused.get_json()["detail"] == "The meeting ends before it starts."
    old = {**MEETING, "title": "Old", "starts_at_local": "2015-09-30T10:00:00", "ends_at_local": None}
    assert client.post("/api/v1/meetings", headers=staff, json=old).status_code == 201
    listed = client.get("/api/v1/meetings", headers=staff).get_json()
    assert [m["title"] for m in listed["items"]] == ["Old", MEETING["title"]] and listed["total"] == 2
    upcoming = client.get("/api/v1/meetings?upcoming=true", headers=staff).get_json()
    assert [m["title"] for m in upcoming["items"]] == [MEETING["title"]]
    # Others see a meeting only while a public letter is written for it.
    assert client.get("/api/v1/meetings", headers=members).get_json()["total"] == 0
    assert client.get(f"/api/v1/meetings/{body['id']}", headers=members).status_code == 404
    assert client.get(f"/api/v1/meetings/{body['id']}", headers=staff).get_json()["title"] == MEETING["title"]
    assert client.get("/api/v1/meetings/999999", headers=members).status_code == 404
    assert client.post("/api/v1/meetings", headers=members, json=MEETING).status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "Europe/Geneva"}, "timezone"),
        ({"starts_at_local": "2031-09-21T10:00:00+02:00"}, "starts_at_local"),
        ({"starts_at_local": "not a time"}, "starts_at_local"),
        ({"title": ""}, "title"),
        ({"location": "a\nb"}, "location"),
        ({"room": "XX"}, "room"),
    ],
)
def test_invalid_meetings_are_problems(app, client, staff, change, field):
    response = client.post("/api/v1/meetings", headers=staff, json={**MEETING, **change})
    assert response.status_code == 422 and field in response.get_json()["errors"]["json"]
    assert count(app, Meeting) == 0


# --- the document ------------------------------------------------------------------


def test_the_document_describes_the_letters_api(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert {
        "/api/v1/letters",
        "/api/v1/letters/{slug}",
        "/api/v1/letters/{slug}/transitions",
        "/api/v1/letters/{slug}/revisions",
        "/api/v1/meetings",
        "/api/v1/meetings/{id}",
    } <= set(spec["paths"])
    assert set(spec["paths"]["/api/v1/letters/{slug}"]) >= {"get", "patch"}
    responses = spec["paths"]["/api/v1/letters/{slug}/transitions"]["post"]["responses"]
    assert {"200", "401", "403", "404", "409", "422"} <= set(responses)
    create = spec["components"]["schemas"]["LetterCreate"]
    assert create["properties"]["members_only"]["default"] is False  # optional: older clients leave it out
    assert "members_only" not in create["required"]


@pytest.fixture
def letters_schema(app, database):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@pytest.fixture
def seeded(app, make_account, make_letter):
    """An admin's token, and a letter and meeting for generated requests to find."""
    admin = make_account("admin")
    with app.app_context():
        _, raw = tokens.create_token(db.session.get(User, admin.id), "schemathesis")
        meeting = services.save_meeting(services.MeetingData("M", datetime(2031, 1, 1, 9), "UTC"))
        db.session.commit()
        meeting_id = meeting.id
    return {"token": raw, "slug": make_letter("Fuzzed", status="review"), "meeting_id": meeting_id}


schema = schemathesis.pytest.from_fixture("letters_schema").include(path_regex="/api/v1/(letters|meetings)")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_letters_api_conforms_to_its_document_on_real_rows(case, seeded):
    """Like ``tests/test_openapi.py``, but the generated requests name a letter and a meeting that exist."""
    if "slug" in case.path_parameters:
        case.path_parameters["slug"] = seeded["slug"]
    if "id" in case.path_parameters:
        case.path_parameters["id"] = seeded["meeting_id"]
    case.call_and_validate(
        headers={"Authorization": f"Bearer {seeded['token']}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
