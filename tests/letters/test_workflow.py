"""The workflow on the coordinators' pages: each move confirmed, refused moves, publishing changes, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaign.audit import AuditEvent
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services
from campaign.letters.services import LetterText
from tests.letters.test_admin_pages import _text, events, letter_row, make_letter

PATHS = {
    "draft": [],
    "review": ["review"],
    "open": ["review", "open"],
    "closed": ["review", "open", "closed"],
    "sent": ["review", "open", "closed", "sent"],
}


@pytest.fixture
def staff(auth, coordinator):
    auth.login(coordinator)
    return coordinator


def letter_at(app, status: str, **kwargs: object) -> str:
    """A letter moved (by the services, without an actor) to ``status``."""
    slug = make_letter(app, **kwargs)
    with app.app_context():
        letter = services.get_letter(slug)
        for step in PATHS[status]:
            services.transition(letter, step)
        db.session.commit()
    return slug


def _all_events(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))


def _revise(app, slug: str, body: str) -> None:
    with app.app_context():
        letter = services.get_letter(slug)
        services.save_revision(letter, LetterText(title=letter.title, body_markdown=body))
        db.session.commit()


# --- moves ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "to", "says"),
    [
        ("draft", "review", "Revision 1 goes to the other coordinators for review."),
        ("review", "draft", "goes back to its authors as a draft"),
        ("review", "open", "Revision 1 is <strong>published</strong>"),
        ("open", "closed", "No more signatures are accepted."),
        ("closed", "open", "The published text stays revision 1"),
        ("closed", "sent", "its text and settings become final"),
    ],
)
def test_the_confirmation_page_says_what_happens_and_changes_nothing(app, client, staff, status, to, says):
    slug = letter_at(app, status)
    before = _all_events(app)
    response = client.get(f"/admin/letters/{slug}/transition/{to}")
    assert response.status_code == 200
    page = _text(response)
    assert says in page
    assert "The move is recorded in the audit log under your name." in page
    assert letter_row(app, slug).status == status
    assert _all_events(app) == before


def test_a_letter_goes_through_the_whole_workflow(app, client, staff):
    slug = letter_at(app, "draft")
    overview = _text(client.get(f"/admin/letters/{slug}"))
    assert "Submit for review" in overview and "Open for signatures" not in overview
    for to, label in [("review", "In review"), ("open", "Open for signatures"), ("closed", "Closed"), ("sent", "Sent")]:
        response = client.post(f"/admin/letters/{slug}/transition/{to}", follow_redirects=True)
        assert response.request.path == f"/admin/letters/{slug}"
        assert label in _text(response)
        assert letter_row(app, slug).status == to
    moves = [(e.details["before"], e.details["after"], e.actor_id) for e in events(app, "letter.transition")]
    assert moves == [
        ("draft", "review", staff.id),
        ("review", "open", staff.id),
        ("open", "closed", staff.id),
        ("closed", "sent", staff.id),
    ]
    letter = letter_row(app, slug)
    assert letter.published_revision_id == letter.current_revision_id and letter.published_at is not None


def test_opening_publishes_the_current_revision(app, client, staff):
    slug = letter_at(app, "review")
    _revise(app, slug, "A better text.")
    assert "Revision 2 is <strong>published</strong>" in _text(client.get(f"/admin/letters/{slug}/transition/open"))
    client.post(f"/admin/letters/{slug}/transition/open")
    with app.app_context():
        letter = services.get_letter(slug)
        assert letter.published_revision.number == 2 and letter.is_public()
    page = _text(client.get(f"/admin/letters/{slug}"))
    assert "The public text is revision 2" in page
    assert 'href="/letters/' + slug + '"' in page  # the public page, once public


def test_opening_under_embargo_says_when_it_becomes_public(app, client, staff):
    embargo = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    slug = letter_at(app, "review", embargo_until=embargo)
    page = _text(client.get(f"/admin/letters/{slug}/transition/open"))
    assert "becomes public once the embargo ends" in page
    client.post(f"/admin/letters/{slug}/transition/open")
    with app.app_context():
        letter = services.get_letter(slug)
        assert letter.is_published and not letter.is_public()
    assert "Under embargo until" in _text(client.get(f"/admin/letters/{slug}"))


@pytest.mark.parametrize(
    ("status", "to"),
    [
        ("draft", "open"),
        ("draft", "closed"),
        ("draft", "sent"),
        ("review", "closed"),
        ("open", "draft"),
        ("open", "review"),
        ("open", "sent"),
        ("closed", "draft"),
        ("sent", "open"),
        ("sent", "draft"),
    ],
)
def test_moves_the_workflow_does_not_allow_are_refused(app, client, staff, status, to):
    slug = letter_at(app, status)
    for method in ("GET", "POST"):
        response = client.open(f"/admin/letters/{slug}/transition/{to}", method=method, follow_redirects=True)
        assert response.request.path == f"/admin/letters/{slug}"
        assert "cannot become" in _text(response)
    assert letter_row(app, slug).status == status
    assert events(app, "letter.transition") == []


def test_an_unknown_status_is_404(app, client, staff):
    slug = letter_at(app, "draft")
    assert client.get(f"/admin/letters/{slug}/transition/published").status_code == 404
    assert client.post(f"/admin/letters/{slug}/transition/published").status_code == 404


def test_opening_after_the_deadline_is_refused_with_the_reason(app, client, staff):
    slug = letter_at(app, "review", signature_deadline=utcnow() - timedelta(hours=1))
    assert "The signature deadline has passed" in _text(client.get(f"/admin/letters/{slug}/transition/open"))
    response = client.post(f"/admin/letters/{slug}/transition/open", follow_redirects=True)
    assert "The signature deadline has passed: move it before opening the letter." in _text(response)
    assert letter_row(app, slug).status == "review"
    assert events(app, "letter.transition") == []


# --- publishing changes --------------------------------------------------------


def test_changes_to_an_open_letter_wait_until_published(app, client, staff):
    slug = letter_at(app, "open")
    edit = {"title": "Open letter on civilians", "body_markdown": "The improved text.", "timezone": "UTC"}
    response = client.post(f"/admin/letters/{slug}/edit", data=edit, follow_redirects=True)
    assert "Saved revision 2. The public still reads revision 1 until you publish the changes." in _text(response)
    overview = _text(client.get(f"/admin/letters/{slug}"))
    assert "Revision 2 is newer and not yet published." in overview and "Publish changes" in overview

    confirm = _text(client.get(f"/admin/letters/{slug}/publish"))
    assert "The public text becomes revision 2 instead of revision 1." in confirm
    assert f"/admin/letters/{slug}/diff?from=1&amp;to=2" in client.get(f"/admin/letters/{slug}/publish").get_data(
        as_text=True
    )
    with app.app_context():
        assert services.get_letter(slug).published_revision.number == 1  # GET changed nothing

    response = client.post(f"/admin/letters/{slug}/publish", follow_redirects=True)
    assert "Revision 2 is now the published text." in _text(response)
    with app.app_context():
        assert services.get_letter(slug).published_revision.number == 2
    (event,) = events(app, "letter.publish_changes")
    assert (event.actor_id, event.details) == (staff.id, {"previous": 1})


@pytest.mark.parametrize("status", ["draft", "review", "open"])
def test_nothing_to_publish_is_refused(app, client, staff, status):
    slug = letter_at(app, status)
    assert "There is nothing to publish" in _text(client.get(f"/admin/letters/{slug}/publish"))
    response = client.post(f"/admin/letters/{slug}/publish", follow_redirects=True)
    assert "flash-error" in response.get_data(as_text=True)
    assert events(app, "letter.publish_changes") == []


def test_members_cannot_move_letters(app, client, auth, member):
    slug = letter_at(app, "draft")
    auth.login(member)
    assert client.get(f"/admin/letters/{slug}/transition/review").status_code == 403
    assert client.post(f"/admin/letters/{slug}/transition/review").status_code == 403
    assert letter_row(app, slug).status == "draft"
