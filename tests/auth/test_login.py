import pyotp
import pytest
import sqlalchemy as sa

from campaign.auth.models import RecoveryCode, User
from campaign.extensions import db
from tests import factories


def test_member_signs_in_with_password_alone(client, auth, member):
    auth.login(member)
    page = client.get("/").get_data(as_text=True)
    assert "Signed in as" in page
    assert "Dashboard" not in page


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("nobody@example.org", factories.PASSWORD),
        ("{member}", "wrong password entirely"),
        ("{member}", ""),
        ("not-an-email", "x"),
        ("{member}\r\nBcc: x@example.org", factories.PASSWORD),
    ],
)
def test_bad_credentials_are_refused_alike(client, member, email, password):
    response = client.post("/login", data={"email": email.format(member=member.email), "password": password})
    assert response.status_code in (200, 401)
    assert "_user_id" not in client.get_cookie("session").value if client.get_cookie("session") else True
    assert "Signed in as" not in client.get("/").get_data(as_text=True)


def test_email_is_case_insensitive(client, member):
    response = client.post("/login", data={"email": member.email.upper(), "password": factories.PASSWORD})
    assert response.status_code == 302


def test_inactive_user_cannot_sign_in(app, client, member):
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == member.id).values(active=False))
        db.session.commit()
    response = client.post("/login", data={"email": member.email, "password": factories.PASSWORD})
    assert response.status_code == 401


def test_admin_needs_second_factor(client, admin):
    response = client.post("/login", data={"email": admin.email, "password": factories.PASSWORD})
    assert response.headers["Location"] == "/login/two-factor"
    assert client.get("/admin/users").status_code == 302  # not signed in yet
    bad = client.post("/login/two-factor", data={"code": "000000"})
    assert bad.status_code == 401
    good = client.post("/login/two-factor", data={"code": pyotp.TOTP(admin.totp_secret).now()})
    assert good.status_code == 302
    assert client.get("/admin/users").status_code == 200


def test_totp_code_cannot_be_replayed(client, admin):
    code = pyotp.TOTP(admin.totp_secret).now()
    client.post("/login", data={"email": admin.email, "password": factories.PASSWORD})
    assert client.post("/login/two-factor", data={"code": code}).status_code == 302
    client.post("/logout")
    client.post("/login", data={"email": admin.email, "password": factories.PASSWORD})
    assert client.post("/login/two-factor", data={"code": code}).status_code == 401


def test_first_sign_in_enrols_two_factor_and_shows_recovery_codes(app, client, make_account):
    coordinator = make_account("coordinator", two_factor=False)
    response = client.post("/login", data={"email": coordinator.email, "password": factories.PASSWORD})
    assert response.headers["Location"] == "/login/two-factor/setup"
    page = client.get("/login/two-factor/setup").get_data(as_text=True)
    assert "<svg" in page
    with client.session_transaction() as session:
        secret = session["2fa_secret"]
    assert client.post("/login/two-factor/setup", data={"code": "123456"}).status_code == 200
    response = client.post("/login/two-factor/setup", data={"code": pyotp.TOTP(secret).now()})
    assert response.headers["Location"] == "/account/recovery-codes"
    codes_page = client.get("/account/recovery-codes").get_data(as_text=True)
    assert codes_page.count("<li>") >= 10
    # shown once only
    assert client.get("/account/recovery-codes").status_code == 302
    with app.app_context():
        user = db.session.get(User, coordinator.id)
        assert user.two_factor_enabled
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 10


def test_recovery_code_works_once(app, client, make_account):
    account = make_account("admin")
    with app.app_context():
        from campaign.auth import twofactor

        codes = twofactor.generate_recovery_codes(db.session.get(User, account.id))
        db.session.commit()
    for expected in (302, 401):
        client.post("/logout")
        client.post("/login", data={"email": account.email, "password": factories.PASSWORD})
        response = client.post("/login/two-factor", data={"code": codes[0].upper()})
        assert response.status_code == expected


def test_pending_second_factor_expires(client, admin, monkeypatch):
    import campaign.auth.routes as routes

    client.post("/login", data={"email": admin.email, "password": factories.PASSWORD})
    monkeypatch.setattr(routes, "PENDING_SECONDS", -1)
    response = client.post("/login/two-factor", data={"code": pyotp.TOTP(admin.totp_secret).now()})
    assert response.headers["Location"] == "/login"


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [("/admin/users", "/admin/users"), ("//evil.example/x", "/"), ("https://evil.example/", "/"), ("/\\evil", "/")],
)
def test_next_only_goes_to_this_site(client, make_account, next_url, expected):
    account = make_account("member")
    response = client.post(
        "/login", query_string={"next": next_url}, data={"email": account.email, "password": factories.PASSWORD}
    )
    assert response.headers["Location"] == expected


def test_logout_needs_post(client, auth, member):
    auth.login(member)
    assert client.get("/logout").status_code == 200
    assert "Signed in as" in client.get("/").get_data(as_text=True)
    client.post("/logout")
    assert "Signed in as" not in client.get("/").get_data(as_text=True)


def test_login_is_rate_limited(limited_app):
    client = limited_app(LOGIN_RATE_LIMIT="3 per minute").test_client()
    statuses = [client.post("/login", data={"email": "a@example.org", "password": "x"}).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_changing_password_signs_out_other_sessions(app, auth, client, member):
    other = app.test_client()
    auth.login(member)
    other.post("/login", data={"email": member.email, "password": factories.PASSWORD})
    new = "a brand new passphrase here"
    response = client.post("/account", data={"current": factories.PASSWORD, "password": new, "confirm": new})
    assert response.status_code == 302
    assert "Signed in as" in client.get("/").get_data(as_text=True)
    assert "Signed in as" not in other.get("/").get_data(as_text=True)


@pytest.mark.parametrize("target", ["/\t/evil.example", "/%09/evil.example", "/\n/evil.example", "/ /evil.example"])
def test_next_with_control_characters_stays_on_this_site(client, make_account, target):
    from urllib.parse import unquote

    account = make_account("member")
    response = client.post(
        "/login", query_string={"next": unquote(target)}, data={"email": account.email, "password": factories.PASSWORD}
    )
    assert response.headers["Location"] == "/"


def test_promotion_signs_the_user_out_until_two_factor_is_set_up(app, client, auth, member, make_account):
    from campaign.auth import services

    auth.login(member)
    assert client.get("/account").status_code == 200
    with app.app_context():
        user = db.session.get(User, member.id)
        services.update_user(user, name=user.name, role="coordinator", organisation=None, active=True)
        db.session.commit()
    assert client.get("/account").status_code == 302  # signed out: the next sign-in enrols a second factor


def _from(address: str) -> dict[str, dict[str, str]]:
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_second_factor_is_rate_limited_per_account_whatever_the_address(limited_app):
    app = limited_app(LOGIN_RATE_LIMIT="3 per minute")
    with app.app_context():
        target = factories.Account.of(factories.user("admin"))
        bystander = factories.Account.of(factories.user("admin"))
    password = {"email": target.email, "password": factories.PASSWORD}
    attacker = app.test_client()
    assert attacker.post("/login", data=password, **_from("198.51.100.1")).status_code == 302
    statuses = [
        attacker.post("/login/two-factor", data={"code": "000000"}, **_from(f"203.0.113.{n}")).status_code
        for n in range(1, 5)
    ]
    assert statuses == [401, 401, 401, 429]  # a new address each time does not help

    # Nor does a new session from yet another address: the count is the account's.
    fresh = app.test_client()
    assert fresh.post("/login", data=password, **_from("198.51.100.2")).status_code == 302
    code = pyotp.TOTP(target.totp_secret).now()
    assert fresh.post("/login/two-factor", data={"code": code}, **_from("203.0.113.50")).status_code == 429

    # Another account's second factor is untouched.
    other = app.test_client()
    other.post("/login", data={"email": bystander.email, "password": factories.PASSWORD}, **_from("198.51.100.3"))
    code = pyotp.TOTP(bystander.totp_secret).now()
    assert other.post("/login/two-factor", data={"code": code}, **_from("203.0.113.60")).status_code == 302


def test_second_factor_setup_is_rate_limited_per_account(limited_app):
    app = limited_app(LOGIN_RATE_LIMIT="2 per minute")
    with app.app_context():
        enrolling = factories.Account.of(factories.user("coordinator", two_factor=False))
    client = app.test_client()
    client.post("/login", data={"email": enrolling.email, "password": factories.PASSWORD}, **_from("198.51.100.1"))
    statuses = [
        client.post("/login/two-factor/setup", data={"code": "000000"}, **_from(f"203.0.113.{n}")).status_code
        for n in range(1, 4)
    ]
    assert statuses == [200, 200, 429]
