"""A mailing from draft to finished on the outbox backend, with inline jobs."""

from __future__ import annotations

import pytest

from campaign import queue
from campaign.auth.models import User
from campaign.extensions import db
from campaign.mailings import sending, services
from campaign.mailings.models import Delivery, Mailing
from tests.factories import text_of
from tests.mailings.world import approved, draft, make_world


def test_an_approved_mailing_reaches_each_contact_once_in_their_language(app, ctx, outbox) -> None:
    world = make_world(app, suppressed=1)
    mailing_id = approved(app, world)
    mailing = db.session.get(Mailing, mailing_id)
    row = services.request_send(mailing, {}, actor=db.session.get(User, world.author.id))
    db.session.commit()
    queue.dispatch(row)
    progress = sending.progress(mailing_id)
    assert progress.counts["sent"] == 5 and progress.counts["suppressed"] == 1, progress
    assert db.session.get(Mailing, mailing_id).status == "finished"
    messages = outbox.messages()
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(
        d.email for d in db.session.query(Delivery).filter_by(status="sent")
    )
    french = next(m for m in messages if "dupont" in str(m["To"]))
    assert "Excellence," in text_of(french)
    assert "Lettre ouverte" in french["Subject"]
    chinese = next(m for m in messages if "wang" in str(m["To"]))
    assert "Open letter" in chinese["Subject"]  # no Chinese translation: the letter's own language
    assert [p.get_filename() for p in chinese.iter_attachments()] == [f"{world.letter_slug}-en.pdf"]


def test_the_author_cannot_approve(app, ctx) -> None:
    world = make_world(app)
    mailing = db.session.get(Mailing, draft(app, world))
    with pytest.raises(services.MailingError, match="other than its author"):
        services.approve(mailing, db.session.get(User, world.author.id))


def test_a_coordinator_who_edited_it_cannot_approve_it(app, ctx) -> None:
    world = make_world(app)
    mailing = db.session.get(Mailing, draft(app, world))
    editor = db.session.get(User, world.approver.id)
    data = services.MailingData(letter=mailing.letter, subject="Changed: {{ letter.title }}",
                                introduction=mailing.introduction, name=mailing.name,
                                rate_per_minute=mailing.rate_per_minute)  # fmt: skip
    services.update_mailing(mailing, data, actor=editor)
    with pytest.raises(services.MailingError, match="You changed this mailing"):
        services.approve(mailing, editor)
