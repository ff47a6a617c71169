"""JSON endpoints of the auth domain: ``/api/v1/me``, organisations, users."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import pycountry
import sqlalchemy as sa
from flask import abort
from flask_login import current_user
from flask_smorest import Blueprint

from campaign.auth import services
from campaign.auth.models import Organisation, Role, User
from campaign.extensions import db
from campaign.restapi import PREFIX, PageArgs, api_roles, documents, page_of, paginate, problem, single_line

blp = Blueprint("auth_api", __name__, url_prefix=PREFIX, description="Accounts and organisations")


def _country(value: str) -> None:
    if pycountry.countries.get(alpha_2=value) is None:
        raise ma.ValidationError("Not an ISO 3166-1 alpha-2 country code.")


class OrganisationSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=[ma.validate.Length(1, 200), single_line])
    slug = ma.fields.String(validate=ma.validate.Regexp(r"^[a-z0-9-]{1,80}$"))
    country = ma.fields.String(required=True, validate=_country, metadata={"example": "FR"})
    website = ma.fields.Url(allow_none=True, schemes={"http", "https"}, validate=ma.validate.Length(max=300))
    member = ma.fields.Boolean(load_default=False)
    created_date = ma.fields.AwareDateTime(attribute="created_at", dump_only=True)


class OrganisationUpdateSchema(OrganisationSchema):
    name = ma.fields.String(validate=[ma.validate.Length(1, 200), single_line])
    country = ma.fields.String(validate=_country)
    member = ma.fields.Boolean()


class OrganisationFilterArgs(PageArgs):
    member = ma.fields.Boolean()
    country = ma.fields.String(validate=_country)


class UserSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=254))
    name = ma.fields.String(required=True, validate=[ma.validate.Length(1, 200), single_line])
    role = ma.fields.String(required=True, validate=ma.validate.OneOf([r.value for r in Role]))
    organisation = ma.fields.String(
        attribute="organisation_slug",
        allow_none=True,
        metadata={"description": "Slug of the organisation a member represents"},
    )
    active = ma.fields.Boolean(load_default=True)
    two_factor_enabled = ma.fields.Boolean(dump_only=True)
    created_date = ma.fields.AwareDateTime(attribute="created_at", dump_only=True)
    last_login_date = ma.fields.AwareDateTime(attribute="last_login_at", dump_only=True, allow_none=True)


class UserUpdateSchema(UserSchema):
    email = ma.fields.Email(dump_only=True)
    name = ma.fields.String(validate=[ma.validate.Length(1, 200), single_line])
    role = ma.fields.String(validate=ma.validate.OneOf([r.value for r in Role]))
    active = ma.fields.Boolean()


class UserFilterArgs(PageArgs):
    role = ma.fields.String(validate=ma.validate.OneOf([r.value for r in Role]))


def _organisation_or_problem(slug: str | None) -> Organisation | None:
    if not slug:
        return None
    org = services.get_organisation_by_slug(slug)
    if org is None:
        abort(problem(422, "Unknown organisation.", {"json": {"organisation": [f"No organisation {slug!r}."]}}))
    return org


@blp.route("/me")
@documents(blp)
@api_roles()
@blp.response(200, UserSchema)
def me() -> Any:
    """The user the token belongs to."""
    return current_user


@blp.route("/organisations")
@documents(blp, 422)
@api_roles()
@blp.arguments(OrganisationFilterArgs, location="query")
@blp.response(200, page_of(OrganisationSchema))
def list_organisations(args: dict[str, Any]) -> Any:
    """Organisations, by name; filter by membership and country."""
    query = sa.select(Organisation).order_by(Organisation.name, Organisation.id)
    if "member" in args:
        query = query.where(Organisation.member.is_(args["member"]))
    if "country" in args:
        query = query.where(Organisation.country == args["country"])
    return paginate(query, args)


@blp.route("/organisations", methods=["POST"])
@documents(blp, 409, 422)
@api_roles("admin")
@blp.arguments(OrganisationSchema)
@blp.response(201, OrganisationSchema)
def create_organisation(data: dict[str, Any]) -> Any:
    """Add an organisation (admins)."""
    try:
        org = services.create_organisation(services.OrganisationData(**data))
    except services.AccountError as exc:
        db.session.rollback()
        return problem(409, str(exc))
    db.session.commit()
    return org


@blp.route("/organisations/<slug>")
@documents(blp, 404)
@api_roles()
@blp.response(200, OrganisationSchema)
def get_organisation(slug: str) -> Any:
    return services.get_organisation_by_slug(slug) or abort(404)


@blp.route("/organisations/<slug>", methods=["PATCH"])
@documents(blp, 404, 409, 422)
@api_roles("admin")
@blp.arguments(OrganisationUpdateSchema)
@blp.response(200, OrganisationSchema)
def update_organisation(data: dict[str, Any], slug: str) -> Any:
    """Change an organisation (admins); omitted fields keep their value."""
    org = services.get_organisation_by_slug(slug) or abort(404)
    merged = services.OrganisationData(
        name=data.get("name", org.name),
        country=data.get("country", org.country),
        website=data.get("website", org.website),
        member=data.get("member", org.member),
        slug=data.get("slug", org.slug),
    )
    try:
        services.update_organisation(org, merged)
    except services.AccountError as exc:
        db.session.rollback()
        return problem(409, str(exc))
    db.session.commit()
    return org


@blp.route("/users")
@documents(blp, 422)
@api_roles("admin")
@blp.arguments(UserFilterArgs, location="query")
@blp.response(200, page_of(UserSchema))
def list_users(args: dict[str, Any]) -> Any:
    """Users, by email (admins)."""
    query = sa.select(User).order_by(User.email)
    if "role" in args:
        query = query.where(User.role == args["role"])
    return paginate(query, args)


@blp.route("/users", methods=["POST"])
@documents(blp, 409, 422)
@api_roles("admin")
@blp.arguments(UserSchema)
@blp.response(201, UserSchema)
def create_user(data: dict[str, Any]) -> Any:
    """Create a user (admins); they receive an email to choose a password."""
    organisation = _organisation_or_problem(data.get("organisation_slug"))
    try:
        user = services.create_user(data["email"], data["name"], data["role"], organisation)
        user.active = data["active"]
    except services.AccountError as exc:
        db.session.rollback()
        return problem(409 if "already" in str(exc) else 422, str(exc))
    db.session.commit()
    if user.active:
        services.send_invitation(user)
    return user


@blp.route("/users/<id:id>")
@documents(blp, 404)
@api_roles("admin")
@blp.response(200, UserSchema)
def get_user(id: int) -> Any:
    return db.session.get(User, id) or abort(404)


@blp.route("/users/<id:id>", methods=["PATCH"])
@documents(blp, 404, 422)
@api_roles("admin")
@blp.arguments(UserUpdateSchema)
@blp.response(200, UserSchema)
def update_user(data: dict[str, Any], id: int) -> Any:
    """Change a user's name, role, organisation or active state (admins)."""
    user = db.session.get(User, id) or abort(404)
    organisation = (
        _organisation_or_problem(data["organisation_slug"]) if "organisation_slug" in data else user.organisation
    )
    try:
        services.update_user(
            user,
            name=data.get("name", user.name),
            role=data.get("role", user.role),
            organisation=organisation,
            active=data.get("active", user.active),
        )
    except services.AccountError as exc:
        db.session.rollback()
        return problem(422, str(exc))
    db.session.commit()
    return user
