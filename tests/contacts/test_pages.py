"""Coordinators' contact pages: the list and its filters, bulk tags, adding and editing, a contact's
page with its actions and history, coverage and audiences."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from campaign.contacts.models import Audience, ContactEvent
from campaign.extensions import db
from tests.contacts.pages import (
    contact_form,
    contact_row,
    count_contacts,
    emails_listed,
    fill_directory,
    history,
    make_contact,
    text,
)


@pytest.fixture
def staff(auth, coordinator):
    auth.login(coordinator)
    return coordinator


@pytest.fixture
def directory(app):
    fill_directory(app)


# --- the list -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"ghana", "france", "china", "percent_100%"}),
        ("country=FR", {"france"}),
        ("tag=P5", {"france", "china"}),
        ("tag=p5", {"france", "china"}),  # tags match case-insensitively
        ("language=zh", {"china"}),
        ("suppression=deliverable", {"ghana", "france", "china"}),
        ("suppression=suppressed", {"percent_100%"}),
        ("suppression=bounced", {"percent_100%"}),
        ("suppression=unsubscribed", set()),
        ("q=claire", {"france"}),
        ("q=mission+ghana", {"ghana"}),
        ("q=100%25", {"percent_100%"}),  # % is a literal, not a wildcard
        ("q=_", {"percent_100%"}),  # so is _
        ("q=%25", {"percent_100%"}),
        ("tag=P5&language=fr", {"france"}),
    ],
)
def test_list_filters(app, client, staff, directory, query, expected):
    response = client.get(f"/admin/contacts?{query}")
    assert response.status_code == 200
    listed = {email.split("@")[0] for email in emails_listed(text(response))}
    assert listed == expected


def test_list_shows_the_columns_and_links(app, client, staff, directory):
    page = text(client.get("/admin/contacts"))
    assert "Mission of Ghana" in page and "Ghana" in page and "Africa Group" in page
    assert "Bounced" in page and "Deliverable" in page
    assert 'href="/admin/contacts/import"' in page and 'href="/admin/contacts/coverage"' in page
    assert 'href="/admin/contacts/export.csv?tag=P5"' in text(client.get("/admin/contacts?tag=P5"))
    # Every row's checkbox has a label.
    boxes = re.findall(r'<input type="checkbox" name="ids" value="\d+" id="(select-\d+)">', page)
    assert len(boxes) == 4
    for box in boxes:
        assert f'<label for="{box}" class="visually-hidden">Select ' in page
    # Only tags and countries in use are offered as filters.
    assert '<option value="Africa Group">Africa Group (1)</option>' in page
    assert '<option value="GH">Ghana</option>' in page and '<option value="DE">' not in page


def test_list_pages(app, client, staff, monkeypatch):
    monkeypatch.setattr("campaign.contacts.routes.PER_PAGE", 2)
    for n in range(3):
        make_contact(app, f"contact{n}@mission.example.org")
    assert "Page 1 of 2" in text(client.get("/admin/contacts"))
    assert "Page 2 of 2" in text(client.get("/admin/contacts?page=2"))
    assert client.get("/admin/contacts?page=99999999999").status_code == 200


# --- bulk tags ----------------------------------------------------------------------------------


def test_bulk_tags_add_and_remove_on_the_ticked_rows(app, client, staff, directory):
    ids = [contact_row(app, f"{name}@mission.example.org").id for name in ("ghana", "china")]
    response = client.post(
        "/admin/contacts/tags", data={"ids": ids, "bulk_tag": "Security Council; G77", "action": "add"}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/contacts"
    assert contact_row(app, "ghana@mission.example.org").tags == ["Africa Group", "G77", "Security Council"]
    assert contact_row(app, "china@mission.example.org").tags == ["G77", "P5", "Security Council"]
    assert contact_row(app, "france@mission.example.org").tags == ["P5"]
    assert history(app, "ghana@mission.example.org")[0] == "Tagged G77, Security Council"
    assert "Tagged 2 of the 2 selected contacts" in text(client.get("/admin/contacts"))

    # Removing, from a filtered page: the filters come back.
    response = client.post(
        "/admin/contacts/tags", data={"ids": ids, "bulk_tag": "g77", "action": "remove", "country": "CN", "tag": "P5"}
    )
    assert response.headers["Location"] == "/admin/contacts?country=CN&tag=P5"
    assert contact_row(app, "ghana@mission.example.org").tags == ["Africa Group", "Security Council"]
    assert history(app, "china@mission.example.org")[0] == "Untagged g77"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bulk_tag": "P5", "action": "add"}, "Tick the contacts to tag first."),
        ({"bulk_tag": "", "action": "add", "ids": ["1"]}, "Enter a tag."),
        ({"bulk_tag": "a" * 65, "action": "add", "ids": ["1"]}, "longer than 64 characters"),
    ],
)
def test_bulk_tags_explains_what_is_missing(app, client, staff, directory, data, message):
    if data.get("ids"):
        data["ids"] = [contact_row(app, "ghana@mission.example.org").id]
    client.post("/admin/contacts/tags", data=data)
    assert message in text(client.get("/admin/contacts"))
    assert contact_row(app, "ghana@mission.example.org").tags == ["Africa Group"]


# --- add and edit -------------------------------------------------------------------------------


def test_add_a_contact(app, client, staff):
    response = client.post("/admin/contacts/new", data=contact_form())
    assert response.status_code == 302
    contact = contact_row(app, "amina.diallo@mission.example.org")
    assert response.headers["Location"] == f"/admin/contacts/{contact.id}"
    assert (contact.country, contact.language, contact.honorific) == ("SN", "fr", "H.E. Ms.")
    assert contact.tags == ["Africa Group", "Geneva", "P5 watch"]
    assert contact.timezone == "America/New_York"  # the default setting
    page = text(client.get(response.headers["Location"]))
    assert "Added amina.diallo@mission.example.org." in page
    assert "H.E. Ms. Amina Diallo" in page and "Senegal (SN)" in page and "Met at the 2025 retreat." in page
    assert re.search(r"<td>[^<]*</td>\s*<td>" + re.escape(staff.email) + r"</td>\s*<td>Created", page)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"email": "not-an-address"}, "email", "Email 'not-an-address' is not valid"),
        ({"email": ""}, "email", "This field is required."),
        ({"country": ""}, "country", "Choose a country."),
        ({"country": "XX"}, "country", "Not a valid choice."),
        ({"language": "de"}, "language", "Not a valid choice."),
        ({"timezone": "Europe/Geneva"}, "timezone", "Not a valid choice."),
        ({"tags": "P5, " + "t" * 70}, "tags", "is longer than 64 characters"),
        ({"salutation": "Excellency,\r\nBcc: x@example.org"}, "salutation", "Salutation must be on one line"),
    ],
)
def test_add_shows_what_is_wrong_beside_the_field(app, client, staff, fields, field, message):
    response = client.post("/admin/contacts/new", data=contact_form(**fields))
    assert response.status_code == 200
    page = text(response)
    assert message in page
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="{field}"', page), page
    assert count_contacts(app) == 0


def test_add_refuses_an_email_already_in_the_directory_whatever_its_case(app, client, staff):
    make_contact(app, "amina.diallo@mission.example.org")
    response = client.post("/admin/contacts/new", data=contact_form(email="Amina.Diallo@Mission.example.org"))
    assert "A contact with the email amina.diallo@mission.example.org already exists." in text(response)
    assert "The contact was not saved" in text(response)
    assert count_contacts(app) == 1


def test_edit_a_contact_records_what_changed(app, client, staff):
    contact_id = make_contact(app, "amina.diallo@mission.example.org", "SN", given_name="Amina", tags=["Geneva"])
    page = text(client.get(f"/admin/contacts/{contact_id}/edit"))
    assert 'value="amina.diallo@mission.example.org"' in page and 'value="Geneva"' in page

    response = client.post(
        f"/admin/contacts/{contact_id}/edit", data=contact_form(position="Deputy Permanent Representative")
    )
    assert response.headers["Location"] == f"/admin/contacts/{contact_id}"
    contact = contact_row(app, "amina.diallo@mission.example.org")
    assert contact.position == "Deputy Permanent Representative"
    page = text(client.get(f"/admin/contacts/{contact_id}"))
    assert "Saved amina.diallo@mission.example.org." in page
    assert "position: — → Deputy Permanent Representative" in page
    assert "tags: Geneva → Africa Group; Geneva; P5 watch" in page


def test_edit_with_an_invalid_email_keeps_the_contact(app, client, staff):
    contact_id = make_contact(app, "amina.diallo@mission.example.org", "SN")
    make_contact(app, "taken@mission.example.org")
    response = client.post(f"/admin/contacts/{contact_id}/edit", data=contact_form(email="amina@@example"))
    assert response.status_code == 200 and "Email 'amina@@example' is not valid" in text(response)
    response = client.post(f"/admin/contacts/{contact_id}/edit", data=contact_form(email="TAKEN@mission.example.org"))
    assert "Another contact already has the email taken@mission.example.org." in text(response)
    assert contact_row(app, "amina.diallo@mission.example.org").country == "SN"


def test_unknown_contacts_are_not_found(client, staff):
    for path in ("/admin/contacts/999999", "/admin/contacts/999999/edit", "/admin/contacts/99999999999"):
        assert client.get(path).status_code == 404


# --- suppress, unsuppress, verify, delete -------------------------------------------------------


def test_suppress_unsuppress_and_verify_each_leave_a_history_line(app, client, staff):
    contact_id = make_contact(app, "amina.diallo@mission.example.org", "SN")
    url = f"/admin/contacts/{contact_id}"

    response = client.post(f"{url}/suppress", data={"reason": "manual", "note": "Left the mission in May"})
    assert response.headers["Location"] == url
    contact = contact_row(app, "amina.diallo@mission.example.org")
    assert (contact.suppression, contact.suppression_reason) == ("manual", "Left the mission in May")
    page = text(client.get(url))
    assert "No more mail goes to amina.diallo@mission.example.org: Set by hand." in page
    assert "Make deliverable again" in page and "Left the mission in May" in page
    assert "Set by hand" in text(client.get("/admin/contacts"))

    client.post(f"{url}/unsuppress")
    assert contact_row(app, "amina.diallo@mission.example.org").suppression is None
    client.post(f"{url}/verify")
    assert contact_row(app, "amina.diallo@mission.example.org").last_verified_at is not None

    assert history(app, "amina.diallo@mission.example.org") == [
        "Address verified",
        "Deliverable again",
        "Suppressed: Set by hand",
        "Created",
    ]
    page = text(client.get(url))
    assert page.index("Address verified") < page.index("Deliverable again") < page.index("Suppressed: Set by hand")
    assert "amina.diallo@mission.example.org was verified today" in page


def test_suppress_refuses_an_unknown_reason(app, client, staff):
    contact_id = make_contact(app, "amina.diallo@mission.example.org", "SN")
    client.post(f"/admin/contacts/{contact_id}/suppress", data={"reason": "tired", "note": ""})
    assert "Not a valid choice" in text(client.get(f"/admin/contacts/{contact_id}"))
    assert contact_row(app, "amina.diallo@mission.example.org").suppression is None


def test_delete_asks_first_then_deletes_the_contact_and_its_history(app, client, staff):
    contact_id = make_contact(app, "amina.diallo@mission.example.org", "SN")
    page = text(client.get(f"/admin/contacts/{contact_id}/delete"))
    assert "Delete amina.diallo@mission.example.org" in page
    assert contact_row(app, "amina.diallo@mission.example.org") is not None

    response = client.post(f"/admin/contacts/{contact_id}/delete")
    assert response.headers["Location"] == "/admin/contacts"
    assert contact_row(app, "amina.diallo@mission.example.org") is None
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ContactEvent)) == 0
    assert "Deleted amina.diallo@mission.example.org." in text(client.get("/admin/contacts"))


# --- coverage -----------------------------------------------------------------------------------


def test_coverage_counts_the_member_states_and_lists_the_gaps_first(app, client, staff, directory):
    make_contact(app, "vatican@nunciature.example.org", "VA")  # not a Member State: not counted
    page = text(client.get("/admin/contacts/coverage"))
    assert "3 of 193" in page and "190" in page
    rows = re.findall(r'<tr( class="gap")?>\s*<th scope="row"><a href="/admin/contacts\?country=(\w\w)">', page)
    assert len(rows) == 193
    gaps = [code for gap, code in rows if gap]
    assert len(gaps) == 190 and "BR" in gaps  # Brazil's only contact is suppressed
    assert [code for _, code in rows[-3:]] == ["CN", "FR", "GH"]  # covered ones last, by name
    assert page.count("No deliverable contact") == 190

    only_gaps = text(client.get("/admin/contacts/coverage?gaps=1"))
    assert only_gaps.count('<tr class="gap">') == 190 and "?country=FR" not in only_gaps
    assert "3 of 193" in only_gaps


# --- audiences ----------------------------------------------------------------------------------


def test_audiences_are_saved_counted_edited_and_deleted(app, client, staff, directory):
    response = client.post(
        "/admin/contacts/audiences/new", data={"name": "P5 in French", "tags": ["P5"], "languages": ["fr", "en"]}
    )
    assert response.headers["Location"] == "/admin/contacts/audiences"
    page = text(client.get("/admin/contacts/audiences"))
    assert "Saved the audience 'P5 in French': 1 deliverable contact." in page
    assert re.search(r"P5 in French</a></td>.*?<td>1</td>", page, re.S)

    with app.app_context():
        audience_id = db.session.scalar(sa.select(Audience.id))
    # A name already in use, in another case, is refused.
    client.post("/admin/contacts/audiences/new", data={"name": "Everyone"})
    response = client.post("/admin/contacts/audiences/new", data={"name": "p5 IN FRENCH"})
    assert "An audience named 'P5 in French' already exists." in text(response)

    response = client.post(
        f"/admin/contacts/audiences/{audience_id}", data={"name": "P5", "tags": ["P5"], "countries": ["CN", "FR"]}
    )
    assert response.status_code == 302
    assert "2 deliverable contacts match this audience." in text(client.get(f"/admin/contacts/audiences/{audience_id}"))
    with app.app_context():
        audience = db.session.get(Audience, audience_id)
        assert (audience.tags, audience.countries, audience.languages) == (["P5"], ["CN", "FR"], [])

    client.post(f"/admin/contacts/audiences/{audience_id}/delete")
    assert "P5" not in re.findall(r">([^<]+)</a></td>", text(client.get("/admin/contacts/audiences")))
    assert client.get(f"/admin/contacts/audiences/{audience_id}").status_code == 404
