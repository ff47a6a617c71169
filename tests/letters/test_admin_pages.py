"""Coordinators' letter pages: list and search, drafting, revisions on every save, preview, diff."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from campaign.audit import AuditEvent
from campaign.extensions import db
from campaign.letters import services
from campaign.letters.models import Letter, Revision
from campaign.letters.services import LetterText

BODY = "We call on all States to **protect civilians** and to act *without delay*."


@pytest.fixture
def staff(auth, coordinator):
    auth.login(coordinator)
    return coordinator


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def make_letter(app, title: str = "Open letter on civilians", body: str = BODY, **kwargs: object) -> str:
    with app.app_context():
        letter = services.create_letter(LetterText(title=title, body_markdown=body), **kwargs)
        db.session.commit()
        return letter.slug


def revisions_of(app, slug: str, language: str | None = None) -> list[Revision]:
    with app.app_context():
        letter = services.get_letter(slug)
        found = services.revisions(letter, language)
        db.session.expunge_all()
        return found


def letter_row(app, slug: str) -> Letter | None:
    with app.app_context():
        letter = services.get_letter(slug)
        db.session.expunge_all()
        return letter


def events(app, action: str) -> list[AuditEvent]:
    """Events recorded by a signed-in user (fixtures record theirs without an actor)."""
    with app.app_context():
        query = sa.select(AuditEvent).where(AuditEvent.action == action, AuditEvent.actor_id.is_not(None))
        found = list(db.session.scalars(query.order_by(AuditEvent.id)))
        db.session.expunge_all()
        return found


def letter_form(**fields: str) -> dict[str, str]:
    form = {
        "title": "Open letter on the veto",
        "slug": "",
        "language": "en",
        "addressee": "To Heads of State and Government\nNew York",
        "body_markdown": BODY,
        "note": "",
        "signature_deadline": "",
        "embargo_until": "",
        "timezone": "UTC",
        "meeting": "",
        "save": "1",
    }
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}


# --- list and search -----------------------------------------------------------


def test_list_searches_titles_and_addresses_and_filters_by_status(app, client, staff):
    make_letter(app, "Protect civilians in Sudan")
    make_letter(app, "Restrain the veto", slug="veto-restraint")
    reviewed = make_letter(app, "Fund humanitarian access")
    with app.app_context():
        services.transition(services.get_letter(reviewed), "review")
        db.session.commit()

    page = _text(client.get("/admin/letters"))
    for title in ("Protect civilians in Sudan", "Restrain the veto", "Fund humanitarian access"):
        assert title in page
    assert "In review" in page and "Draft" in page

    by_title = _text(client.get("/admin/letters?q=sudan"))
    assert "Protect civilians in Sudan" in by_title and "Restrain the veto" not in by_title
    by_slug = _text(client.get("/admin/letters?q=veto-restr"))
    assert "Restrain the veto" in by_slug and "Sudan" not in by_slug
    in_review = _text(client.get("/admin/letters?status=review"))
    assert "Fund humanitarian access" in in_review and "Restrain the veto" not in in_review
    assert "No letters match." in _text(client.get("/admin/letters?q=100%25_nothing"))


def test_list_pages(app, client, staff, monkeypatch):
    monkeypatch.setattr("campaign.letters.routes.PER_PAGE", 2)
    for n in range(3):
        make_letter(app, f"Letter number {n}")
    assert "Page 1 of 2" in _text(client.get("/admin/letters"))
    assert "Page 2 of 2" in _text(client.get("/admin/letters?page=2"))
    assert client.get("/admin/letters?page=99999999999").status_code == 200


# --- create and edit -----------------------------------------------------------


def test_create_saves_revision_one_with_times_in_utc(app, client, staff):
    response = client.post(
        "/admin/letters/new",
        data=letter_form(
            language="fr",
            signature_deadline="2026-10-01T18:00",
            embargo_until="2026-09-20T09:30",
            timezone="Europe/Zurich",
            note="First draft",
        ),
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/letters/open-letter-on-the-veto"
    letter = letter_row(app, "open-letter-on-the-veto")
    assert letter.language == "fr" and letter.status == "draft"
    assert letter.signature_deadline == datetime(2026, 10, 1, 16, 0, tzinfo=UTC)  # CEST is UTC+2
    assert letter.embargo_until == datetime(2026, 9, 20, 7, 30, tzinfo=UTC)
    (revision,) = revisions_of(app, letter.slug)
    assert (revision.number, revision.note, revision.author_id) == (1, "First draft", staff.id)
    assert revision.addressee == "To Heads of State and Government\nNew York"
    assert "<strong>protect civilians</strong>" in revision.body_html
    assert [e.actor_id for e in events(app, "letter.create")] == [staff.id]
    page = _text(client.get(response.headers["Location"]))
    assert "Drafted 'Open letter on the veto' as revision 1." in page


def test_create_with_a_meeting(app, client, staff):
    with app.app_context():
        meeting = services.save_meeting(
            services.MeetingData("High-level week", datetime(2026, 9, 22, 10), "America/New_York", "New York")
        )
        db.session.commit()
        meeting_id = meeting.id
    assert "High-level week" in _text(client.get("/admin/letters/new"))
    client.post("/admin/letters/new", data=letter_form(meeting=str(meeting_id)))
    assert letter_row(app, "open-letter-on-the-veto").meeting_id == meeting_id


def test_an_arabic_title_gets_a_usable_address(app, client, staff):
    client.post("/admin/letters/new", data=letter_form(title="رسالة مفتوحة", language="ar"))
    assert letter_row(app, "letter").language == "ar"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": ""}, "This field is required."),
        ({"title": "Two\nlines"}, "Use a single line."),
        ({"body_markdown": "   "}, "This field is required."),
        ({"slug": "Not A Slug"}, "Use a-z, 0-9 and single hyphens."),
        ({"slug": "taken"}, "The address 'taken' is taken."),
        ({"slug": "new"}, "The address 'new' is taken."),
        ({"language": "de"}, "Not a valid choice."),
        ({"timezone": "Mars/Olympus_Mons"}, "Not a valid choice."),
        ({"signature_deadline": "1 October"}, "Not a valid datetime value."),
        ({"body_markdown": "x" * 200_001}, "Field cannot be longer than 200000 characters."),
    ],
)
def test_create_validation(app, client, staff, fields, message):
    make_letter(app, "Already here", slug="taken")
    response = client.post("/admin/letters/new", data=letter_form(**fields))
    assert response.status_code == 200
    assert message in _text(response)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Letter)) == 1


def _edit_form(app, slug: str, **fields: str) -> dict[str, str]:
    letter = letter_row(app, slug)
    (latest, *_) = revisions_of(app, slug)
    form = letter_form(title=latest.title, addressee=latest.addressee, body_markdown=latest.body_markdown)
    del form["slug"], form["language"]
    form["meeting"] = str(letter.meeting_id or "")
    form.update(fields)
    return form


def test_every_save_makes_a_revision_and_an_unchanged_save_none(app, client, staff):
    slug = make_letter(app)
    page = _text(client.get(f"/admin/letters/{slug}/edit"))
    assert BODY in page and "Saving makes revision 2 if the text changed." in page

    response = client.post(f"/admin/letters/{slug}/edit", data=_edit_form(app, slug), follow_redirects=True)
    assert "The text is unchanged: no new revision was saved." in _text(response)
    assert [r.number for r in revisions_of(app, slug)] == [1]

    changed = _edit_form(app, slug, body_markdown=BODY + "\n\nA second paragraph.", note="Adds a paragraph")
    response = client.post(f"/admin/letters/{slug}/edit", data=changed, follow_redirects=True)
    assert "Saved revision 2." in _text(response)
    latest = revisions_of(app, slug)[0]
    assert (latest.number, latest.note, latest.author_id) == (2, "Adds a paragraph", staff.id)
    client.post(f"/admin/letters/{slug}/edit", data=_edit_form(app, slug, title="A new title"))
    assert [r.number for r in revisions_of(app, slug)] == [3, 2, 1]
    assert [e.details["revision"] for e in events(app, "letter.revise")] == [2, 3]


def test_edit_settings_alone_makes_no_revision(app, client, staff):
    slug = make_letter(app)
    form = _edit_form(app, slug, signature_deadline="2026-09-22T10:00", timezone="America/New_York")
    response = client.post(f"/admin/letters/{slug}/edit", data=form, follow_redirects=True)
    page = _text(response)
    assert "The text is unchanged" in page and "Settings saved." in page
    assert letter_row(app, slug).signature_deadline == datetime(2026, 9, 22, 14, 0, tzinfo=UTC)
    assert len(revisions_of(app, slug)) == 1
    (event,) = events(app, "letter.settings")
    assert event.details == {"signature_deadline": "2026-09-22 14:00:00+00:00"}
    # The edit form shows the stored time back in UTC, the default zone.
    assert 'value="2026-09-22T14:00"' in _text(client.get(f"/admin/letters/{slug}/edit"))


def test_members_only_is_set_on_the_form_shown_and_audited(app, client, staff):
    response = client.post("/admin/letters/new", data=letter_form(members_only="y"))
    slug = response.headers["Location"].rsplit("/", 1)[1]
    assert letter_row(app, slug).members_only is True
    assert "Member organisations only: no public sign-on form" in _text(client.get(f"/admin/letters/{slug}"))
    edit = _text(client.get(f"/admin/letters/{slug}/edit"))
    assert re.search(r'<input aria-describedby="members_only-help" checked id="members_only"', edit)

    response = client.post(f"/admin/letters/{slug}/edit", data=_edit_form(app, slug), follow_redirects=True)
    assert "Settings saved." in _text(response)
    assert letter_row(app, slug).members_only is False
    assert "organisations outside the coalition on the public form" in _text(client.get(f"/admin/letters/{slug}"))
    (event,) = events(app, "letter.settings")
    assert (event.actor_id, event.details) == (staff.id, {"members_only": "False"})
    client.post(f"/admin/letters/{slug}/edit", data=_edit_form(app, slug, members_only="y"))
    assert [e.details for e in events(app, "letter.settings")] == [{"members_only": "False"}, {"members_only": "True"}]
    assert len(revisions_of(app, slug)) == 1


def test_a_refused_save_changes_nothing(app, client, staff):
    slug = make_letter(app)
    form = _edit_form(app, slug, body_markdown="Changed\x00text", signature_deadline="2026-09-22T10:00")
    response = client.post(f"/admin/letters/{slug}/edit", data=form)
    assert "The text contains a NUL character." in _text(response)
    assert len(revisions_of(app, slug)) == 1
    assert letter_row(app, slug).signature_deadline is None


def test_a_sent_letter_cannot_be_edited(app, client, staff):
    slug = make_letter(app)
    with app.app_context():
        letter = services.get_letter(slug)
        for step in ("review", "open", "closed", "sent"):
            services.transition(letter, step)
        db.session.commit()
    response = client.post(f"/admin/letters/{slug}/edit", data=_edit_form(app, slug, body_markdown="Changed"))
    assert response.headers["Location"] == f"/admin/letters/{slug}"
    assert "its text and settings are final" in _text(client.get(response.headers["Location"]))
    assert len(revisions_of(app, slug)) == 1


def test_unknown_letter_is_404(client, staff):
    for url in ("/admin/letters/nope", "/admin/letters/nope/edit", "/admin/letters/nope/revisions"):
        assert client.get(url).status_code == 404


# --- preview -------------------------------------------------------------------

UNSAFE = 'Hello **world**<script>alert(1)</script> <a href="https://example.org" onclick="steal()">link</a>'


def test_preview_returns_sanitised_html_and_what_was_removed(client, staff):
    response = client.post("/admin/letters/preview", data={"markdown": UNSAFE})
    assert response.status_code == 200 and response.is_json
    assert "<strong>world</strong>" in response.json["html"]
    assert "script" not in response.json["html"] and "onclick" not in response.json["html"]
    assert response.json["removed"] == ["<script> element", "onclick attribute"]

    clean = client.post("/admin/letters/preview", data={"markdown": "70<sup>th</sup> *one*"}).json
    assert clean == {"html": "<p>70<sup>th</sup> <em>one</em></p>", "removed": []}


def test_preview_refuses_a_text_too_long(client, staff):
    response = client.post("/admin/letters/preview", data={"markdown": "x" * (services.MAX_BODY + 1)})
    assert response.status_code == 413 and "longer than" in response.json["error"]


def test_preview_button_works_without_javascript_and_saves_nothing(app, client, staff):
    response = client.post("/admin/letters/new", data=letter_form(body_markdown=UNSAFE, save=None, preview="1"))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Hello <strong>world</strong>" in page
    assert "<script>alert" not in page and 'onclick="steal()"' not in page
    assert "Removed from the preview:</strong> &lt;script&gt; element, onclick attribute." in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Letter)) == 0


def test_edit_page_opens_on_a_preview_and_loads_the_script(app, client, staff):
    slug = make_letter(app)
    page = client.get(f"/admin/letters/{slug}/edit").get_data(as_text=True)
    assert "<strong>protect civilians</strong>" in page
    assert '<script src="/static/js/preview.js" defer></script>' in page
    assert 'data-preview-url="/admin/letters/preview"' in page
    assert "onclick" not in page and "<script>" not in page  # CSP: no inline script or handler


def test_preview_takes_the_csrf_token_from_a_header(separate_app):
    csrf_app = separate_app(WTF_CSRF_ENABLED=True)
    client = csrf_app.test_client()
    assert client.post("/admin/letters/preview", data={"markdown": "x"}).status_code == 400
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/login").get_data(as_text=True))[1]
    response = client.post("/admin/letters/preview", data={"markdown": "x"}, headers={"X-CSRFToken": token})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")  # past CSRF


# --- history and diff ----------------------------------------------------------


def _revise(app, slug: str, *bodies: str, note: str = "") -> None:
    with app.app_context():
        letter = services.get_letter(slug)
        for body in bodies:
            services.save_revision(letter, LetterText(title=letter.title, body_markdown=body, note=note))
        db.session.commit()


def test_revision_history_lists_author_note_and_the_published_one(app, client, staff):
    slug = make_letter(app)
    _revise(app, slug, BODY + " Now.", note="Adds urgency")
    with app.app_context():
        letter = services.get_letter(slug)
        services.transition(letter, "review")
        services.transition(letter, "open")
        db.session.commit()
    _revise(app, slug, BODY + " Now!")
    page = _text(client.get(f"/admin/letters/{slug}/revisions"))
    rows = re.findall(r"<tr>\s*<th scope=\"row\">(.*?)</th>.*?<td>(.*?)</td>\s*<td>(.*?)</td>", page, re.S)
    assert [re.sub(r"<[^>]+>", "", number).split() for number, _, _ in rows] == [
        ["3", "latest"],
        ["2", "published"],
        ["1"],
    ]
    assert "Adds urgency" in page
    assert "Changes since 2" in page and "Changes since 1" in page


def test_diff_marks_removed_and_added_words(app, client, staff):
    slug = make_letter(app, body="We urge all States to act now.")
    _revise(app, slug, "We urge all Council members to act without delay.")
    page = client.get(f"/admin/letters/{slug}/diff?from=1&to=2").get_data(as_text=True)
    assert "<del>States</del><ins>Council members</ins>" in page
    assert "<del>now.</del><ins>without delay.</ins>" in page
    assert "4 words added, 2 removed" in page
    # Any two revisions, either way round; by default the latest against the one before.
    backwards = client.get(f"/admin/letters/{slug}/diff?from=2&to=1").get_data(as_text=True)
    assert "<del>Council members</del><ins>States</ins>" in backwards
    assert "<del>States</del>" in client.get(f"/admin/letters/{slug}/diff").get_data(as_text=True)


def test_diff_of_a_long_letter_folds_what_did_not_change(app, client, staff):
    paragraphs = [f"Paragraph {n} says something the coalition agreed on." for n in range(1, 41)]
    slug = make_letter(app, body="\n\n".join(paragraphs))
    changed = paragraphs.copy()
    changed[19] = "Paragraph 20 says something new."
    _revise(app, slug, "\n\n".join(changed))
    page = client.get(f"/admin/letters/{slug}/diff?from=1&to=2").get_data(as_text=True)
    assert "<del>the coalition agreed on.</del><ins>new.</ins>" in page
    assert page.count('<details class="diff-folded">') == 2
    context = page.split("<del>the coalition")[0].rsplit("</details>", 1)[1]
    assert "Paragraph 18 says" in context and "Paragraph 19 says" in context
    assert "<summary>18 unchanged lines</summary>" in page  # the title, paragraphs 1 to 17
    assert page.count("<summary>18 unchanged lines</summary>") == 2  # and paragraphs 23 to 40
    whole = client.get(f"/admin/letters/{slug}/diff?from=1&to=2&full=1").get_data(as_text=True)
    assert "diff-folded" not in whole and "Paragraph 1 says" in whole


@pytest.mark.parametrize("query", ["from=1&to=9", "from=0&to=1", "language=de", "language=fr"])
def test_diff_of_revisions_that_do_not_exist_is_404(app, client, staff, query):
    slug = make_letter(app)
    assert client.get(f"/admin/letters/{slug}/diff?{query}").status_code == 404
