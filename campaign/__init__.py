"""Demarche: open letters from NGO coalitions to heads of state and government."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from config import PROXY_FIX_SETTINGS, Config, ConfigurationError, load_config


def create_app(config: Config | type[Config] | Mapping[str, Any] | None = None) -> Flask:
    """Build the application; see ``config.load_config`` for what ``config`` may be."""
    app = Flask(__name__, instance_relative_config=True, template_folder="../templates", static_folder="../static")
    settings = load_config(config)
    app.config.from_mapping(settings.as_dict())
    register_paths(app)
    register_proxy(app)
    register_logging(app)
    register_extensions(app)
    register_clients(app)
    register_blueprints(app)
    register_api(app)
    register_security(app)
    register_errors(app)
    register_templates(app)
    register_jobs(app)
    register_commands(app)
    return app


def register_paths(app: Flask) -> None:
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config["DATABASE_URL"]:
        app.config["DATABASE_URL"] = "sqlite:///" + os.path.join(app.instance_path, "demarche.db")
    app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"]
    if not app.config["OUTBOX_DIR"]:
        app.config["OUTBOX_DIR"] = os.path.join(app.instance_path, "outbox")


def register_proxy(app: Flask) -> None:
    """Behind proxies, take the client's address (and scheme, host…) from the X-Forwarded-* headers.

    Rate limits and the audit log use ``request.remote_addr``.  Only as many hops as
    configured are trusted, none by default: a client can send these headers itself.
    """
    hops = {name.removeprefix("PROXY_FIX_").lower(): app.config[name] for name in PROXY_FIX_SETTINGS}
    if any(hops.values()):
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, **hops)  # type: ignore[method-assign]


def register_logging(app: Flask) -> None:
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for noisy in ("alembic.runtime.plugins", "weasyprint", "fontTools"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def register_extensions(app: Flask) -> None:
    from campaign.db import configure_engine_options, install_engine_hooks
    from campaign.extensions import csrf, db, limiter, login_manager, migrate

    configure_engine_options(app)
    db.init_app(app)
    with app.app_context():
        install_engine_hooks(db.engine)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"] or "memory://"
    # No X-RateLimit-* headers: the limited routes are HTML forms, whose readers never look at
    # them, and they cost every limited post a second trip to the store.  A 429 still says
    # when to come back (``Retry-After``, campaign.main.errors).
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    limiter.init_app(app)


def register_clients(app: Flask) -> None:
    """Clients for outside services, one set per application; the page cache uses Redis."""
    from campaign import pagecache
    from campaign.mailings.backends import build_backend

    app.extensions["redis"] = None
    if app.config["REDIS_URL"]:
        import redis

        app.extensions["redis"] = redis.Redis.from_url(
            app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5
        )
    app.extensions["mail_backend"] = build_backend(app.config)
    pagecache.install(app)
    if app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"]:
        from campaign.mailings.sendgrid import event_public_key

        try:
            event_public_key(app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"])
        except ValueError as exc:
            raise ConfigurationError(f"SENDGRID_WEBHOOK_PUBLIC_KEY is {exc}") from None


def register_blueprints(app: Flask) -> None:
    from campaign.admin import bp as admin_bp
    from campaign.alerts import admin_bp as alerts_admin_bp
    from campaign.alerts import bp as alerts_bp
    from campaign.auth import bp as auth_bp
    from campaign.auth import users_bp
    from campaign.contacts import bp as contacts_bp
    from campaign.db import IdConverter
    from campaign.extensions import csrf
    from campaign.letters import bp as letters_bp
    from campaign.letters import meetings_bp, public_bp
    from campaign.mailings import bp as mailings_bp
    from campaign.mailings.webhooks import bp as webhooks_bp
    from campaign.main import bp as main_bp
    from campaign.signatures import admin_bp as signatures_admin_bp
    from campaign.signatures import bp as signatures_bp

    app.url_map.converters["id"] = IdConverter
    blueprints = (main_bp, auth_bp, users_bp, admin_bp, mailings_bp, letters_bp, meetings_bp, public_bp, contacts_bp)
    blueprints += (signatures_bp, signatures_admin_bp)
    blueprints += (alerts_bp, alerts_admin_bp)
    blueprints += (webhooks_bp,)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    csrf.exempt(webhooks_bp)  # SendGrid signs its posts instead


def register_api(app: Flask) -> None:
    from campaign.restapi import install_api

    install_api(app)


def register_security(app: Flask) -> None:
    from campaign.security import install_security

    install_security(app)


def register_errors(app: Flask) -> None:
    from campaign.main.errors import install_error_handlers

    install_error_handlers(app)


def register_templates(app: Flask) -> None:
    from campaign.main.templating import install_template_helpers

    install_template_helpers(app)


def register_jobs(app: Flask) -> None:
    """Import every domain's job handlers, so any process can run any job."""
    import campaign.mailings.jobs  # noqa: F401
    from campaign import queue
    from campaign.alerts import jobs as alert_jobs  # noqa: F401 - registers alert.dispatch, alert.chunk
    from campaign.alerts import sending as alert_sending
    from campaign.alerts import triggers  # noqa: F401 - alerts.trigger, alert.test, sweeps of letters and meetings
    from campaign.auth import jobs as auth_jobs  # noqa: F401 - registers auth.password_link
    from campaign.mailings import sending, tracking
    from campaign.signatures import jobs as signature_jobs  # noqa: F401 - signatures.remind, signature.verify_email

    queue.sweeper(sending.expire_leases)
    queue.sweeper(alert_sending.expire_leases)
    queue.sweeper(tracking.apply_waiting)  # after expire_leases: events waiting on a send that became uncertain
    queue.install(app)


def register_commands(app: Flask) -> None:
    from campaign.auth.cli import tokens_cli, users_cli
    from campaign.contacts.cli import contacts_cli
    from campaign.demo import demo_cli
    from campaign.letters.cli import letters_cli
    from campaign.mailings.cli import mailings_cli
    from campaign.worker import worker_command

    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(letters_cli)
    app.cli.add_command(contacts_cli)
    app.cli.add_command(mailings_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(worker_command)
