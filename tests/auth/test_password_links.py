"""Password links: asking for one, using it once, and links that expire or were forged."""

import html
import os
import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from campaign import queue
from campaign.audit import AuditEvent
from campaign.auth import services
from campaign.auth.models import User
from campaign.extensions import db
from campaign.queue import Job
from campaign.worker import build_worker
from tests import factories

NEW_PASSWORD = "a fresh passphrase for spring"
SENT = "If that address has an account, a link to choose a new password is on its way."
REFUSED = "That link has expired or was already used. Ask for a new one."


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _link_path(message) -> str:
    found = re.search(r"https?://[^\s/]+(/password/reset/[A-Za-z0-9_.\-]+)", factories.text_of(message))
    assert found, factories.text_of(message)
    return found.group(1)


def _worker_runs(app) -> int:
    """What the polling ``flask worker`` does: run the due jobs, outside any request."""
    with app.app_context():
        return queue.run_due()


def _request_link(client, outbox, email: str) -> str:
    client.post("/password/forgot", data={"email": email})
    _worker_runs(client.application)
    return _link_path(outbox.only())


def _link_jobs(app) -> list[Job]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(Job).where(Job.kind == services.PASSWORD_LINK_JOB).order_by(Job.id)))
        db.session.expunge_all()
        return found


def _token_path(app, monkeypatch, user_id: int, kind: str, age: int) -> str:
    """A link of ``kind`` for the user as if it had been made ``age`` seconds ago."""
    made_at = int(time.time()) - age
    with monkeypatch.context() as patch, app.test_request_context():
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: made_at)
        token = services.password_token(db.session.get(User, user_id), kind)
    return f"/password/reset/{token}"


def _can_sign_in(app, email: str, password: str) -> bool:
    response = app.test_client().post("/login", data={"email": email, "password": password})
    return response.status_code == 302


def _password_hash(app, user_id: int) -> str | None:
    with app.app_context():
        return db.session.get(User, user_id).password_hash


# --- asking for a link ---------------------------------------------------------


def test_forgot_password_answers_alike_and_mails_only_known_addresses(app, client, member, outbox):
    known = client.post("/password/forgot", data={"email": member.email})
    known_page = _text(client.get(known.headers["Location"]))
    unknown = client.post("/password/forgot", data={"email": "nobody-here@example.org"})
    unknown_page = _text(client.get(unknown.headers["Location"]))
    assert known.status_code == unknown.status_code == 302
    assert known.headers["Location"] == unknown.headers["Location"] == "/login"
    assert known.get_data() == unknown.get_data()
    assert SENT in known_page and SENT in unknown_page
    assert known_page == unknown_page
    assert outbox.messages() == []  # nothing is sent inside the request, even in inline mode
    assert [job.payload for job in _link_jobs(app)] == [{"email": member.email}, {"email": "nobody-here@example.org"}]

    assert _worker_runs(app) == 2  # both link jobs (the worker sends the one message at once)
    message = outbox.only()
    assert message["To"] == member.email
    assert message["Subject"] == "Reset your password"
    path = _link_path(message)
    assert f'href="http://localhost{path}"' in message.get_body(preferencelist=("html",)).get_content()


def test_forgot_password_does_the_same_work_for_known_and_unknown_addresses(app, client, member, outbox, monkeypatch):
    """The request schedules a job and runs nothing else: the same statements, no hashing, no mail."""
    monkeypatch.setattr("argon2.PasswordHasher.hash", lambda *a, **k: pytest.fail("the request hashed"))
    monkeypatch.setattr("argon2.PasswordHasher.verify", lambda *a, **k: pytest.fail("the request verified"))
    client.post("/password/forgot", data={"email": "warm-up@example.org"})  # first-request setup aside
    with factories.statements(app) as known:
        client.post("/password/forgot", data={"email": member.email})
    with factories.statements(app) as unknown:
        client.post("/password/forgot", data={"email": "nobody-here@example.org"})
    savepoint = re.compile(r"sa_savepoint_\d+")  # the names count up; the statements do not differ
    assert [savepoint.sub("", s) for s in known] == [savepoint.sub("", s) for s in unknown]
    assert any("INSERT INTO jobs" in statement for statement in known)
    assert not any("FROM users" in statement for statement in known)  # no account is looked up
    assert outbox.messages() == []
    assert {job.status for job in _link_jobs(app)} == {"queued"}


def test_the_link_job_mails_active_accounts_only(app, member, outbox):
    with app.app_context():
        for email in (member.email, "nobody-here@example.org"):
            services.request_password_link(email)
        db.session.commit()
    assert _worker_runs(app) == 2
    assert outbox.only()["To"] == member.email
    jobs = _link_jobs(app)
    assert [job.status for job in jobs] == ["finished", "finished"]
    assert [job.message for job in jobs] == ["link sent", "no active account with that address: nothing sent"]


@pytest.mark.redis
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set")
def test_with_redis_every_request_is_enqueued_and_a_worker_mails(separate_app):
    app = separate_app(REDIS_URL=os.environ["REDIS_URL"], QUEUE_MODE="redis")
    app.extensions["redis"].flushdb()
    outbox = factories.Outbox(Path(app.config["OUTBOX_DIR"]))
    try:
        with app.app_context():
            member = factories.Account.of(factories.user("member"))
        client = app.test_client()
        for email in (member.email, "nobody-here@example.org"):
            assert client.post("/password/forgot", data={"email": email}).headers["Location"] == "/login"
        assert outbox.messages() == []
        assert all(job.rq_job_id and job.status == "queued" for job in _link_jobs(app))
        build_worker(app, simple=True).work(burst=True)
        assert outbox.only()["To"] == member.email
    finally:
        app.extensions["redis"].flushdb()


def test_forgot_password_matches_email_case_insensitively(client, member, outbox):
    client.post("/password/forgot", data={"email": member.email.upper()})
    _worker_runs(client.application)
    assert outbox.only()["To"] == member.email


def test_forgot_password_sends_nothing_to_inactive_accounts(app, client, member, outbox):
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == member.id).values(active=False))
        db.session.commit()
    response = client.post("/password/forgot", data={"email": member.email})
    assert response.headers["Location"] == "/login"
    assert SENT in _text(client.get("/login"))
    assert _worker_runs(app) == 1
    assert outbox.messages() == []


@pytest.mark.parametrize(
    "email",
    ["", "not-an-email", "{member}\r\nBcc: evil@example.org", "{member}\nBcc: evil@example.org"],
)
def test_forgot_password_refuses_malformed_addresses(client, member, outbox, email):
    response = client.post("/password/forgot", data={"email": email.format(member=member.email)})
    assert response.status_code == 200
    assert "Forgotten password" in _text(response)
    assert _link_jobs(client.application) == []
    assert outbox.messages() == []


# --- using a link --------------------------------------------------------------


def test_reset_link_sets_the_password_once(app, client, member, outbox):
    path = _request_link(client, outbox, member.email)
    form = client.get(path)
    assert form.status_code == 200
    assert f"For {member.email}." in _text(form)
    response = client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.headers["Location"] == "/login"
    assert "Your password is saved. Sign in with it now." in _text(client.get("/login"))
    assert _can_sign_in(app, member.email, NEW_PASSWORD)
    assert not _can_sign_in(app, member.email, factories.PASSWORD)
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "user.password_set"))
        assert (event.actor_id, event.object_id) == (member.id, str(member.id))

    again = client.get(path)
    assert again.headers["Location"] == "/password/forgot"
    assert REFUSED in _text(client.get("/password/forgot"))
    before = _password_hash(app, member.id)
    replay = client.post(path, data={"password": "another passphrase, later", "confirm": "another passphrase, later"})
    assert replay.headers["Location"] == "/password/forgot"
    assert _password_hash(app, member.id) == before


def test_using_a_link_signs_out_other_sessions(app, auth, client, member, outbox):
    signed_in = app.test_client()
    signed_in.post("/login", data={"email": member.email, "password": factories.PASSWORD})
    assert "Signed in as" in signed_in.get("/").get_data(as_text=True)
    path = _request_link(client, outbox, member.email)
    client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert "Signed in as" not in signed_in.get("/").get_data(as_text=True)


def test_using_one_link_kills_the_others(app, client, member, monkeypatch):
    older = _token_path(app, monkeypatch, member.id, "reset", 600)
    newer = _token_path(app, monkeypatch, member.id, "reset", 60)
    assert older != newer
    assert client.post(newer, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).headers["Location"] == "/login"
    assert client.get(older).headers["Location"] == "/password/forgot"


def test_changing_the_password_elsewhere_kills_outstanding_links(app, auth, client, member, outbox):
    path = _request_link(client, outbox, member.email)
    auth.login(member)
    client.post("/account", data={"current": factories.PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    auth.logout()
    assert client.get(path).headers["Location"] == "/password/forgot"


def test_link_of_a_deactivated_account_is_refused(app, client, member, outbox):
    path = _request_link(client, outbox, member.email)
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == member.id).values(active=False))
        db.session.commit()
    assert client.get(path).headers["Location"] == "/password/forgot"
    client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert not _can_sign_in(app, member.email, NEW_PASSWORD)


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [
        ("short", "short", "Field must be between 12 and 1024 characters long."),
        ("aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "Use a less repetitive password."),
        ("abababababababab", "abababababababab", "Use a less repetitive password."),
        ("x" * 1025, "x" * 1025, "Field must be between 12 and 1024 characters long."),
        (NEW_PASSWORD, NEW_PASSWORD + "!", "The two passwords differ."),
        (NEW_PASSWORD, "", "This field is required."),
        ("", "", "This field is required."),
    ],
)
def test_weak_or_mismatched_passwords_are_refused(app, client, member, outbox, password, confirm, message):
    path = _request_link(client, outbox, member.email)
    before = _password_hash(app, member.id)
    response = client.post(path, data={"password": password, "confirm": confirm})
    assert response.status_code == 200
    assert message in _text(response)
    assert _password_hash(app, member.id) == before
    assert _can_sign_in(app, member.email, factories.PASSWORD)
    # A refused attempt does not spend the link.
    assert client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).headers["Location"] == "/login"


# --- expiry --------------------------------------------------------------------


@pytest.mark.parametrize(("age", "accepted"), [(60, True), (3590, True), (3610, False), (8 * 24 * 3600, False)])
def test_reset_link_lasts_an_hour(app, client, member, monkeypatch, age, accepted):
    path = _token_path(app, monkeypatch, member.id, "reset", age)
    assert (client.get(path).status_code == 200) is accepted
    response = client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.headers["Location"] == ("/login" if accepted else "/password/forgot")
    assert _can_sign_in(app, member.email, NEW_PASSWORD) is accepted


def test_reset_link_age_follows_the_configuration(app, client, member, monkeypatch):
    path = _token_path(app, monkeypatch, member.id, "reset", 120)
    assert client.get(path).status_code == 200
    monkeypatch.setitem(app.config, "PASSWORD_RESET_MAX_AGE", 60)
    assert client.get(path).headers["Location"] == "/password/forgot"


@pytest.mark.parametrize(
    ("age", "accepted"), [(2 * 24 * 3600, True), (7 * 24 * 3600 - 60, True), (7 * 24 * 3600 + 60, False)]
)
def test_invitation_link_lasts_a_week(app, client, member, monkeypatch, age, accepted):
    path = _token_path(app, monkeypatch, member.id, "invite", age)
    assert (client.get(path).status_code == 200) is accepted


def test_invitation_link_age_follows_the_configuration(app, client, member, monkeypatch):
    path = _token_path(app, monkeypatch, member.id, "invite", 2 * 3600)
    assert client.get(path).status_code == 200
    monkeypatch.setitem(app.config, "INVITATION_MAX_AGE", 3600)
    assert client.get(path).headers["Location"] == "/password/forgot"


def test_a_reset_link_does_not_get_an_invitations_lifetime(app, client, member, monkeypatch):
    assert client.get(_token_path(app, monkeypatch, member.id, "reset", 2 * 24 * 3600)).status_code == 302
    assert client.get(_token_path(app, monkeypatch, member.id, "invite", 2 * 24 * 3600)).status_code == 200


def test_invited_user_chooses_a_first_password(app, client, make_account, monkeypatch):
    invited = make_account("member", password=None)
    assert not _can_sign_in(app, invited.email, "anything at all, really")
    path = _token_path(app, monkeypatch, invited.id, "invite", 0)
    assert client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).headers["Location"] == "/login"
    assert _can_sign_in(app, invited.email, NEW_PASSWORD)
    assert client.get(path).headers["Location"] == "/password/forgot"


# --- forged links --------------------------------------------------------------


def _flip(char: str) -> str:
    return "B" if char == "A" else "A"


def _forged(app, member, how: str) -> str:
    with app.test_request_context():
        user = db.session.get(User, member.id)
        good = services.password_token(user, "reset")
        claims = {"u": user.id, "s": user.session_token, "k": "reset"}
        secret = app.config["SECRET_KEY"]
    payload, stamp, signature = good.split(".")
    return {
        "signature": f"{payload}.{stamp}.{_flip(signature[0])}{signature[1:]}",
        "payload": f"{_flip(payload[0])}{payload[1:]}.{stamp}.{signature}",
        "timestamp": f"{payload}.{_flip(stamp[0])}{stamp[1:]}.{signature}",
        "truncated": good[:-4],
        "unsigned": payload,
        "garbage": "not-a-token-at-all",
        "other secret": URLSafeTimedSerializer("some other key", salt="password-link").dumps(claims),
        "other salt": URLSafeTimedSerializer(secret, salt="something-else").dumps(claims),
        "unknown kind": URLSafeTimedSerializer(secret, salt="password-link").dumps({**claims, "k": "forever"}),
        "not a dict": URLSafeTimedSerializer(secret, salt="password-link").dumps([user.id, "reset"]),
        "stale session": URLSafeTimedSerializer(secret, salt="password-link").dumps({**claims, "s": "old"}),
        "other user": URLSafeTimedSerializer(secret, salt="password-link").dumps({**claims, "u": 999999}),
    }[how]


@pytest.mark.parametrize(
    "how",
    [
        "signature",
        "payload",
        "timestamp",
        "truncated",
        "unsigned",
        "garbage",
        "other secret",
        "other salt",
        "unknown kind",
        "not a dict",
        "stale session",
        "other user",
    ],
)
def test_forged_links_are_refused(app, client, member, how):
    path = f"/password/reset/{_forged(app, member, how)}"
    assert client.get(path).headers["Location"] == "/password/forgot"
    response = client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.headers["Location"] == "/password/forgot"
    assert not _can_sign_in(app, member.email, NEW_PASSWORD)
