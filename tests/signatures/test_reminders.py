"""The reminder follows the letter: whichever way its deadline changes (the edit form, the API,
a letter file) or it closes and opens again, one reminder job waits for the current deadline,
and no organisation is reminded twice."""

from __future__ import annotations

import os
from datetime import UTC, timedelta

import pytest
import sqlalchemy as sa
import yaml

from campaign.auth.models import Organisation
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.queue import Job, JobStatus
from campaign.signatures import invitations, services
from campaign.signatures.models import Invitation
from tests import factories
from tests.signatures.test_invitations import _invite, _member_organisations, _recipients, _run_due_reminders
from tests.signatures.test_member import TEXT, open_letter

REDIS_URL = os.environ.get("REDIS_URL")


def _reminder_jobs(app, status: str = JobStatus.QUEUED.value) -> list[tuple[object, str | None, str]]:
    """The reminder jobs in ``status``: (due at, the deadline they were scheduled for, message)."""
    with app.app_context():
        rows = db.session.scalars(
            sa.select(Job).where(Job.kind == invitations.REMIND_JOB, Job.status == status).order_by(Job.id)
        )
        return [(row.due_at, row.payload.get("deadline"), row.message) for row in rows]


def _open_letter_without_deadline(app) -> str:
    with app.app_context():
        letter = letters.create_letter(TEXT)
        letters.transition(letter, "review")
        letters.transition(letter, "open")
        db.session.commit()
        return letter.slug


def _edit_form(deadline) -> dict[str, str]:
    """The coordinator's edit form for a letter made from ``TEXT``, with a deadline in UTC."""
    return {
        "title": TEXT.title,
        "addressee": TEXT.addressee,
        "body_markdown": TEXT.body_markdown,
        "note": "",
        "signature_deadline": f"{deadline:%Y-%m-%dT%H:%M:%S}" if deadline else "",
        "embargo_until": "",
        "timezone": "UTC",
        "meeting": "",
    }


@pytest.fixture
def change_deadline(app, client, auth, coordinator, bearer, tmp_path):
    """``change_deadline(how, slug, deadline)``: as a coordinator would, on the letter's page
    (``form``), through the API (``api``) or by importing its file (``file``)."""

    def change(how: str, slug: str, deadline) -> None:
        if how == "form":
            auth.login(coordinator)
            response = client.post(f"/admin/letters/{slug}/edit", data=_edit_form(deadline), follow_redirects=True)
            assert "Settings saved." in response.get_data(as_text=True)
        elif how == "api":
            value = deadline.isoformat() if deadline else None
            response = client.patch(
                f"/api/v1/letters/{slug}", json={"signature_deadline": value}, headers=bearer(coordinator)
            )
            assert response.status_code == 200, response.get_data(as_text=True)
        else:
            meta = {"title": TEXT.title, "slug": slug, "language": "en", "status": "open", "addressee": TEXT.addressee}
            if deadline:
                meta["signature_deadline"] = f"{deadline:%Y-%m-%dT%H:%M:%SZ}"
            path = tmp_path / f"{slug}.md"
            path.write_text("---\n" + yaml.safe_dump(meta) + "---\n\n" + TEXT.body_markdown + "\n", encoding="utf-8")
            result = app.test_cli_runner().invoke(args=["letters", "import", str(path)])
            assert result.exit_code == 0 and "updated (settings updated)" in result.output, result.output

    return change


def _whole_seconds(value):
    return value.replace(microsecond=0)


@pytest.mark.parametrize("how", ["form", "api", "file"])
@pytest.mark.parametrize(
    ("before", "after"),
    [(timedelta(days=365), timedelta(days=3, minutes=1)), (None, timedelta(days=10))],
    ids=["moved-earlier", "set-after-the-invitations"],
)
def test_a_changed_deadline_moves_the_reminder(app, change_deadline, outbox, how, before, after):
    slug = open_letter(app, deadline=utcnow() + before) if before else _open_letter_without_deadline(app)
    [(a, _, a_email)] = _member_organisations(app, 1)
    _invite(app, slug, [a])
    assert len(_reminder_jobs(app)) == (1 if before else 0)
    deadline = _whole_seconds(utcnow() + after)

    change_deadline(how, slug, deadline)

    [(due, scheduled_for, _)] = _reminder_jobs(app)
    assert (due, scheduled_for) == (deadline - timedelta(days=3), deadline.isoformat())
    outbox.clear()
    _run_due_reminders(app)
    assert outbox.only()["To"] == a_email
    _run_due_reminders(app)
    assert len(outbox.messages()) == 1


def test_a_later_deadline_puts_the_reminder_back_and_replaces_the_old_job(app, client, change_deadline, outbox):
    slug = open_letter(app, deadline=utcnow() + timedelta(days=10))
    [(a, _, a_email)] = _member_organisations(app, 1)
    _invite(app, slug, [a])
    later, latest = (_whole_seconds(utcnow() + timedelta(days=n)) for n in (20, 30))

    change_deadline("form", slug, later)
    change_deadline("form", slug, latest)
    # Saved again unchanged: the job stays as it is.
    client.post(f"/admin/letters/{slug}/edit", data=_edit_form(latest))

    [(due, scheduled_for, _)] = _reminder_jobs(app)
    assert (due, scheduled_for) == (latest - timedelta(days=3), latest.isoformat())
    replaced = _reminder_jobs(app, JobStatus.FINISHED.value)
    assert len(replaced) == 2 and all(message.startswith("replaced by job") for *_, message in replaced)
    outbox.clear()
    _run_due_reminders(app)  # the replaced jobs are not run again, even when made due
    assert outbox.only()["To"] == a_email


def test_a_removed_deadline_drops_the_reminder(app, change_deadline, outbox):
    slug = open_letter(app)
    [(a, _, _)] = _member_organisations(app, 1)
    _invite(app, slug, [a])

    change_deadline("api", slug, None)

    assert _reminder_jobs(app) == []
    [(*_, message)] = _reminder_jobs(app, JobStatus.FINISHED.value)
    assert message == "dropped: no reminder is due for this letter now"
    outbox.clear()
    _run_due_reminders(app)
    assert outbox.messages() == []


def test_closing_drops_the_reminder_and_opening_again_brings_it_back(app, client, auth, coordinator, outbox):
    slug = open_letter(app)
    [(a, _, a_email)] = _member_organisations(app, 1)
    _invite(app, slug, [a])
    auth.login(coordinator)

    client.post(f"/admin/letters/{slug}/transition/closed")
    assert _reminder_jobs(app) == []
    client.post(f"/admin/letters/{slug}/transition/open")

    with app.app_context():
        deadline = letters.get_letter(slug).signature_deadline
    [(due, _, _)] = _reminder_jobs(app)
    assert due == deadline - timedelta(days=3)
    outbox.clear()
    _run_due_reminders(app)
    assert outbox.only()["To"] == a_email


def test_no_reminder_job_while_nobody_is_left_to_remind(app, database):
    slug = _open_letter_without_deadline(app)

    def move_deadline(days: int) -> None:
        with app.app_context():
            letter = letters.get_letter(slug)
            deadline = utcnow() + timedelta(days=days)
            letters.update_settings(
                letter, signature_deadline=deadline, embargo_until=None, meeting=None, members_only=False
            )
            db.session.commit()

    move_deadline(10)
    assert _reminder_jobs(app) == []  # nobody invited
    [(a, _, _)] = _member_organisations(app, 1)
    _invite(app, slug, [a])
    assert len(_reminder_jobs(app)) == 1
    with app.app_context():
        db.session.execute(sa.update(Invitation).values(reminded_at=utcnow()))
        db.session.commit()
    move_deadline(20)
    assert _reminder_jobs(app) == []  # everyone was reminded


def test_an_organisation_reminded_by_another_job_meanwhile_is_not_reminded_again(app, database, outbox, monkeypatch):
    slug = open_letter(app)
    [(a, _, _)] = _member_organisations(app, 1)
    _invite(app, slug, [a])
    signature_of = services.signature_of

    def reminded_meanwhile(letter, organisation):
        # Another worker, running a reminder job for the same letter, reminds it between this
        # job's reading of the invitations and its writing.
        db.session.execute(sa.update(Invitation).values(reminded_at=utcnow()))
        return signature_of(letter, organisation)

    monkeypatch.setattr(invitations, "signature_of", reminded_meanwhile)
    outbox.clear()
    with app.app_context():
        letter = letters.get_letter(slug)
        assert invitations.send_reminders(letter.id, letter.signature_deadline.astimezone(UTC).isoformat()) == 0
        db.session.commit()
        services.dispatch_after_commit()
    assert outbox.messages() == []


def test_organisations_no_one_represents_any_more_are_not_counted_as_reminded(app, database, outbox):
    slug = open_letter(app)
    (a, _, a_email), (b, _, _) = _member_organisations(app, 2)
    _invite(app, slug, [a, b])
    with app.app_context():  # b's representative leaves
        for rep in db.session.get(Organisation, b).users:
            rep.active = False
        db.session.commit()
        letter = letters.get_letter(slug)
        outbox.clear()
        assert invitations.send_reminders(letter.id, letter.signature_deadline.isoformat()) == 1
        db.session.commit()
        services.dispatch_after_commit()
        reminded = dict(db.session.execute(sa.select(Invitation.organisation_id, Invitation.reminded_at)).all())
        assert reminded[a] is not None and reminded[b] is None
    assert _recipients(outbox) == [a_email]


@pytest.mark.redis
@pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set")
def test_a_replaced_reminder_is_taken_off_the_redis_queue(separate_app):
    from rq.job import Job as RQJob

    app = separate_app(REDIS_URL=REDIS_URL, QUEUE_MODE="redis")
    redis = app.extensions["redis"]
    redis.flushdb()
    with app.test_request_context():
        letter = letters.create_letter(TEXT, signature_deadline=utcnow() + timedelta(days=10))
        letters.transition(letter, "review")
        letters.transition(letter, "open")
        org = factories.organisation()
        factories.user("member", organisation_=org)
        invitations.invite(letter, [org])
        db.session.commit()
        services.dispatch_after_commit()
        first = db.session.scalar(sa.select(Job.rq_job_id).where(Job.kind == invitations.REMIND_JOB))
        assert RQJob.exists(first, connection=redis)

        letters.update_settings(
            letter,
            signature_deadline=utcnow() + timedelta(days=20),
            embargo_until=None,
            meeting=None,
            members_only=False,
        )
        db.session.commit()
        services.dispatch_after_commit()

        queued = db.session.scalars(
            sa.select(Job.rq_job_id).where(Job.kind == invitations.REMIND_JOB, Job.status == JobStatus.QUEUED.value)
        ).all()
        assert len(queued) == 1 and queued[0] != first
        assert RQJob.exists(queued[0], connection=redis) and not RQJob.exists(first, connection=redis)
    redis.flushdb()
