"""Coordinators invite member organisations; the reminder job emails those that have not signed."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaign.auth.models import Organisation, User
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.letters.models import Letter
from campaign.queue import Job, JobStatus
from campaign.signatures import invitations, services
from campaign.signatures.models import Invitation
from tests import factories
from tests.signatures.test_member import open_letter


def _member_organisations(app, n: int) -> list[tuple[int, str, str]]:
    """``n`` member organisations, each with a representative: (organisation id, name, email)."""
    made = []
    with app.app_context():
        for _ in range(n):
            org = factories.organisation()
            rep = factories.user("member", organisation_=org)
            made.append((org.id, org.name, rep.email))
    return made


def _invite(app, slug: str, org_ids: list[int]) -> int:
    with app.app_context():
        letter = letters.get_letter(slug)
        orgs = [db.session.get(Organisation, i) for i in org_ids]
        invited = invitations.invite(letter, orgs).invited
        db.session.commit()
        services.dispatch_after_commit()
        return len(invited)


def _run_due_reminders(app) -> None:
    """Make the reminder due now and run the worker once, as ``flask worker --burst`` does."""
    with app.app_context():
        db.session.execute(
            sa.update(Job).where(Job.kind == invitations.REMIND_JOB).values(due_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["worker", "--burst"])
    assert result.exit_code == 0, result.output


def _recipients(outbox) -> list[str]:
    return sorted(m["To"] for m in outbox.messages())


def test_coordinator_invites_from_the_letter_page(app, client, auth, coordinator, outbox):
    slug = open_letter(app)
    (a, a_name, a_email), (b, b_name, b_email) = _member_organisations(app, 2)
    auth.login(coordinator)
    assert "Invite member organisations" in client.get(f"/admin/letters/{slug}").get_data(as_text=True)
    page = client.get(f"/admin/letters/{slug}/invite").get_data(as_text=True)
    assert a_name in page and b_name in page

    response = client.post(f"/admin/letters/{slug}/invite", data={"organisations": [str(a)]}, follow_redirects=True)
    assert "Invited 1 organisation." in response.get_data(as_text=True)
    message = outbox.only()
    assert message["To"] == a_email and "Invitation to sign" in message["Subject"]
    assert f"http://localhost/sign/{slug}" in factories.text_of(message)

    # "All members" invites the rest, and nobody twice.
    response = client.post(f"/admin/letters/{slug}/invite", data={"all_members": "y"}, follow_redirects=True)
    assert "Invited 1 organisation." in response.get_data(as_text=True)
    assert _recipients(outbox) == sorted([a_email, b_email])
    with app.app_context():
        letter = letters.get_letter(slug)
        invited = db.session.scalars(sa.select(Invitation.organisation_id).where(Invitation.letter_id == letter.id))
        assert sorted(invited) == sorted([a, b])
    assert "Every member organisation has been invited" in client.get(f"/admin/letters/{slug}/invite").get_data(
        as_text=True
    )
    response = client.post(f"/admin/letters/{slug}/invite", data={"all_members": "y"}, follow_redirects=True)
    assert "Every member organisation has already been invited." in response.get_data(as_text=True)


def test_organisations_without_a_representative_are_named_and_stay_to_be_invited(
    app, client, auth, coordinator, outbox
):
    slug = open_letter(app)
    (a, _, a_email), (b, _, b_email) = _member_organisations(app, 2)
    with app.app_context():
        nobody = factories.organisation(name="Coalition Without Staff")
        c = nobody.id
    auth.login(coordinator)
    page = client.get(f"/admin/letters/{slug}/invite").get_data(as_text=True)
    assert "Coalition Without Staff (no representative yet)" in page

    response = client.post(
        f"/admin/letters/{slug}/invite", data={"organisations": [str(a), str(b), str(c)]}, follow_redirects=True
    )
    page = response.get_data(as_text=True)
    assert "Invited 2 organisations." in page
    assert (
        "Not invited, as no one represents it yet: Coalition Without Staff. An admin can add a representative on "
        "its page under Organisations; then invite it here." in page
    )
    assert f'value="{c}"' in page and f'value="{a}"' not in page  # still offered, unlike those invited
    assert _recipients(outbox) == sorted([a_email, b_email])
    with app.app_context():
        letter = letters.get_letter(slug)
        invited = db.session.scalars(sa.select(Invitation.organisation_id).where(Invitation.letter_id == letter.id))
        assert sorted(invited) == sorted([a, b])

    # "All members" names it again; once it has a representative, it is invited.
    response = client.post(f"/admin/letters/{slug}/invite", data={"all_members": "y"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Not invited, as no one represents it yet: Coalition Without Staff." in page
    assert not re.search(r"Invited \d+ organisation", page)
    with app.app_context():
        c_email = factories.user("member", organisation_=db.session.get(Organisation, c)).email
    outbox.clear()
    response = client.post(f"/admin/letters/{slug}/invite", data={"organisations": [str(c)]}, follow_redirects=True)
    assert "Invited 1 organisation." in response.get_data(as_text=True)
    assert outbox.only()["To"] == c_email


def test_inviting_again_says_who_was_already_invited_or_has_signed(app, client, auth, coordinator, outbox):
    slug = open_letter(app)
    (a, a_name, _), (b, b_name, _), (c, c_name, _) = _member_organisations(app, 3)
    _invite(app, slug, [a, b])
    with app.app_context():  # c has signed already
        rep = db.session.scalar(sa.select(User).where(User.organisation_id == c))
        services.sign_as_member(letters.get_letter(slug), rep, "Signer")
        db.session.commit()
    auth.login(coordinator)
    outbox.clear()

    response = client.post(
        f"/admin/letters/{slug}/invite", data={"organisations": [str(a), str(b), str(c)]}, follow_redirects=True
    )
    page = response.get_data(as_text=True)
    first, second = sorted([a_name, b_name])
    assert f"{first} and {second} were already invited: nobody is invited twice." in page
    assert f"{c_name} has already signed." in page
    assert not re.search(r"Invited \d+ organisation", page)
    assert outbox.messages() == []


def test_invitations_are_idempotent_and_skip_signed_organisations(app, database, outbox):
    slug = open_letter(app)
    (a, _, a_email), (b, _, _) = _member_organisations(app, 2)
    with app.app_context():  # b has signed already
        letter = letters.get_letter(slug)
        rep = db.session.scalar(sa.select(User).where(User.organisation_id == b))
        services.sign_as_member(letter, rep, "Signer")
        db.session.commit()
    assert _invite(app, slug, [a, b]) == 1
    assert _invite(app, slug, [a, b]) == 0
    assert _recipients(outbox) == [a_email]
    with app.app_context():  # one reminder job for the deadline, however often they invite
        assert db.session.scalar(sa.select(sa.func.count()).where(Job.kind == invitations.REMIND_JOB)) == 1


def test_the_reminder_goes_to_invited_organisations_that_have_not_signed(app, database, outbox):
    slug = open_letter(app, deadline=utcnow() + timedelta(days=10))
    (a, _, a_email), (b, _, _) = _member_organisations(app, 2)
    _invite(app, slug, [a, b])
    with app.app_context():
        job = db.session.scalar(sa.select(Job).where(Job.kind == invitations.REMIND_JOB))
        letter = letters.get_letter(slug)
        assert job.due_at == letter.signature_deadline - timedelta(days=3)
        rep = db.session.scalar(sa.select(User).where(User.organisation_id == b))
        services.sign_as_member(letter, rep, "Signer")
        db.session.commit()
    outbox.clear()
    _run_due_reminders(app)
    message = outbox.only()
    assert message["To"] == a_email and message["Subject"].startswith("Reminder:")
    with app.app_context():
        reminded = dict(db.session.execute(sa.select(Invitation.organisation_id, Invitation.reminded_at)).all())
        assert reminded[a] is not None and reminded[b] is None
        assert db.session.scalar(sa.select(Job.status).where(Job.kind == invitations.REMIND_JOB)) == JobStatus.FINISHED
        # Run by hand again: reminded_at keeps it from reminding twice.
        letter = letters.get_letter(slug)
        assert invitations.send_reminders(letter.id, letter.signature_deadline.isoformat()) == 0
    assert len(outbox.messages()) == 1


def test_the_reminder_does_nothing_when_everyone_signed(app, database, outbox):
    slug = open_letter(app)
    [(a, _, _)] = _member_organisations(app, 1)
    _invite(app, slug, [a])
    with app.app_context():
        rep = db.session.scalar(sa.select(User).where(User.organisation_id == a))
        services.sign_as_member(letters.get_letter(slug), rep, "Signer")
        db.session.commit()
    outbox.clear()
    _run_due_reminders(app)
    assert outbox.messages() == []


def test_the_reminder_does_nothing_once_the_letter_closed(app, database, outbox):
    slug = open_letter(app)
    [(a, _, _)] = _member_organisations(app, 1)
    _invite(app, slug, [a])
    with app.app_context():
        letters.transition(letters.get_letter(slug), "closed")
        db.session.commit()
    outbox.clear()
    _run_due_reminders(app)
    assert outbox.messages() == []


def test_a_moved_deadline_reschedules_the_reminder(app, database, outbox):
    slug = open_letter(app)
    [(a, _, _)] = _member_organisations(app, 1)
    _invite(app, slug, [a])
    later = utcnow() + timedelta(days=20)
    with app.app_context():
        db.session.execute(sa.update(Letter).where(Letter.slug == slug).values(signature_deadline=later))
        db.session.commit()
    outbox.clear()
    _run_due_reminders(app)  # the old reminder finds the deadline moved
    assert outbox.messages() == []
    with app.app_context():
        queued = db.session.scalars(
            sa.select(Job).where(Job.kind == invitations.REMIND_JOB, Job.status == JobStatus.QUEUED.value)
        ).all()
        assert [j.payload["deadline"] for j in queued] == [later.isoformat()]


def test_organisations_invited_within_the_reminder_period_are_not_reminded(app, database, outbox):
    slug = open_letter(app, deadline=utcnow() + timedelta(days=2))
    [(a, _, _)] = _member_organisations(app, 1)
    _invite(app, slug, [a])
    outbox.clear()
    _run_due_reminders(app)
    assert outbox.messages() == []


def test_invitations_need_an_open_letter(app, ctx):
    slug = open_letter(app)
    letter = letters.get_letter(slug)
    letters.transition(letter, "closed")
    org = factories.organisation()

    with pytest.raises(services.SignatureError, match="not open"):
        invitations.invite(letter, [org])
