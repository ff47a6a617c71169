"""Signing in and out, two factors, password links, one's own account."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from campaign import audit
from campaign.auth import bp, services, tokens, twofactor
from campaign.auth.forms import (
    ChangePasswordForm,
    ConfirmForm,
    LoginForm,
    NewPasswordForm,
    PasswordResetRequestForm,
    TokenForm,
    TwoFactorForm,
    TwoFactorSetupForm,
)
from campaign.auth.models import ApiToken, User
from campaign.auth.passwords import verify_password
from campaign.extensions import db, limiter

PENDING_SECONDS = 600


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _email_key() -> str:
    return "login:" + (request.form.get("email") or "").strip().lower()[:254]


def _safe_next(target: str | None) -> str:
    """A path on this site, or the home page: no scheme, no host, nothing a browser strips into one."""
    if (
        target
        and target.startswith("/")
        and not any(ch <= " " or ch in "\x7f\\" for ch in target)
        and not urlsplit(target).netloc
        and not target.startswith("//")
    ):
        return target
    return url_for("main.index")


def _pending_user() -> User | None:
    """The user who gave a correct password and still owes a second factor (looked up once a request)."""
    if "pending_user" not in g:
        token, started = session.get("2fa_user"), session.get("2fa_started", 0)
        found = None
        if token and time.time() - started <= PENDING_SECONDS:
            found = db.session.scalar(db.select(User).where(User.session_token == token, User.active.is_(True)))
        g.pending_user = found
    return g.pending_user


def _pending_user_key() -> str:
    """Second-factor attempts count against the account too, whatever address or session they come from."""
    user = _pending_user()
    return f"2fa-user:{user.id if user is not None else 'none'}"


def _no_pending_user() -> bool:
    return _pending_user() is None  # the view only sends them back to sign in


def _finish_login(user: User) -> Response:
    target = _safe_next(session.pop("2fa_next", None) or request.args.get("next"))
    for key in ("2fa_user", "2fa_started", "2fa_secret"):
        session.pop(key, None)
    services.record_login(user)
    db.session.commit()
    login_user(user)
    return redirect(target)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, key_func=_email_key, methods=["POST"])
def login() -> str | Response:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = services.authenticate(form.email.data, form.password.data)
        if user is None:
            flash("That email and password do not match an active account.", "error")
            return render_template("auth/login.html", form=form), 401
        if not user.needs_two_factor:
            return _finish_login(user)
        db.session.commit()  # a rehashed password
        session["2fa_user"], session["2fa_started"] = user.session_token, time.time()
        session["2fa_next"] = _safe_next(request.args.get("next"))
        if user.two_factor_enabled:
            return redirect(url_for("auth.two_factor"))
        return redirect(url_for("auth.two_factor_setup"))
    return render_template("auth/login.html", form=form)


@bp.route("/login/two-factor", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, key_func=_pending_user_key, exempt_when=_no_pending_user, methods=["POST"])
def two_factor() -> str | Response:
    user = _pending_user()
    if user is None or not user.two_factor_enabled:
        flash("Please sign in again.", "info")
        return redirect(url_for("auth.login"))
    form = TwoFactorForm()
    if form.validate_on_submit():
        code = form.code.data.strip()
        if twofactor.verify_totp(user, code):
            return _finish_login(user)
        if twofactor.use_recovery_code(user, code):
            audit.record("user.recovery_code_used", user, f"{user.email} used a recovery code", actor=user)
            left = twofactor.remaining_recovery_codes(user)
            flash(f"Recovery code accepted. {left} left: make new ones on your account page.", "warning")
            return _finish_login(user)
        flash("That code is not valid. Codes change every 30 seconds and work once.", "error")
        return render_template("auth/two_factor.html", form=form), 401
    return render_template("auth/two_factor.html", form=form)


@bp.route("/login/two-factor/setup", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, key_func=_pending_user_key, exempt_when=_no_pending_user, methods=["POST"])
def two_factor_setup() -> str | Response:
    user = _pending_user()
    if user is None or user.two_factor_enabled:
        return redirect(url_for("auth.login"))
    secret = session.get("2fa_secret") or twofactor.new_secret()
    session["2fa_secret"] = secret
    form = TwoFactorSetupForm()
    if form.validate_on_submit():
        if twofactor.code_is_valid_for_setup(secret, form.code.data):
            codes = twofactor.enable(user, secret)
            audit.record("user.two_factor_enabled", user, f"{user.email} set up two-factor sign-in", actor=user)
            _finish_login(user)
            session["recovery_codes"] = codes
            return redirect(url_for("auth.recovery_codes"))
        flash("That code does not match. Check the time on your phone and try the next code.", "error")
    uri = twofactor.provisioning_uri(user, secret)
    return render_template("auth/two_factor_setup.html", form=form, secret=secret, qr=twofactor.qr_svg(uri), uri=uri)


@bp.route("/account/recovery-codes")
@login_required
def recovery_codes() -> str | Response:
    codes = session.pop("recovery_codes", None)
    if not codes:
        return redirect(url_for("auth.account"))
    return render_template("auth/recovery_codes.html", codes=codes)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> str | Response:
    if request.method == "GET":
        return render_template("auth/logout.html", form=ConfirmForm())
    form = ConfirmForm()
    if form.validate_on_submit():
        logout_user()
        session.clear()
        flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def forgot_password() -> str | Response:
    form = PasswordResetRequestForm()
    if form.validate_on_submit():
        row = services.request_password_link(form.email.data)
        db.session.commit()
        services.dispatch_password_link(row)
        flash("If that address has an account, a link to choose a new password is on its way.", "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot_password.html", form=form)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def reset_password(token: str) -> str | Response:
    user = services.user_from_password_token(token)
    if user is None:
        flash("That link has expired or was already used. Ask for a new one.", "error")
        return redirect(url_for("auth.forgot_password"))
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            services.set_password(user, form.password.data)
        except services.AccountError as exc:
            form.password.errors.append(str(exc))
        else:
            audit.record("user.password_set", user, f"{user.email} chose a new password", actor=user)
            db.session.commit()
            logout_user()
            flash("Your password is saved. Sign in with it now.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset_password.html", form=form, user=user)


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> str | Response:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        if not verify_password(current_user.password_hash, form.current.data):
            form.current.errors.append("That is not your current password.")
        else:
            try:
                services.set_password(current_user, form.password.data)
            except services.AccountError as exc:
                form.password.errors.append(str(exc))
            else:
                audit.record("user.password_changed", current_user, f"{current_user.email} changed password")
                db.session.commit()
                login_user(current_user._get_current_object())  # the session token rotated
                flash("Password changed. Other sessions are signed out.", "success")
                return redirect(url_for("auth.account"))
    remaining = twofactor.remaining_recovery_codes(current_user) if current_user.two_factor_enabled else 0
    return render_template(
        "auth/account.html",
        form=form,
        confirm=ConfirmForm(),
        remaining=remaining,
        token_form=TokenForm(),
        api_tokens=tokens.tokens_of(current_user),
        new_token=session.pop("new_token", None),
    )


@bp.route("/account/tokens", methods=["POST"])
@login_required
def create_token() -> Response:
    form = TokenForm()
    if form.validate_on_submit():
        row, raw = tokens.create_token(current_user, form.name.data)
        db.session.commit()
        session["new_token"] = {"name": row.name, "token": raw}
        flash("Token created. Copy it now: it is shown only once.", "success")
    else:
        flash("Give the token a name of at most 100 characters.", "error")
    return redirect(url_for("auth.account") + "#tokens")


@bp.route("/account/tokens/<id:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id: int) -> Response:
    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != current_user.id:
        abort(404)
    if ConfirmForm().validate_on_submit():
        tokens.revoke(row)
        db.session.commit()
        flash(f"Token {row.name!r} revoked.", "success")
    return redirect(url_for("auth.account") + "#tokens")


@bp.route("/account/recovery-codes", methods=["POST"])
@login_required
def regenerate_recovery_codes() -> Response:
    form = ConfirmForm()
    if form.validate_on_submit() and current_user.two_factor_enabled:
        codes = twofactor.generate_recovery_codes(current_user)
        audit.record("user.recovery_codes_regenerated", current_user, "New recovery codes")
        db.session.commit()
        session["recovery_codes"] = codes
        return redirect(url_for("auth.recovery_codes"))
    return redirect(url_for("auth.account"))
