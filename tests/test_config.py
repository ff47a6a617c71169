"""Configuration from the environment, the production guard rails, and the health check."""

import pyotp
import pytest
import sqlalchemy as sa

import config
from campaign import create_app
from campaign.audit import AuditEvent
from campaign.extensions import db, limiter
from config import ConfigurationError, load_config
from tests import factories
from tests.conftest import settings_for_tests

POSTGRES = "postgresql+psycopg://demarche:secret@db.example.org:5432/demarche"
REDIS = "redis://redis.example.org:6379/0"
#: Nothing listens there: enough for production apps whose tests never reach Redis.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Start each test from an environment that sets nothing this app reads."""
    for name in [*config.Config.ENVIRONMENT, "APP_ENV"]:
        monkeypatch.delenv(name, raising=False)


# --- loading -------------------------------------------------------------------


def test_defaults_on_a_fresh_machine():
    settings = load_config()
    assert isinstance(settings, config.DevelopmentConfig)
    assert settings.SECRET_KEY
    assert settings.DATABASE_URL is None  # SQLite under instance/, filled in by create_app
    assert settings.MAIL_BACKEND == "outbox"
    assert settings.SESSION_COOKIE_SECURE is False and settings.HSTS is False


@pytest.mark.parametrize(
    ("environment", "missing", "present"),
    [
        ({}, ["SECRET_KEY", "DATABASE_URL", "REDIS_URL"], []),
        ({"DATABASE_URL": POSTGRES, "REDIS_URL": REDIS}, ["SECRET_KEY"], ["DATABASE_URL", "REDIS_URL"]),
        ({"SECRET_KEY": "s3cret-from-the-vault", "REDIS_URL": REDIS}, ["DATABASE_URL"], ["SECRET_KEY", "REDIS_URL"]),
        (
            {"SECRET_KEY": "", "DATABASE_URL": POSTGRES, "REDIS_URL": REDIS},
            ["SECRET_KEY"],
            ["DATABASE_URL", "REDIS_URL"],
        ),
        (
            {"SECRET_KEY": "s3cret-from-the-vault", "DATABASE_URL": POSTGRES},
            ["REDIS_URL"],
            ["SECRET_KEY", "DATABASE_URL"],
        ),
    ],
)
def test_production_refuses_to_start_without_its_secrets(monkeypatch, environment, missing, present):
    monkeypatch.setenv("APP_ENV", "production")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as refused:
        load_config()
    for name in missing:
        assert name in str(refused.value)
    for name in present:
        assert name not in str(refused.value)
    with pytest.raises(ConfigurationError):
        create_app()
    with pytest.raises(ConfigurationError):
        load_config(config.ProductionConfig)


def test_production_without_redis_says_why_it_is_needed(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "s3cret-from-the-vault")
    monkeypatch.setenv("DATABASE_URL", POSTGRES)
    with pytest.raises(ConfigurationError) as refused:
        load_config()
    assert str(refused.value) == (
        "APP_ENV=production needs REDIS_URL in the environment"
        " (without Redis each process keeps its own rate-limit counters, so the limits do not hold)"
    )


def test_production_starts_with_its_secrets(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "s3cret-from-the-vault")
    monkeypatch.setenv("DATABASE_URL", "postgres://demarche:secret@db.example.org:5432/demarche")
    monkeypatch.setenv("REDIS_URL", REDIS)
    settings = load_config()
    assert isinstance(settings, config.ProductionConfig)
    assert settings.SECRET_KEY == "s3cret-from-the-vault"
    assert settings.DATABASE_URL == POSTGRES
    assert settings.SESSION_COOKIE_SECURE and settings.REMEMBER_COOKIE_SECURE and settings.HSTS
    assert settings.SESSION_COOKIE_HTTPONLY and settings.SESSION_COOKIE_SAMESITE == "Lax"
    assert settings.PREFERRED_URL_SCHEME == "https"
    assert settings.WTF_CSRF_ENABLED and not settings.DEBUG and not settings.TESTING


@pytest.mark.parametrize("env", ["development", "testing", "production"])
def test_environment_overrides_the_defaults_of_every_configuration(monkeypatch, env):
    monkeypatch.setenv("APP_ENV", env)
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/elsewhere.db")
    monkeypatch.setenv("REDIS_URL", REDIS)
    monkeypatch.setenv("MAIL_FROM", "Shield <no-reply@shield.example.org>")
    monkeypatch.setenv("SITE_URL", "https://letters.shield.example.org/")
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "1048576")
    monkeypatch.setenv("RATELIMIT_ENABLED", "false")
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "yes")
    monkeypatch.setenv("SMTP_PORT", "2525")
    settings = load_config().as_dict()
    assert settings["SECRET_KEY"] == "from-the-environment"
    assert settings["DATABASE_URL"] == "sqlite:////tmp/elsewhere.db"
    assert settings["MAIL_FROM"] == "Shield <no-reply@shield.example.org>"
    assert settings["SITE_URL"] == "https://letters.shield.example.org"
    assert settings["MAX_CONTENT_LENGTH"] == 1048576
    assert settings["RATELIMIT_ENABLED"] is False
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["SMTP_PORT"] == 2525


def test_empty_environment_values_leave_defaults(monkeypatch):
    monkeypatch.setenv("MAIL_FROM", "")
    monkeypatch.setenv("SITE_URL", "")
    settings = load_config()
    assert settings.MAIL_FROM == config.Config.MAIL_FROM
    assert settings.SITE_URL == config.Config.SITE_URL


def test_explicit_overrides_beat_the_environment(monkeypatch):
    monkeypatch.setenv("MAIL_FROM", "From the environment <env@example.org>")
    settings = load_config({"APP_ENV": "testing", "MAIL_FROM": "Given <given@example.org>"})
    assert isinstance(settings, config.TestingConfig)
    assert settings.MAIL_FROM == "Given <given@example.org>"


def test_configuration_is_read_when_loaded_not_at_import(monkeypatch):
    monkeypatch.setenv("MAIL_FROM", "First <first@example.org>")
    first = load_config()
    monkeypatch.setenv("MAIL_FROM", "Second <second@example.org>")
    assert load_config().MAIL_FROM == "Second <second@example.org>"
    assert first.MAIL_FROM == "First <first@example.org>"
    assert config.Config.MAIL_FROM == "Demarche <no-reply@demarche.invalid>"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@host:5432/db", "postgresql+psycopg://u:p@host:5432/db"),
        ("postgresql://u:p@host/db?sslmode=require", "postgresql+psycopg://u:p@host/db?sslmode=require"),
        ("postgresql+psycopg://u:p@host/db", "postgresql+psycopg://u:p@host/db"),
        ("sqlite:////var/lib/demarche.db", "sqlite:////var/lib/demarche.db"),
    ],
)
def test_database_urls_use_psycopg_3(monkeypatch, given, expected):
    assert config.normalise_database_url(given) == expected
    monkeypatch.setenv("DATABASE_URL", given)
    assert load_config().as_dict()["DATABASE_URL"] == expected


@pytest.mark.parametrize("source", ["environment", "mapping"])
@pytest.mark.parametrize("env", ["staging", "prod", "Production", "test"])
def test_unknown_app_env_is_refused(monkeypatch, source, env):
    if source == "environment":
        monkeypatch.setenv("APP_ENV", env)
        given = None
    else:
        given = {"APP_ENV": env}
    with pytest.raises(ConfigurationError, match=f"not '{env}'"):
        load_config(given)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAIL_BACKEND", "sendmail", "MAIL_BACKEND must be"),
        ("MAIL_BACKEND", "OUTBOX", "MAIL_BACKEND must be"),
        ("SMTP_TLS", "tls", "SMTP_TLS must be"),
        ("SMTP_PORT", "twenty-five", "SMTP_PORT"),
        ("MAX_CONTENT_LENGTH", "8MB", "MAX_CONTENT_LENGTH"),
    ],
)
def test_unusable_settings_are_refused(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        load_config()


def test_create_app_refuses_an_unknown_mail_backend(monkeypatch, tmp_path):
    monkeypatch.setenv("MAIL_BACKEND", "sendmail")
    with pytest.raises(ConfigurationError):
        create_app(settings_for_tests(tmp_path))


# --- production behaviour ------------------------------------------------------


def test_production_sets_secure_cookies_and_hsts(separate_app):
    app = separate_app(
        APP_ENV="production", SECRET_KEY="s3cret-from-the-vault", REDIS_URL=UNREACHABLE_REDIS, WTF_CSRF_ENABLED=True
    )
    assert not app.testing and not app.debug
    response = app.test_client().get("/login")
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("session=")
    attributes = [part.strip() for part in cookie.split(";")]
    assert "Secure" in attributes and "HttpOnly" in attributes and "SameSite=Lax" in attributes


def test_development_cookies_work_over_plain_http(client):
    client.get("/login")
    response = client.get("/login")
    assert "Strict-Transport-Security" not in response.headers
    assert client.get_cookie("session") is None or not client.get_cookie("session").secure


# --- behind a proxy --------------------------------------------------------------


def test_proxy_hops_come_from_the_environment(monkeypatch):
    assert all(getattr(load_config(), name) == 0 for name in config.PROXY_FIX_SETTINGS)  # trust none by default
    monkeypatch.setenv("PROXY_FIX_X_FOR", "1")
    monkeypatch.setenv("PROXY_FIX_X_PROTO", "2")
    settings = load_config()
    assert (settings.PROXY_FIX_X_FOR, settings.PROXY_FIX_X_PROTO, settings.PROXY_FIX_X_HOST) == (1, 2, 0)


@pytest.mark.parametrize("value", ["-1", "one", "1.5"])
def test_unusable_proxy_hops_are_refused(monkeypatch, value):
    monkeypatch.setenv("PROXY_FIX_X_FOR", value)
    with pytest.raises(ConfigurationError, match="PROXY_FIX_X_FOR"):
        load_config()


def _sign_in_attempts(client, *forwarded_for: str) -> list[int]:
    """Failed sign-ins, each for its own address, arriving from one proxy at 10.0.0.1."""
    return [
        client.post(
            "/login",
            data={"email": f"someone{n}@example.org", "password": "x"},
            headers={"X-Forwarded-For": forwarded},
            environ_base={"REMOTE_ADDR": "10.0.0.1"},
        ).status_code
        for n, forwarded in enumerate(forwarded_for)
    ]


def test_forwarded_for_is_ignored_unless_configured(limited_app):
    client = limited_app(LOGIN_RATE_LIMIT="2 per minute").test_client()
    # A client cannot dodge the limit by claiming other addresses.
    assert _sign_in_attempts(client, "203.0.113.1", "203.0.113.2", "203.0.113.3") == [401, 401, 429]


def test_behind_a_trusted_proxy_limits_count_per_client(limited_app):
    client = limited_app(LOGIN_RATE_LIMIT="2 per minute", PROXY_FIX_X_FOR=1).test_client()
    assert _sign_in_attempts(client, "203.0.113.7", "203.0.113.7") == [401, 401]
    assert _sign_in_attempts(client, "203.0.113.8") == [401]  # another client behind the same proxy
    # Only the address the proxy appended counts: one the client put first changes nothing.
    assert _sign_in_attempts(client, "198.51.100.1, 203.0.113.7") == [429]


def test_behind_a_trusted_proxy_the_audit_log_records_the_client(limited_app):
    app = limited_app(PROXY_FIX_X_FOR=1)
    with app.app_context():
        coordinator = factories.Account.of(factories.user("coordinator"))
    client = app.test_client()
    via_proxy = {"headers": {"X-Forwarded-For": "203.0.113.20"}, "environ_base": {"REMOTE_ADDR": "10.0.0.1"}}
    client.post("/login", data={"email": coordinator.email, "password": factories.PASSWORD}, **via_proxy)
    code = pyotp.TOTP(coordinator.totp_secret).now()
    assert client.post("/login/two-factor", data={"code": code}, **via_proxy).status_code == 302
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "user.login"))
        assert event.ip_address == "203.0.113.20"


# --- health check --------------------------------------------------------------


def test_healthz_reports_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["redis"] in ("ok", "not configured")


def test_healthz_is_503_when_redis_is_configured_but_unreachable(separate_app):
    app = separate_app(REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["redis"].startswith("error: ")
    assert "127.0.0.1" not in response.get_data(as_text=True)


def test_healthz_is_503_when_the_database_is_unreachable(app, tmp_path):
    broken = create_app(settings_for_tests(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'x.db'}"))
    try:
        response = broken.test_client().get("/healthz")
        assert response.status_code == 503
        body = response.get_json()
        assert (body["status"], body["database"]) == ("unavailable", "error: OperationalError")
    finally:
        with broken.app_context():
            db.engine.dispose()
        limiter.init_app(app)
