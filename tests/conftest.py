"""Fixtures in layers: app → database (rolled back per test) → client → auth.

The suite runs on SQLite by default and on PostgreSQL when ``DATABASE_URL`` is
set.  With ``DEMARCHE_REQUIRE_ALL=1`` (as ``.ci/run`` sets it) a skipped test fails
the run, so CI cannot pass without the services, the browser and the contract.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import flask_migrate
import pyotp
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy.session import _app_ctx_id

from campaign import create_app
from campaign.auth import tokens
from campaign.auth.models import User
from campaign.extensions import db
from tests import factories
from tests.mail_guard import RealProviderGuard

pytest_plugins = ["tests.sendgrid_fixtures"]
REQUIRE_ALL = os.environ.get("DEMARCHE_REQUIRE_ALL") == "1"


def settings_for_tests(tmp_path: Path, **overrides: object) -> dict[str, object]:
    settings: dict[str, object] = {
        "APP_ENV": "testing",
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path / 'test.db'}",
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "WTF_CSRF_ENABLED": False,
    }
    settings.update(overrides)
    return settings


def reset_schema(app: Flask) -> None:
    """Drop everything and build the schema from the migrations."""
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        flask_migrate.upgrade()


@pytest.fixture(scope="session", autouse=True)
def no_real_mail_provider() -> Iterator[RealProviderGuard]:
    """Fails any test that would reach a real mail provider: SendGrid requests and SMTP
    connections go to loopback only (the stand-in, aiosmtpd), whatever the settings say."""
    with RealProviderGuard().installed() as guard:
        yield guard
    if guard.refused:
        pytest.fail("tests tried to reach real mail providers: " + "; ".join(guard.refused), pytrace=False)


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    application = create_app(settings_for_tests(tmp_path_factory.mktemp("app")))
    reset_schema(application)
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def database(app: Flask) -> Iterator[None]:
    """Each test runs in a transaction that is rolled back; commits become savepoints.

    No application context stays pushed, so each request gets its own (and its own ``g``).
    """
    with app.app_context():
        connection = db.engine.connect()
    transaction = connection.begin()
    original = db.session
    factory = sa.orm.sessionmaker(bind=connection, join_transaction_mode="create_savepoint")
    db.session = sa.orm.scoped_session(factory, scopefunc=_app_ctx_id)
    try:
        yield
    finally:
        db.session = original
        transaction.rollback()
        connection.close()


@pytest.fixture
def ctx(app: Flask, database: None) -> Iterator[None]:
    """An application context for tests that call services directly."""
    with app.test_request_context():
        yield


@pytest.fixture
def client(app: Flask, database: None) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def outbox(app: Flask) -> Iterator[factories.Outbox]:
    box = factories.Outbox(Path(app.config["OUTBOX_DIR"]))
    box.clear()
    yield box
    box.clear()


class AuthActions:
    """Sign in as an account through the real forms, second factor included."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client

    def login(self, account: factories.Account, password: str = factories.PASSWORD) -> None:
        response = self.client.post("/login", data={"email": account.email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        if account.totp_secret:
            with self.app.app_context():  # let a test sign in again within one 30-second step
                db.session.execute(sa.update(User).where(User.id == account.id).values(totp_last_step=None))
                db.session.commit()
            code = pyotp.TOTP(account.totp_secret).now()
            response = self.client.post("/login/two-factor", data={"code": code})
            assert response.status_code == 302, response.get_data(as_text=True)

    def logout(self) -> None:
        self.client.post("/logout")


@pytest.fixture
def auth(app: Flask, client: FlaskClient) -> AuthActions:
    return AuthActions(app, client)


@pytest.fixture
def make_account(app: Flask, database: None) -> Callable[..., factories.Account]:
    """Create a user (and a member's organisation) in a context of its own."""

    def make(role: str = "member", **kwargs: object) -> factories.Account:
        with app.app_context():
            return factories.Account.of(factories.user(role, **kwargs))

    return make


@pytest.fixture
def admin(make_account: Callable[..., factories.Account]) -> factories.Account:
    return make_account("admin")


@pytest.fixture
def coordinator(make_account: Callable[..., factories.Account]) -> factories.Account:
    return make_account("coordinator")


@pytest.fixture
def member(make_account: Callable[..., factories.Account]) -> factories.Account:
    return make_account("member")


@pytest.fixture
def bearer(app: Flask) -> Callable[..., dict[str, str]]:
    """``bearer(account)``: the Authorization header of a fresh API token for that account."""

    def make(account: factories.Account) -> dict[str, str]:
        with app.app_context():
            _, raw = tokens.create_token(db.session.get(User, account.id), "tests")
            db.session.commit()
        return {"Authorization": f"Bearer {raw}"}

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if REQUIRE_ALL and skipped:
        reporter.write_line(
            f"DEMARCHE_REQUIRE_ALL=1: {len(skipped)} test(s) skipped; services, browser or contract missing",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def separate_app(app: Flask, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps of their own (own SQLite database, schema migrated) with ``overrides``.

    For settings the session's app cannot change after it is built (CSRF on,
    production, an unreachable Redis).  Data committed there is real, so it lives
    in its own file; the shared ``limiter`` is given back to the session's app.
    """
    from campaign.extensions import limiter

    built: list[Flask] = []

    def build(**overrides: object) -> Flask:
        settings = settings_for_tests(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / f'separate{len(built)}.db'}")
        settings.update(overrides)
        separate = create_app(settings)
        built.append(separate)
        reset_schema(separate)
        return separate

    yield build
    for separate in built:
        with separate.app_context():
            db.engine.dispose()
    limiter.init_app(app)


@pytest.fixture
def limited_app(separate_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """Build apps with rate limits on (in-memory counters, own database)."""

    def build(**overrides: object) -> Flask:
        return separate_app(RATELIMIT_ENABLED=True, REDIS_URL=None, **overrides)

    return build
