"""Translations beside the original (right to left for Arabic, outdated warnings) and meetings."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from campaign.extensions import db
from campaign.letters import services
from campaign.letters.models import Meeting
from campaign.letters.services import LetterText
from tests.letters.test_admin_pages import _text, events, make_letter, revisions_of

ARABIC = {
    "title": "رسالة مفتوحة بشأن حماية المدنيين",
    "addressee": "إلى رؤساء الدول والحكومات",
    "body_markdown": "ندعو جميع الدول إلى **حماية المدنيين** دون تأخير.",
    "note": "",
    "save": "1",
}
FRENCH = {
    "title": "Lettre ouverte sur la protection des civils",
    "addressee": "Aux chefs d'État et de gouvernement",
    "body_markdown": "Nous appelons tous les États à **protéger les civils**.",
    "note": "Première traduction",
    "save": "1",
}


@pytest.fixture
def staff(auth, coordinator):
    auth.login(coordinator)
    return coordinator


def _translation(app, slug: str, language: str):
    with app.app_context():
        found = services.get_letter(slug).translation(language)
        db.session.expunge_all()
        return found


def _revise_original(app, slug: str, body: str) -> None:
    with app.app_context():
        letter = services.get_letter(slug)
        services.save_revision(letter, LetterText(title=letter.title, body_markdown=body))
        db.session.commit()


# --- translations --------------------------------------------------------------


def test_the_arabic_translation_is_right_to_left_beside_the_original(app, client, staff):
    slug = make_letter(app)
    page = client.get(f"/admin/letters/{slug}/translations/ar").get_data(as_text=True)
    assert '<section class="translation" aria-labelledby="translation-heading" lang="ar" dir="rtl">' in page
    assert re.search(r'<textarea[^>]*dir="rtl"[^>]*id="body_markdown"[^>]*lang="ar"', page)
    assert re.search(r'<textarea[^>]*dir="rtl"[^>]*id="addressee"[^>]*lang="ar"', page)
    assert re.search(r'<input[^>]*dir="auto"[^>]*id="title"[^>]*lang="ar"', page)
    assert '<div id="preview" class="letter-text" lang="ar" dir="rtl">' in page
    # The original, in its own language and direction, on the other side.
    assert '<article class="letter-text" lang="en" dir="ltr">' in page
    assert "<strong>protect civilians</strong>" in page

    response = client.post(f"/admin/letters/{slug}/translations/ar", data=ARABIC, follow_redirects=True)
    assert "Saved the Arabic translation." in _text(response)
    (revision,) = revisions_of(app, slug, "ar")
    assert (revision.title, revision.author_id) == (ARABIC["title"], staff.id)
    assert "<strong>حماية المدنيين</strong>" in response.get_data(as_text=True)  # the preview of what was saved


def test_saving_an_unchanged_translation_makes_no_revision(app, client, staff):
    slug = make_letter(app)
    client.post(f"/admin/letters/{slug}/translations/fr", data=FRENCH)
    response = client.post(f"/admin/letters/{slug}/translations/fr", data=FRENCH, follow_redirects=True)
    assert "The translation is unchanged: no new revision was saved." in _text(response)
    assert [r.number for r in revisions_of(app, slug, "fr")] == [1]
    assert [r.number for r in revisions_of(app, slug)] == [1]  # the original is untouched
    assert len(events(app, "translation.revise")) == 1


def test_translation_preview_button_saves_nothing(app, client, staff):
    slug = make_letter(app)
    data = {**FRENCH, "body_markdown": "Bonjour <img src=x onerror=alert(1)> **monde**", "preview": "1"}
    del data["save"]
    page = client.post(f"/admin/letters/{slug}/translations/fr", data=data).get_data(as_text=True)
    preview = page.split('<div id="preview" class="letter-text" lang="fr" dir="ltr">')[1].split("</div>")[0]
    assert preview == "<p>Bonjour  <strong>monde</strong></p>"
    assert "Removed from the preview:</strong> &lt;img&gt; element, onerror attribute, src attribute." in page
    assert _translation(app, slug, "fr") is None


@pytest.mark.parametrize(("status", "public"), [("review", False), ("published", True), ("draft", False)])
def test_translation_status_buttons(app, client, staff, status, public):
    slug = make_letter(app)
    client.post(f"/admin/letters/{slug}/translations/fr", data=FRENCH)
    response = client.post(f"/admin/letters/{slug}/translations/fr/status", data={"status": status})
    assert response.headers["Location"] == f"/admin/letters/{slug}/translations/fr"
    assert f"The French translation is now {status}." in _text(client.get(response.headers["Location"]))
    translation = _translation(app, slug, "fr")
    assert translation.status == status
    assert (translation.published_revision_id is not None) is public
    (event,) = events(app, "translation.status")
    assert (event.actor_id, event.details) == (staff.id, {"language": "fr"})


def test_a_translation_status_must_be_known_and_the_translation_exist(app, client, staff):
    slug = make_letter(app)
    assert client.post(f"/admin/letters/{slug}/translations/fr/status", data={"status": "draft"}).status_code == 404
    client.post(f"/admin/letters/{slug}/translations/fr", data=FRENCH)
    response = client.post(f"/admin/letters/{slug}/translations/fr/status", data={"status": "gone"})
    assert "Choose draft, review or published." in _text(client.get(response.headers["Location"]))
    assert _translation(app, slug, "fr").status == "draft"


@pytest.mark.parametrize("lang", ["en", "de", "EN", "fr-CA"])
def test_only_other_un_languages_have_a_translation_page(app, client, staff, lang):
    slug = make_letter(app)  # written in English
    assert client.get(f"/admin/letters/{slug}/translations/{lang}").status_code == 404


def test_a_translation_made_from_an_older_revision_is_flagged_outdated(app, client, staff):
    slug = make_letter(app)
    client.post(f"/admin/letters/{slug}/translations/fr", data=FRENCH)
    page = _text(client.get(f"/admin/letters/{slug}/translations/fr"))
    assert "This translation is outdated." not in page
    assert "outdated" not in _text(client.get(f"/admin/letters/{slug}"))

    _revise_original(app, slug, "We call on all States to act today.")
    page = client.get(f"/admin/letters/{slug}/translations/fr").get_data(as_text=True)
    assert "This translation is outdated." in page
    assert "made from revision 1 of the original; the original is now at revision 2." in page
    assert f"/admin/letters/{slug}/diff?from=1&amp;to=2" in page
    assert '<span class="badge warning">outdated</span>' in client.get(f"/admin/letters/{slug}").get_data(as_text=True)

    # Saving the translation again brings it up to date.
    client.post(f"/admin/letters/{slug}/translations/fr", data={**FRENCH, "body_markdown": "Agissez aujourd'hui."})
    assert "This translation is outdated." not in _text(client.get(f"/admin/letters/{slug}/translations/fr"))


def test_a_published_letter_compares_translations_with_its_published_text(app, client, staff):
    slug = make_letter(app)
    with app.app_context():
        letter = services.get_letter(slug)
        services.transition(letter, "review")
        services.transition(letter, "open")
        db.session.commit()
    client.post(f"/admin/letters/{slug}/translations/fr", data=FRENCH)
    _revise_original(app, slug, "A newer text, not published yet.")
    page = _text(client.get(f"/admin/letters/{slug}/translations/fr"))
    assert "This translation is outdated." not in page
    assert "Original, revision 1 (published)" in page  # the side the public reads
    with app.app_context():
        services.publish_changes(services.get_letter(slug))
        db.session.commit()
    assert "This translation is outdated." in _text(client.get(f"/admin/letters/{slug}/translations/fr"))


def test_revision_history_and_diff_of_a_translation(app, client, staff):
    slug = make_letter(app)
    client.post(f"/admin/letters/{slug}/translations/fr", data=FRENCH)
    client.post(f"/admin/letters/{slug}/translations/fr", data={**FRENCH, "body_markdown": "Nous appelons à agir."})
    assert "Première traduction" in _text(client.get(f"/admin/letters/{slug}/revisions?language=fr"))
    page = client.get(f"/admin/letters/{slug}/diff?language=fr&from=1&to=2").get_data(as_text=True)
    assert (
        "<del>**protéger les civils**.</del><ins>agir.</ins>" in page
        and '<div class="diff" lang="fr" dir="ltr">' in page
    )


# --- meetings ------------------------------------------------------------------


def meeting_form(**fields: str) -> dict[str, str]:
    form = {
        "title": "High-level meeting on the veto",
        "location": "UN Headquarters, New York",
        "starts_at_local": "2026-09-22T10:00",
        "ends_at_local": "2026-09-22T13:00",
        "timezone": "America/New_York",
        "description": "Ministers meet on the margins of the General Assembly.",
    }
    form.update(fields)
    return form


def _meetings(app) -> list[Meeting]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(Meeting).order_by(Meeting.id)))
        db.session.expunge_all()
        return found


def test_a_meeting_keeps_local_times_and_its_utc_start(app, client, staff):
    response = client.post("/admin/meetings/new", data=meeting_form(), follow_redirects=True)
    assert "Added the meeting 'High-level meeting on the veto'." in _text(response)
    (meeting,) = _meetings(app)
    assert meeting.starts_at_local == datetime(2026, 9, 22, 10, 0)
    assert meeting.ends_at_local == datetime(2026, 9, 22, 13, 0)
    assert meeting.starts_at == datetime(2026, 9, 22, 14, 0, tzinfo=UTC)  # EDT is UTC-4
    assert meeting.timezone == "America/New_York"
    page = _text(response)
    assert "22 Sep 2026, 10:00 \u2013 13:00" in page and "22 Sep 2026, 14:00 UTC" in page
    assert len(events(app, "meeting.create")) == 1


def test_editing_a_meeting(app, client, staff):
    client.post("/admin/meetings/new", data=meeting_form())
    (meeting,) = _meetings(app)
    form = _text(client.get(f"/admin/meetings/{meeting.id}/edit"))
    assert 'value="2026-09-22T10:00"' in form and '<option selected value="America/New_York">' in form
    changed = meeting_form(starts_at_local="2026-11-05T09:00", ends_at_local="", timezone="Europe/Zurich")
    client.post(f"/admin/meetings/{meeting.id}/edit", data=changed)
    (meeting,) = _meetings(app)
    assert meeting.starts_at == datetime(2026, 11, 5, 8, 0, tzinfo=UTC)  # CET is UTC+1 in November
    assert meeting.ends_at_local is None
    assert len(events(app, "meeting.update")) == 1


def test_the_common_time_zones_come_first(client, staff):
    page = client.get("/admin/meetings/new").get_data(as_text=True)
    common = re.search(r'<optgroup label="Common">(.*?)</optgroup>', page, re.S)[1]
    assert re.findall(r'value="([^"]+)"', common) == [
        "America/New_York",
        "Europe/Zurich",
        "Africa/Nairobi",
        "Asia/Bangkok",
        "Europe/Vienna",
    ]
    assert "Europe/Zurich (Geneva)" in page
    everything = re.search(r'<optgroup label="All time zones">(.*?)</optgroup>', page, re.S)[1]
    names = re.findall(r'value="([^"]+)"', everything)
    assert names == sorted(names) and "Pacific/Auckland" in names and "America/New_York" not in names


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": ""}, "This field is required."),
        ({"timezone": "America/Geneva"}, "Not a valid choice."),
        ({"timezone": ""}, "Not a valid choice."),
        ({"starts_at_local": ""}, "This field is required."),
        ({"starts_at_local": "22/09/2026 10:00"}, "Not a valid datetime value."),
        ({"ends_at_local": "2026-09-22T09:59"}, "The meeting ends before it starts."),
        ({"location": "New York\r\nUSA"}, "Use a single line."),
    ],
)
def test_meeting_validation(app, client, staff, fields, message):
    response = client.post("/admin/meetings/new", data=meeting_form(**fields))
    assert response.status_code == 200
    assert message in _text(response)
    assert _meetings(app) == []


def test_unknown_meeting_is_404(client, staff):
    assert client.get("/admin/meetings/999999/edit").status_code == 404
    assert client.get("/admin/meetings/99999999999999/edit").status_code == 404


# --- who may see these pages ---------------------------------------------------

PAGES = ["/admin/letters", "/admin/letters/new", "/admin/meetings", "/admin/meetings/new"]


@pytest.mark.parametrize("url", PAGES)
def test_members_get_403_and_anonymous_visitors_are_sent_to_sign_in(client, auth, member, url):
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    auth.login(member)
    assert client.get(url).status_code == 403
    assert client.post("/admin/letters/preview", data={"markdown": "x"}).status_code == 403
