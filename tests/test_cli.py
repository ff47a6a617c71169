"""``flask users create`` and ``flask demo load``, run through Flask's CLI runner.

The commands commit; the ``database`` fixture turns those commits into savepoints
that are rolled back after each test.
"""

import pyotp
import pytest
import sqlalchemy as sa

from campaign.admin.models import CoalitionSettings
from campaign.audit import AuditEvent
from campaign.auth.models import Organisation, User
from campaign.auth.passwords import verify_password
from campaign.demo import DEMO_PASSWORD, USERS
from campaign.extensions import db
from tests import factories


@pytest.fixture
def runner(app, database):
    return app.test_cli_runner()


@pytest.fixture
def org_slug(app, database) -> str:
    with app.app_context():
        return factories.organisation("Observatorio de Protección Civil", country="MX").slug


def _user(app, email: str) -> User | None:
    with app.app_context():
        found = db.session.scalar(sa.select(User).where(User.email == email))
        if found is not None:
            db.session.expunge(found)
        return found


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


# --- users create --------------------------------------------------------------


def test_creates_an_admin_with_a_password(app, runner):
    result = runner.invoke(
        args=["users", "create", "Amina.Diallo@Example.org", "--role", "admin", "--password", factories.PASSWORD]
    )
    assert result.exit_code == 0, result.output
    assert "Created admin amina.diallo@example.org" in result.output
    assert "Two-factor sign-in is set up at the first sign-in." in result.output
    user = _user(app, "amina.diallo@example.org")
    assert (user.role, user.active, user.organisation_id) == ("admin", True, None)
    with app.app_context():
        assert verify_password(user.password_hash, factories.PASSWORD)
        assert not verify_password(user.password_hash, "something else entirely")
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "user.create"))
        assert (event.actor_id, event.object_id) == (None, str(user.id))


def test_created_admin_can_sign_in(app, runner):
    runner.invoke(args=["users", "create", "boss@example.org", "--role", "admin", "--password", factories.PASSWORD])
    response = app.test_client().post("/login", data={"email": "boss@example.org", "password": factories.PASSWORD})
    assert response.headers["Location"] == "/login/two-factor/setup"


def test_creates_a_member_for_an_organisation(app, runner, org_slug):
    args = ["users", "create", "lucia@opc.example.org", "--role", "member", "--org", org_slug, "--name", "Lucía H"]
    result = runner.invoke(args=[*args, "--password", factories.PASSWORD])
    assert result.exit_code == 0, result.output
    assert "Created member lucia@opc.example.org for Observatorio de Protección Civil" in result.output
    assert "Two-factor" not in result.output
    user = _user(app, "lucia@opc.example.org")
    with app.app_context():
        assert db.session.get(Organisation, user.organisation_id).slug == org_slug
    assert user.name == "Lucía H"
    response = app.test_client().post("/login", data={"email": "lucia@opc.example.org", "password": factories.PASSWORD})
    assert response.headers["Location"] == "/"


def test_org_is_ignored_and_not_claimed_for_staff(app, runner, org_slug):
    args = ["users", "create", "jonas@example.org", "--role", "coordinator", "--org", org_slug]
    result = runner.invoke(args=[*args, "--password", factories.PASSWORD])
    assert result.exit_code == 0, result.output
    assert _user(app, "jonas@example.org").organisation_id is None
    assert "Observatorio" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x@example.org", "--role", "member"], "A member user represents an organisation: choose one."),
        (["x@example.org", "--role", "member", "--org", "no-such-org"], "no organisation with slug 'no-such-org'"),
        (["x@example.org", "--role", "admin", "--org", "no-such-org"], "no organisation with slug 'no-such-org'"),
        (["not-an-email", "--role", "admin"], "Enter a valid email address."),
        (["x@example.org", "--role", "admin", "--password", "short"], "Use at least 12 characters."),
        (["x@example.org", "--role", "admin", "--password", "aaaaaaaaaaaaaaaa"], "Use a less repetitive password."),
    ],
)
def test_refusals_are_clear_and_create_nothing(app, runner, args, message):
    if "--password" not in args:
        args = [*args, "--password", factories.PASSWORD]
    result = runner.invoke(args=["users", "create", *args])
    assert result.exit_code == 1
    assert f"Error: {message}" in result.output
    assert _count(app, User) == 0


def test_unknown_role_is_refused(app, runner):
    result = runner.invoke(args=["users", "create", "x@example.org", "--role", "pope", "--password", "x" * 20])
    assert result.exit_code == 2
    assert "'pope' is not one of 'admin', 'coordinator', 'member'" in result.output
    assert _count(app, User) == 0


def test_role_is_required(app, runner):
    result = runner.invoke(args=["users", "create", "x@example.org", "--password", factories.PASSWORD])
    assert result.exit_code == 2
    assert "Missing option '--role'" in result.output


@pytest.mark.parametrize("again", ["dup@example.org", "DUP@Example.ORG", " dup@example.org "])
def test_duplicate_email_is_refused(app, runner, again):
    args = ["--role", "admin", "--password", factories.PASSWORD]
    assert runner.invoke(args=["users", "create", "dup@example.org", *args]).exit_code == 0
    hash_before = _user(app, "dup@example.org").password_hash
    result = runner.invoke(args=["users", "create", again, "--role", "coordinator", "--password", "another good one"])
    assert result.exit_code == 1
    assert "Error: There is already an account for dup@example.org." in result.output
    assert _count(app, User) == 1
    user = _user(app, "dup@example.org")
    assert (user.role, user.password_hash) == ("admin", hash_before)


def test_prompts_for_the_password_twice(app, runner):
    result = runner.invoke(
        args=["users", "create", "prompted@example.org", "--role", "admin"],
        input=f"{factories.PASSWORD}\n{factories.PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "Password:" in result.output and "Repeat for confirmation:" in result.output
    assert factories.PASSWORD not in result.output  # hidden input is not echoed
    with app.app_context():
        assert verify_password(_user(app, "prompted@example.org").password_hash, factories.PASSWORD)


def test_prompt_asks_again_when_the_two_entries_differ(app, runner):
    result = runner.invoke(
        args=["users", "create", "prompted@example.org", "--role", "admin"],
        input=f"{factories.PASSWORD}\nsomething else\n{factories.PASSWORD}\n{factories.PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "The two entered values do not match." in result.output
    with app.app_context():
        assert verify_password(_user(app, "prompted@example.org").password_hash, factories.PASSWORD)


def test_prompt_cut_short_creates_nothing(app, runner):
    result = runner.invoke(args=["users", "create", "prompted@example.org", "--role", "admin"], input="")
    assert result.exit_code == 1
    assert "Aborted!" in result.output
    assert _count(app, User) == 0


def test_prompted_weak_password_is_refused(app, runner):
    result = runner.invoke(args=["users", "create", "p@example.org", "--role", "admin"], input="short\nshort\n")
    assert result.exit_code == 1
    assert "Error: Use at least 12 characters." in result.output
    assert _count(app, User) == 0


# --- demo load -----------------------------------------------------------------


def _snapshot(app) -> dict[str, object]:
    with app.app_context():
        return {
            "users": db.session.execute(sa.select(User.email, User.role, User.totp_secret).order_by(User.email)).all(),
            "organisations": db.session.scalars(sa.select(Organisation.slug).order_by(Organisation.slug)).all(),
        }


def test_demo_load_is_harmless_to_repeat(app, runner):
    first = runner.invoke(args=["demo", "load"])
    assert first.exit_code == 0, first.output
    loaded = _snapshot(app)
    assert len(loaded["users"]) == len(USERS)
    assert len(loaded["organisations"]) == 8
    second = runner.invoke(args=["demo", "load"])
    assert second.exit_code == 0, second.output
    assert _snapshot(app) == loaded


def test_demo_load_prints_credentials_that_work(app, runner):
    result = runner.invoke(args=["demo", "load"])
    assert f"password for all: {DEMO_PASSWORD}" in result.output
    for email, _name, role, _org in USERS:
        assert email in result.output
        user = _user(app, email)
        if role in ("admin", "coordinator"):
            assert f"two-factor secret {user.totp_secret}" in result.output
    admin_email = next(email for email, _n, role, _o in USERS if role == "admin")
    admin = _user(app, admin_email)
    client = app.test_client()
    client.post("/login", data={"email": admin_email, "password": DEMO_PASSWORD})
    code = pyotp.TOTP(admin.totp_secret).now()
    assert client.post("/login/two-factor", data={"code": code}).status_code == 302
    assert client.get("/admin/users").status_code == 200
    member_email = next(email for email, _n, role, _o in USERS if role == "member")
    member = app.test_client().post("/login", data={"email": member_email, "password": DEMO_PASSWORD})
    assert member.status_code == 302


def test_demo_load_keeps_what_an_admin_changed(app, runner):
    runner.invoke(args=["demo", "load"])
    admin_email = next(email for email, _n, role, _o in USERS if role == "admin")
    with app.app_context():
        db.session.execute(sa.update(CoalitionSettings).values(name="Renamed Coalition"))
        db.session.execute(sa.update(User).where(User.email == admin_email).values(name="Renamed Admin"))
        db.session.commit()
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    with app.app_context():
        assert db.session.get(CoalitionSettings, 1).name == "Renamed Coalition"
    assert _user(app, admin_email).name == "Renamed Admin"


def test_demo_load_refuses_production(separate_app):
    production = separate_app(
        APP_ENV="production", SECRET_KEY="a-real-secret-for-this-test", REDIS_URL="redis://127.0.0.1:1/0"
    )
    result = production.test_cli_runner().invoke(args=["demo", "load"])
    assert result.exit_code != 0
    assert "APP_ENV=production" in result.output
