"""Admin pages for users and organisations."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from campaign import audit
from campaign.auth import services, tokens, twofactor, users_bp
from campaign.auth.forms import ConfirmForm, OrganisationForm, UserForm
from campaign.auth.models import ApiToken, Organisation, Role, User
from campaign.db import page_arg
from campaign.extensions import db
from campaign.forms import choices
from campaign.security import admin_required

PER_PAGE = 50


def _organisation_choices() -> list[tuple[str, str]]:
    orgs = db.session.execute(sa.select(Organisation.id, Organisation.name).order_by(Organisation.name))
    return choices([("", "— none —"), *((str(org_id), name) for org_id, name in orgs)])


@users_bp.route("/users")
@admin_required
def users() -> str:
    q = request.args.get("q", "").strip()
    role = request.args.get("role", "")
    query = sa.select(User).order_by(User.email)
    if q:
        query = query.where(sa.or_(User.email.icontains(q, autoescape=True), User.name.icontains(q, autoescape=True)))
    if role in {r.value for r in Role}:
        query = query.where(User.role == role)
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    return render_template("auth/admin/users.html", page=page, q=q, role=role, roles=list(Role))


def _organisation_from_form(form: UserForm) -> Organisation | None:
    value = form.organisation.data or ""
    # ASCII digits only ("²".isdigit() is true, int("²") fails), and small enough for the column.
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        return None
    return db.session.get(Organisation, int(value))


@users_bp.route("/users/new", methods=["GET", "POST"])
@admin_required
def new_user() -> str | Response:
    form = UserForm()
    form.organisation.choices = _organisation_choices()
    if request.method == "GET" and request.args.get("org"):
        org = services.get_organisation_by_slug(request.args["org"])
        form.organisation.data = str(org.id) if org else ""
    if form.validate_on_submit():
        try:
            user = services.create_user(form.email.data, form.name.data, form.role.data, _organisation_from_form(form))
            user.active = form.active.data
        except services.AccountError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            if user.active:  # an inactive account's link would not open
                services.send_invitation(user)
                flash(f"Account created. {user.email} has been sent a link to choose a password.", "success")
            else:
                flash(f"Account created, inactive. Activate it, then send {user.email} a password link.", "success")
            return redirect(url_for("users.users"))
    return render_template("auth/admin/user_form.html", form=form, user=None)


@users_bp.route("/users/<id:user_id>", methods=["GET", "POST"])
@admin_required
def edit_user(user_id: int) -> str | Response:
    user = db.session.get(User, user_id) or abort(404)
    form = UserForm(obj=user)
    form.organisation.choices = _organisation_choices()
    if request.method == "GET":
        form.organisation.data = str(user.organisation_id or "")
    del form.email
    if form.validate_on_submit():
        try:
            services.update_user(
                user,
                name=form.name.data,
                role=form.role.data,
                organisation=_organisation_from_form(form),
                active=form.active.data,
            )
        except services.AccountError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"Saved {user.email}.", "success")
            return redirect(url_for("users.users"))
    return render_template(
        "auth/admin/user_form.html", form=form, user=user, confirm=ConfirmForm(), api_tokens=tokens.tokens_of(user)
    )


@users_bp.route("/users/<id:user_id>/tokens/<id:token_id>/revoke", methods=["POST"])
@admin_required
def revoke_user_token(user_id: int, token_id: int) -> Response:
    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id:
        abort(404)
    if ConfirmForm().validate_on_submit():
        tokens.revoke(row)
        db.session.commit()
        flash(f"Token {row.name!r} revoked.", "success")
    return redirect(url_for("users.edit_user", user_id=user_id))


@users_bp.route("/users/<id:user_id>/invite", methods=["POST"])
@admin_required
def invite_user(user_id: int) -> Response:
    user = db.session.get(User, user_id) or abort(404)
    if ConfirmForm().validate_on_submit() and user.active:
        audit.record("user.invite", user, f"Sent a password link to {user.email}")
        db.session.commit()
        services.send_invitation(user)
        flash(f"A link to choose a password was sent to {user.email}.", "success")
    return redirect(url_for("users.edit_user", user_id=user.id))


@users_bp.route("/users/<id:user_id>/reset-two-factor", methods=["POST"])
@admin_required
def reset_two_factor(user_id: int) -> Response:
    user = db.session.get(User, user_id) or abort(404)
    if ConfirmForm().validate_on_submit():
        if user.id == current_user.id:
            flash("Reset your own second factor from another admin's account.", "error")
        else:
            twofactor.disable(user)
            user.session_token = services.new_session_token()
            audit.record("user.two_factor_reset", user, f"Reset two-factor sign-in of {user.email}")
            db.session.commit()
            flash(f"{user.email} will set up two-factor sign-in again at their next sign-in.", "success")
    return redirect(url_for("users.edit_user", user_id=user.id))


@users_bp.route("/organisations")
@admin_required
def organisations() -> str:
    q = request.args.get("q", "").strip()
    member = request.args.get("member", "")
    query = sa.select(Organisation).order_by(Organisation.name)
    if q:
        query = query.where(Organisation.name_key.contains(services.organisation_name_key(q), autoescape=True))
    if member in {"yes", "no"}:
        query = query.where(Organisation.member.is_(member == "yes"))
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    return render_template(
        "auth/admin/organisations.html", page=page, q=q, member=member, country_name=services.country_name
    )


def _organisation_data(form: OrganisationForm) -> services.OrganisationData:
    return services.OrganisationData(
        name=form.name.data,
        country=form.country.data,
        website=form.website.data or None,
        member=form.member.data,
        slug=form.slug.data or None,
    )


@users_bp.route("/organisations/new", methods=["GET", "POST"])
@admin_required
def new_organisation() -> str | Response:
    form = OrganisationForm()
    form.country.choices = choices([("", "— choose —"), *services.country_choices()])
    if form.validate_on_submit():
        try:
            org = services.create_organisation(_organisation_data(form))
        except services.AccountError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"Added {org.name}.", "success")
            return redirect(url_for("users.edit_organisation", slug=org.slug))
    return render_template("auth/admin/organisation_form.html", form=form, org=None)


@users_bp.route("/organisations/<slug>", methods=["GET", "POST"])
@admin_required
def edit_organisation(slug: str) -> str | Response:
    org = services.get_organisation_by_slug(slug) or abort(404)
    form = OrganisationForm(obj=org)
    form.country.choices = choices(services.country_choices())
    if form.validate_on_submit():
        try:
            services.update_organisation(org, _organisation_data(form))
        except services.AccountError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"Saved {org.name}.", "success")
            return redirect(url_for("users.edit_organisation", slug=org.slug))
    return render_template("auth/admin/organisation_form.html", form=form, org=org)
