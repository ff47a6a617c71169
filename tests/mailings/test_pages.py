"""Coordinators' mailing pages: the list, composing with templates, the mailing's page and its checks,
the preview, test sends, and approval by a second coordinator (sending is in ``test_sending_pages``)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from campaign.audit import AuditEvent
from campaign.contacts import services as contacts
from campaign.extensions import db
from campaign.mailings.models import Mailing
from tests.factories import drain_jobs
from tests.mailings.pages import compose, deliveries_of, flashes, load, local, text
from tests.mailings.world import approved, draft, make_world


@pytest.fixture
def world(app, database):
    return make_world(app)


@pytest.fixture
def author(auth, world):
    auth.login(world.author)
    return world.author


@pytest.fixture
def approver(auth, world):
    auth.login(world.approver)
    return world.approver


# --- list and compose ----------------------------------------------------------------------------


def test_the_list_shows_each_mailing_with_its_letter_status_and_people(app, client, world, author):
    mailing_id = draft(app, world, name="Ahead of the ministerial")
    page = text(client.get("/admin/mailings"))
    assert 'href="/admin/mailings"' in page  # the main navigation
    assert f'href="/admin/mailings/{mailing_id}"' in page and "Ahead of the ministerial" in page
    assert "Open letter on the protection of civilians" in page
    assert "Draft" in page and world.author.email in page and "not approved" in page


def test_the_compose_page_offers_published_letters_and_lists_the_merge_fields(app, client, world, author):
    page = text(client.get("/admin/mailings/new"))
    assert f'<option value="{world.letter_id}">Open letter on the protection of civilians (open)</option>' in page
    assert "{{ contact.salutation }}" in page and "{{ meeting.date }}" in page
    assert "{% if 'P5' in contact.tags %}" in page
    assert '<option value="P5">P5</option>' in page  # tags in use are offered


def test_compose_saves_a_draft_and_audits_it(app, client, world, author):
    response = client.post("/admin/mailings/new", data=compose(world, tags=["P5"], languages=["fr", "en"]))
    assert response.status_code == 302
    with app.app_context():
        mailing = db.session.scalars(sa.select(Mailing)).one()
        assert (mailing.name, mailing.tags, mailing.languages, mailing.status) == (
            "Ministerial meeting", ["P5"], ["en", "fr"], "draft")  # fmt: skip
        assert mailing.created_by_id == world.author.id
        actions = db.session.scalars(sa.select(AuditEvent.action)).all()
        assert "mailings.create" in actions
    page = text(client.get(response.headers["Location"]))
    assert "Drafted the mailing 'Ministerial meeting'." in flashes(page)
    assert "2 deliverable contacts" in page  # P5 reading French or English: Dupont and O'Neill


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"subject": "Open letter: {{ letter.title"}, "subject", "The template has an error: line 1"),
        ({"introduction": "Dear {{ contact.first_name }},"}, "introduction", "It does not render"),
        ({"introduction": "{% if 'P5' in contact.tags %}unclosed"}, "introduction", "The template has an error"),
        ({"subject": "{{ meeting.nowhere }}"}, "subject", "It does not render"),
        ({"subject": ""}, "subject", "Write a subject."),
        ({"letter": ""}, "letter", "Choose a letter."),
        ({"letter": "999999"}, "letter", "Not a valid choice."),
        ({"rate_per_minute": "0"}, "rate_per_minute", "Number must be between 1 and 100000."),
        ({"countries": ["XX"]}, "countries", "'XX' is not a valid choice"),
    ],
)
def test_compose_shows_what_is_wrong_beside_the_field_and_keeps_the_input(
    app, client, world, author, fields, field, message
):
    form = compose(world, **fields)
    response = client.post("/admin/mailings/new", data=form)
    assert response.status_code == 200
    page = text(response)
    assert "The mailing was not saved: correct the fields marked below." in page
    help_block = re.search(rf'<small id="{field}-help">(.*?)</small>', page, re.S)
    assert help_block and message in help_block.group(1), page
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="{field}"', page)
    assert form["introduction"] in page  # what was typed comes back
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Mailing)) == 0


def test_copying_a_saved_audience_fills_the_selection_and_saves_nothing(app, client, world, author):
    with app.app_context():
        audience = contacts.save_audience("Francophone P5", ["P5"], ["FR"], ["fr"])
        db.session.commit()
        audience_id = audience.id
    form = compose(world, audience=str(audience_id), copy_audience="Copy")
    page = text(client.post("/admin/mailings/new", data=form))
    assert "Copied the audience 'Francophone P5'" in page
    assert '<option selected value="P5">P5</option>' in page
    assert '<option selected value="FR">France</option>' in page
    assert form["subject"] in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Mailing)) == 0


def test_editing_an_approved_mailing_says_it_withdraws_the_approval_and_does(app, client, world, author):
    mailing_id = approved(app, world)
    page = text(client.get(f"/admin/mailings/{mailing_id}/edit"))
    assert "Saving a change withdraws the approval" in page
    changed = compose(world, subject="Changed: {{ letter.title }}")
    response = client.post(f"/admin/mailings/{mailing_id}/edit", data=changed)
    assert response.status_code == 302
    assert "Its approval is withdrawn" in " ".join(flashes(text(client.get(response.headers["Location"]))))
    mailing = load(app, mailing_id)
    assert (mailing.status, mailing.version, mailing.approved_by_id) == ("draft", 2, None)


def test_a_mailing_being_sent_can_no_longer_be_edited(app, client, world, author):
    mailing_id = approved(app, world)
    client.post(f"/admin/mailings/{mailing_id}/send", data={"when": "at", "at": local(days=2), "at_timezone": "UTC"})
    response = client.post(f"/admin/mailings/{mailing_id}/edit", data=compose(world, subject="Too late"))
    assert response.status_code == 302
    assert "it can no longer be changed" in " ".join(flashes(text(client.get(response.headers["Location"]))))
    assert load(app, mailing_id).subject == "Open letter: {{ letter.title }}"


# --- the mailing's page: recipients, checks, preview, test -----------------------------------------


def test_the_mailing_page_shows_recipients_coverage_and_who_may_approve(app, client, auth, world, author):
    mailing_id = draft(app, world, countries=["FR", "IE", "GH"])
    page = text(client.get(f"/admin/mailings/{mailing_id}"))
    assert "2 deliverable contacts" in page
    assert "1 targeted state has no deliverable contact" in page and "Ghana (GH)" in page
    assert '<button type="button" disabled aria-describedby="approve-help">Approve</button>' in page
    assert "You drafted this mailing: a coordinator other than its author approves it." in page
    auth.logout()
    auth.login(world.approver)
    page = text(client.get(f"/admin/mailings/{mailing_id}"))
    assert "Approve version 1" in page and "disabled" not in page.split("approval-heading")[1].split("</section>")[0]


def test_check_every_recipient_lists_each_failure_with_its_contact(app, client, world, author):
    mailing_id = draft(app, world, introduction="{% if 'P5' in contact.tags %}{{ contact.nickname }}{% endif %}")
    page = text(client.get(f"/admin/mailings/{mailing_id}/check"))
    assert "3 recipients do not render" in page
    rows = re.findall(r"<tr>\s*<td>(.*?)</tr>", page, re.S)
    assert sorted(re.search(r"[\w.]+@mission.example", row).group(0) for row in rows) == [
        "dupont@mission.example", "oneill@mission.example", "wang@mission.example"]  # fmt: skip
    assert all("contact has no field 'nickname'" in row for row in rows)
    ok = draft(app, world)
    assert "All 6 recipients render." in text(client.get(f"/admin/mailings/{ok}/check"))


def test_preview_as_a_recipient_in_their_language_with_the_html_framed_under_a_strict_policy(
    app, client, world, author
):
    mailing_id = draft(app, world)
    oneill, dupont = world.contact_ids[0], world.contact_ids[1]
    page = text(client.get(f"/admin/mailings/{mailing_id}/preview?contact={dupont}"))
    assert "Lettre ouverte sur la protection des civils" in page  # the published French translation
    assert "Excellence," in page
    assert f'<option value="{dupont}" selected>' in page
    assert f'src="/admin/mailings/{mailing_id}/preview/{dupont}/html"' in page and "sandbox" in page
    page = text(client.get(f"/admin/mailings/{mailing_id}/preview?contact={oneill}"))
    assert "Excellency," in page and "Open letter: Open letter on the protection of civilians" in page
    response = client.get(f"/admin/mailings/{mailing_id}/preview/{oneill}/html")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox;") and "default-src 'none'" in policy and "frame-ancestors 'self'" in policy
    assert "script-src" not in policy
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "O&#39;Neill" in response.get_data(as_text=True) or "Excellency," in response.get_data(as_text=True)


def test_preview_says_when_it_does_not_render_for_that_recipient(app, client, world, author):
    mailing_id = draft(app, world, introduction="{% if 'P5' in contact.tags %}{{ contact.nickname }}{% endif %}")
    page = text(client.get(f"/admin/mailings/{mailing_id}/preview?contact={world.contact_ids[1]}"))
    assert "It does not render for dupont@mission.example" in page and "<iframe" not in page
    assert client.get(f"/admin/mailings/{mailing_id}/preview/{world.contact_ids[1]}/html").status_code == 422


def test_send_a_test_to_me(app, client, world, author, outbox):
    mailing_id = draft(app, world)
    dupont = world.contact_ids[1]
    response = client.post(f"/admin/mailings/{mailing_id}/preview/{dupont}/test")
    assert response.status_code == 302
    assert f"Sent a test as dupont@mission.example to {world.author.email}." in flashes(
        text(client.get(response.headers["Location"]))
    )
    message = outbox.only()
    assert message["To"].addresses[0].addr_spec == world.author.email
    assert message["Subject"] == "[Test] Open letter: Lettre ouverte sur la protection des civils"
    assert deliveries_of(app, mailing_id) == {}  # a test is no delivery


# --- approval, sending, cancelling -------------------------------------------------------------------


def test_the_author_cannot_approve(app, client, world, author):
    mailing_id = draft(app, world)
    response = client.post(f"/admin/mailings/{mailing_id}/approve", data={"version": "1"}, follow_redirects=True)
    assert "A mailing is approved by a coordinator other than its author." in flashes(text(response))
    assert load(app, mailing_id).status == "draft"


def test_a_second_coordinator_approves_the_version_they_saw(app, client, world, approver):
    mailing_id = draft(app, world)
    response = client.post(f"/admin/mailings/{mailing_id}/approve", data={"version": "2"}, follow_redirects=True)
    assert "The mailing changed since you opened it" in " ".join(flashes(text(response)))
    response = client.post(f"/admin/mailings/{mailing_id}/approve", data={"version": "1"}, follow_redirects=True)
    page = text(response)
    assert "Approved version 1: it can be sent now." in flashes(page)
    assert f"Approved by {world.approver.email}" in page and "Send to 6 recipients" in page
    assert load(app, mailing_id).approved_by_id == world.approver.id


def test_approval_renders_the_attached_pdfs_and_the_page_offers_them(app, client, world, approver):
    mailing_id = draft(app, world)
    client.post(f"/admin/mailings/{mailing_id}/approve", data={"version": "1"})
    with app.app_context():
        drain_jobs()  # with Redis, what a worker does with the job approval queued
    page = text(client.get(f"/admin/mailings/{mailing_id}"))
    for language, name in (("ar", "Arabic"), ("en", "English"), ("fr", "French")):
        assert re.search(rf"{world.letter_slug}-{language}\.pdf</a> \({name}, \d+ KB\)", page), page
    assert f"{world.letter_slug}-zh.pdf" not in page  # Chinese speakers get the English letter
    response = client.get(f"/admin/mailings/{mailing_id}/documents/fr.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    assert response.headers["Content-Disposition"] == f'inline; filename="{world.letter_slug}-fr.pdf"'
    assert client.get(f"/admin/mailings/{mailing_id}/documents/zh.pdf").status_code == 404
    assert client.get("/admin/mailings/999999/documents/fr.pdf").status_code == 404


def test_approval_refuses_a_mailing_that_does_not_render_for_everyone(app, client, world, approver):
    mailing_id = draft(app, world, introduction="{% if 'P5' in contact.tags %}{{ contact.nickname }}{% endif %}")
    response = client.post(f"/admin/mailings/{mailing_id}/approve", data={"version": "1"}, follow_redirects=True)
    assert "3 recipient(s) do not render" in " ".join(flashes(text(response)))
    assert load(app, mailing_id).status == "draft"


# --- who may -------------------------------------------------------------------------------------------


def test_members_and_anonymous_visitors_are_refused(app, client, auth, world, member):
    mailing_id = draft(app, world)
    urls = ("/admin/mailings", f"/admin/mailings/{mailing_id}", f"/admin/mailings/{mailing_id}/progress",
            f"/admin/mailings/{mailing_id}/documents/en.pdf")  # fmt: skip
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), url
    auth.login(member)
    for url in urls:
        assert client.get(url).status_code == 403, url
    assert client.post(f"/admin/mailings/{mailing_id}/send", data={"when": "now"}).status_code == 403
