"""Sessions, role checks and response security headers."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, Request, Response, abort, current_app, g, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from flask_login import current_user, login_required

from campaign.extensions import db, login_manager
from campaign.restapi import is_api_request

F = TypeVar("F", bound=Callable[..., Any])

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self'",
        "script-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def roles_required(*roles: str) -> Callable[[F], F]:
    """Signed in with one of ``roles``; anonymous users are sent to sign in, others get 403."""
    allowed = {str(r) for r in roles}

    def decorator(view: F) -> F:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in allowed:
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


# Role names as ``campaign.auth.models.Role`` spells them (not imported: auth imports this module).
admin_required = roles_required("admin")
staff_required = roles_required("admin", "coordinator")


#: Sent with every response unless the view set its own.
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"),
)
HSTS_HEADER = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, minus the work for a request that carries no cookie.

    Flask builds its signing serializer and reads every cookie setting on each request;
    most public requests (the letter pages) have no session, so that waits until there is
    one to read or to write.  What is stored, and when, is unchanged.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and (not request.cookies.get(self.get_cookie_name(app)) or is_api_request()):
            # The API takes bearer tokens only.  Its requests get an empty session whatever
            # cookie they carry: Flask-Login's session protection would otherwise find the
            # cookie of a visitor who is not signed in (a form's CSRF token, say) and answer
            # as nobody without asking the token loader.
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not session and not session.modified and not session.accessed:
            return  # an untouched empty session: Flask would set no cookie and no Vary either
        super().save_session(app, session, response)


def may_be_signed_in() -> bool:
    """Whether the response may be a signed-in user's.

    Exact once the view loaded the user (Flask-Login keeps it in ``g._login_user``);
    otherwise whether the request carries one in any way Flask-Login looks for here (a
    session user, a remember cookie, a bearer token), without loading it: a deactivated
    account still counts, which only errs towards ``no-store``.
    """
    if "_login_user" in g:
        return bool(current_user.is_authenticated)
    return (
        "_user_id" in session  # ``in`` does not mark the session accessed
        or "Authorization" in request.headers
        or current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies
    )


def install_security(app: Flask) -> None:
    app.session_interface = CookieSessions()
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"
    login_manager.user_loader(_load_user)
    always = SECURITY_HEADERS + ((HSTS_HEADER,) if app.config["HSTS"] else ())

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        present = {name.lower() for name, _ in headers}
        missing = [(name, value) for name, value in always if name.lower() not in present]
        # Signed-in answers are never stored.  Asked without loading a user the view did not
        # load: an anonymous request is spared Flask-Login's work (its session check included).
        if "cache-control" not in present and request.endpoint != "static" and may_be_signed_in():
            missing.append(("Cache-Control", "no-store"))
        headers.extend(missing)
        return response


def _load_user(session_token: str) -> Any:
    from campaign.auth.models import User

    if is_api_request():  # the API takes bearer tokens only, never the session cookie
        return None
    return db.session.scalar(sa.select(User).where(User.session_token == session_token, User.active.is_(True)))
