"""Configuration classes.

Each class reads the environment once, when it is instantiated by
``campaign.create_app``; a setting in the environment overrides the class default
in every configuration.  ``APP_ENV`` picks the class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def normalise_database_url(url: str) -> str:
    """Accept the URL forms hosting platforms hand out and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


#: Each names the X-Forwarded-* header werkzeug's ProxyFix trusts from that many proxies.
PROXY_FIX_SETTINGS = (
    "PROXY_FIX_X_FOR",
    "PROXY_FIX_X_PROTO",
    "PROXY_FIX_X_HOST",
    "PROXY_FIX_X_PORT",
    "PROXY_FIX_X_PREFIX",
)


#: Hosts a plain-HTTP SendGrid stand-in may run on in production (a benchmark, a local relay).
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class ConfigurationError(RuntimeError):
    """The configuration cannot run safely."""


class Config:
    """Settings shared by every environment."""

    APP_ENV: ClassVar[str] = "development"

    SECRET_KEY: str | None = "dev-only-secret-key-change-me"  # noqa: S105 - development only
    DATABASE_URL: str | None = None  # SQLite under instance/ when unset
    REDIS_URL: str | None = None
    MAIL_BACKEND: str = "outbox"
    MAIL_FROM: str = "Demarche <no-reply@demarche.invalid>"
    OUTBOX_DIR: str | None = None  # instance/outbox when unset
    SITE_URL: str = "http://127.0.0.1:5000"
    SMTP_HOST: str = "localhost"
    SMTP_PORT: int = 25
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: str | None = None
    SMTP_TLS: str = "none"  # none | starttls | ssl
    SMTP_TIMEOUT: float = 30.0
    SMTP_CA_FILE: str | None = None  # extra CA bundle for the SMTP server's certificate
    SENDGRID_API_KEY: str | None = None
    SENDGRID_API_HOST: str = "https://api.sendgrid.com"  # a local contract server in tests
    SENDGRID_TIMEOUT: float = 30.0  # seconds to wait for SendGrid's answer
    # The event webhook's verification key (base64 DER, as SendGrid shows it); unset, every post is refused.
    SENDGRID_WEBHOOK_PUBLIC_KEY: str | None = None
    SENDGRID_WEBHOOK_MAX_AGE: int = 300  # seconds a signed post's timestamp may be off, either way
    SENDGRID_WEBHOOK_MAX_BYTES: int = 4 * 1024 * 1024  # SendGrid posts batches of up to about 768 KB
    QUEUE_MODE: str = "auto"  # auto | inline | redis
    REMINDER_DAYS: int = 3  # days before a letter's deadline that invited organisations are reminded
    MAILING_RATE: int = 600  # messages a minute a new mailing sends at, across all workers
    MAILING_CHUNK: int = 50  # deliveries a mail job claims and sends at a time (a chunk)
    MAILING_LEASE: int = 300  # seconds a worker holds a delivery it is sending; then it is uncertain
    ALERTS_AUTOMATIC: bool = True  # alerts when a letter opens, a mailing of it is delivered, a meeting is near
    ALERT_MEETING_DAYS: int = 3  # days before a meeting that its automatic alert goes out
    WORKER_MAINTENANCE_SECONDS: float = 30.0  # how often `flask worker` puts back lost work and expires leases
    MAX_CONTENT_LENGTH: int = 8 * 1024 * 1024
    LOGO_MAX_BYTES: int = 512 * 1024
    PASSWORD_RESET_MAX_AGE: int = 3600
    INVITATION_MAX_AGE: int = 7 * 24 * 3600
    LOGIN_RATE_LIMIT: str = "10 per minute;60 per hour"
    SIGNON_RATE_LIMIT: str = "5 per minute;30 per hour"  # per IP: public sign-on, its confirmation, signer data
    RATELIMIT_ENABLED: bool = True
    PAGE_CACHE_SECONDS: int = 60  # longest life of a public letter page kept in Redis; 0 turns the cache off
    # How many proxies in front set each X-Forwarded-* header (werkzeug's ProxyFix); 0 trusts none.
    PROXY_FIX_X_FOR: int = 0
    PROXY_FIX_X_PROTO: int = 0
    PROXY_FIX_X_HOST: int = 0
    PROXY_FIX_X_PORT: int = 0
    PROXY_FIX_X_PREFIX: int = 0
    ARGON2_TIME_COST: int = 3
    ARGON2_MEMORY_COST: int = 65536
    TWO_FACTOR_ISSUER: str = "Demarche"

    SESSION_COOKIE_HTTPONLY: bool = True
    SESSION_COOKIE_SAMESITE: str = "Lax"
    SESSION_COOKIE_SECURE: bool = False
    REMEMBER_COOKIE_HTTPONLY: bool = True
    REMEMBER_COOKIE_SAMESITE: str = "Lax"
    REMEMBER_COOKIE_SECURE: bool = False
    PREFERRED_URL_SCHEME: str = "http"
    HSTS: bool = False

    TESTING: bool = False
    DEBUG: bool = False
    WTF_CSRF_ENABLED: bool = True
    WTF_CSRF_TIME_LIMIT: int | None = None  # valid for the session's lifetime

    # Settings read from the environment, with the parser for each.
    ENVIRONMENT: ClassVar[dict[str, Any]] = {
        "SECRET_KEY": str,
        "DATABASE_URL": normalise_database_url,
        "REDIS_URL": str,
        "MAIL_BACKEND": str,
        "MAIL_FROM": str,
        "OUTBOX_DIR": str,
        "SITE_URL": lambda v: v.rstrip("/"),
        "SMTP_HOST": str,
        "SMTP_PORT": int,
        "SMTP_USERNAME": str,
        "SMTP_PASSWORD": str,
        "SMTP_TLS": str,
        "SMTP_TIMEOUT": float,
        "SMTP_CA_FILE": str,
        "SENDGRID_API_KEY": str,
        "SENDGRID_API_HOST": lambda v: v.rstrip("/"),
        "SENDGRID_TIMEOUT": float,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": str,
        "SENDGRID_WEBHOOK_MAX_AGE": int,
        "SENDGRID_WEBHOOK_MAX_BYTES": int,
        "QUEUE_MODE": str,
        "REMINDER_DAYS": int,
        "MAILING_RATE": int,
        "MAILING_CHUNK": int,
        "MAILING_LEASE": int,
        "ALERTS_AUTOMATIC": _bool,
        "ALERT_MEETING_DAYS": int,
        "WORKER_MAINTENANCE_SECONDS": float,
        "MAX_CONTENT_LENGTH": int,
        "LOGIN_RATE_LIMIT": str,
        "SIGNON_RATE_LIMIT": str,
        "RATELIMIT_ENABLED": _bool,
        "PAGE_CACHE_SECONDS": int,
        **dict.fromkeys(PROXY_FIX_SETTINGS, int),
        "SESSION_COOKIE_SECURE": _bool,
    }

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        for name, parse in self.ENVIRONMENT.items():
            raw = os.environ.get(name)
            if raw not in (None, ""):
                try:
                    setattr(self, name, parse(raw))
                except ValueError:
                    raise ConfigurationError(f"{name}={raw!r} is not a valid value") from None
        for name, value in (overrides or {}).items():
            setattr(self, name, value)

    def validate(self) -> None:
        """Refuse settings that cannot run; development accepts everything."""
        if self.MAIL_BACKEND not in {"outbox", "smtp", "sendgrid"}:
            raise ConfigurationError(f"MAIL_BACKEND must be outbox, smtp or sendgrid, not {self.MAIL_BACKEND!r}")
        if self.MAIL_BACKEND == "sendgrid":
            if not self.SENDGRID_API_KEY:
                raise ConfigurationError("MAIL_BACKEND=sendgrid needs SENDGRID_API_KEY in the environment")
            if not self.SENDGRID_API_HOST.startswith(("https://", "http://")):
                raise ConfigurationError("SENDGRID_API_HOST must be an http(s) URL")
            if not self.SENDGRID_TIMEOUT > 0:
                raise ConfigurationError("SENDGRID_TIMEOUT must be a number of seconds above 0")
        if not self.SENDGRID_WEBHOOK_MAX_AGE > 0 or not self.SENDGRID_WEBHOOK_MAX_BYTES > 0:
            raise ConfigurationError("SENDGRID_WEBHOOK_MAX_AGE and SENDGRID_WEBHOOK_MAX_BYTES must be above 0")
        if self.SMTP_TLS not in {"none", "starttls", "ssl"}:
            raise ConfigurationError("SMTP_TLS must be none, starttls or ssl")
        if self.ALERT_MEETING_DAYS < 1:
            raise ConfigurationError("ALERT_MEETING_DAYS must be a number of days, 1 or more")
        if self.QUEUE_MODE not in {"auto", "inline", "redis"}:
            raise ConfigurationError("QUEUE_MODE must be auto, inline or redis")
        if self.QUEUE_MODE == "redis" and not self.REDIS_URL:
            raise ConfigurationError("QUEUE_MODE=redis needs REDIS_URL")
        for name in PROXY_FIX_SETTINGS:
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be a number of proxies, 0 or more")

    def as_dict(self) -> dict[str, Any]:
        names = {n for klass in type(self).__mro__ for n in vars(klass) if n.isupper()}
        names |= {n for n in vars(self) if n.isupper()}
        return {n: getattr(self, n) for n in names if n != "ENVIRONMENT"}


class DevelopmentConfig(Config):
    APP_ENV = "development"
    DEBUG = False


class TestingConfig(Config):
    APP_ENV = "testing"
    TESTING = True
    SECRET_KEY = "testing-secret-key"  # noqa: S105
    RATELIMIT_ENABLED = False
    # Tests count queries and roll the database back under kept pages; the page-cache tests turn it on.
    PAGE_CACHE_SECONDS = 0
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST = 1024
    SITE_URL = "http://localhost"
    QUEUE_MODE = "inline"


class ProductionConfig(Config):
    APP_ENV = "production"
    SECRET_KEY = None
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    PREFERRED_URL_SCHEME = "https"
    HSTS = True

    def validate(self) -> None:
        super().validate()
        missing = [name for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL") if not getattr(self, name)]
        if missing:
            names = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
            why = (
                " (without Redis each process keeps its own rate-limit counters, so the limits do not hold)"
                if "REDIS_URL" in missing
                else ""
            )
            raise ConfigurationError(f"APP_ENV=production needs {names} in the environment{why}")
        sendgrid = urlsplit(self.SENDGRID_API_HOST)
        if self.MAIL_BACKEND == "sendgrid" and sendgrid.scheme != "https" and sendgrid.hostname not in LOOPBACK:
            raise ConfigurationError("SENDGRID_API_HOST must be an https URL in production: it carries the API key")


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(config: Config | type[Config] | Mapping[str, Any] | None = None) -> Config:
    """Build the configuration for ``create_app``.

    ``config`` may be a ready ``Config``, a ``Config`` class, or a mapping of
    overrides; with a mapping (or nothing) ``APP_ENV`` (from the mapping, else the
    environment) chooses the class.
    """
    if isinstance(config, Config):
        result = config
    elif isinstance(config, type) and issubclass(config, Config):
        result = config()
    else:
        overrides = dict(config or {})
        env = overrides.get("APP_ENV") or os.environ.get("APP_ENV") or "development"
        if env not in CONFIGS:
            raise ConfigurationError(f"APP_ENV must be one of {', '.join(CONFIGS)}, not {env!r}")
        overrides.pop("APP_ENV", None)
        result = CONFIGS[env](overrides)
    result.validate()
    return result
