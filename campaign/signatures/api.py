"""JSON endpoints of the signatures domain: a letter's signatures, signing, moderation.

Anyone with a token sees the approved signatories of a public letter, with the
public fields only (organisation, country, revision signed, approval date), as the
letter page shows them; coordinators and admins see every signature with all its
fields and history, and may filter by status.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask import Response, abort
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy.orm import selectinload

from campaign.auth.services import country_name
from campaign.extensions import db
from campaign.letters import services as letter_services
from campaign.letters.models import Letter
from campaign.restapi import PREFIX, PageArgs, api_roles, documents, page_of, paginate, problem, refused, single_line
from campaign.signatures import moderation, services
from campaign.signatures.models import Signature, SignatureStatus

blp = Blueprint("signatures_api", __name__, url_prefix=PREFIX, description="Signatures of letters")

STAFF = ("coordinator", "admin")


class SignatureEventSchema(ma.Schema):
    created_date = ma.fields.AwareDateTime(attribute="created_at")
    kind = ma.fields.String()
    summary = ma.fields.String()
    actor_email = ma.fields.String(allow_none=True)


class SignatureSchema(ma.Schema):
    """A signature; fields after ``needs_reconfirmation`` are for coordinators and admins only."""

    id = ma.fields.Integer(metadata={"description": "Coordinators and admins only"})
    organisation = ma.fields.String(attribute="organisation_name", required=True)
    country = ma.fields.String(required=True, metadata={"example": "FR"})
    country_name = ma.fields.String(required=True)
    revision = ma.fields.Integer(
        attribute="revision_number", allow_none=True, metadata={"description": "Number of the revision signed"}
    )
    signed_published_revision = ma.fields.Boolean(required=True)
    approved_date = ma.fields.AwareDateTime(attribute="approved_at", allow_none=True)
    needs_reconfirmation = ma.fields.Boolean(required=True)
    status = ma.fields.String(validate=ma.validate.OneOf([s.value for s in SignatureStatus]))
    source = ma.fields.String()
    signer_name = ma.fields.String()
    signer_title = ma.fields.String()
    signer_email = ma.fields.String()
    website = ma.fields.String(allow_none=True)
    created_date = ma.fields.AwareDateTime(attribute="created_at")
    verified_date = ma.fields.AwareDateTime(attribute="verified_at", allow_none=True)
    decided_date = ma.fields.AwareDateTime(attribute="decided_at", allow_none=True)
    withdrawn_date = ma.fields.AwareDateTime(attribute="withdrawn_at", allow_none=True)
    rejection_reason = ma.fields.String()
    history = ma.fields.List(ma.fields.Nested(SignatureEventSchema), attribute="events")


class SignatureFilterArgs(PageArgs):
    status = ma.fields.String(
        validate=ma.validate.OneOf([s.value for s in SignatureStatus]),
        metadata={"description": "Coordinators and admins only; others always see approved signatures"},
    )


class SignSchema(ma.Schema):
    signer_name = ma.fields.String(required=True, validate=[ma.validate.Length(1, 200), single_line])
    signer_title = ma.fields.String(load_default="", validate=[ma.validate.Length(max=200), single_line])


class RejectSchema(ma.Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(1, moderation.REASON_MAX))


_PUBLIC_FIELDS = ("organisation_name", "country", "approved_at", "needs_reconfirmation")
_STAFF_FIELDS = ("id", "status", "source", "signer_name", "signer_title", "signer_email", "website", "created_at",
                 "verified_at", "decided_at", "withdrawn_at", "rejection_reason", "events")  # fmt: skip


def _is_staff() -> bool:
    return current_user.role in STAFF


def _view(signature: Signature, letter: Letter, staff: bool) -> dict[str, Any]:
    """What the caller may see of ``signature``: public fields, or all of them for staff."""
    fields = _PUBLIC_FIELDS + (_STAFF_FIELDS if staff else ())
    view = {name: getattr(signature, name) for name in fields}
    view |= {
        "country_name": country_name(signature.country),
        "revision_number": signature.revision.number if signature.revision else None,
        "signed_published_revision": signature.revision_id in (None, letter.published_revision_id),
    }
    return view


def _refused(exc: services.SignatureError) -> Response:
    """An unusable value is a 422 naming its field, as the schema's own checks answer; any
    other refusal (already signed, letter closed, not awaiting approval) is a 409."""
    if isinstance(exc, services.SignatureInvalid):
        db.session.rollback()
        return problem(422, str(exc), {"json": {exc.field: [str(exc)]}})
    return refused(exc)


def _letter_or_404(slug: str) -> Letter:
    letter = letter_services.get_letter(slug) if len(slug) <= 120 else None
    if letter is None or not (_is_staff() or letter.is_public()):
        abort(404)
    return letter


def _signature_or_404(letter: Letter, id: int) -> Signature:
    signature = db.session.get(Signature, id)
    if signature is None or signature.letter_id != letter.id:
        abort(404)
    return signature


@blp.route("/letters/<slug>/signatures")
@documents(blp, 404, 422)
@api_roles()
@blp.arguments(SignatureFilterArgs, location="query")
@blp.response(200, page_of(SignatureSchema))
def list_signatures(args: dict[str, Any], slug: str) -> Any:
    """A letter's signatures by organisation name: approved ones with public fields,
    or (coordinators and admins) every one with all fields, filtered by ``status``."""
    letter = _letter_or_404(slug)
    staff = _is_staff()
    status = args.get("status") if staff else SignatureStatus.APPROVED.value
    query = (
        sa.select(Signature)
        .where(Signature.letter_id == letter.id)
        .options(selectinload(Signature.revision))
        .order_by(Signature.organisation_key, Signature.id)
    )
    if status:
        query = query.where(Signature.status == status)
    if staff:
        query = query.options(selectinload(Signature.events))
    page = paginate(query, args)
    page["items"] = [_view(signature, letter, staff) for signature in page["items"]]
    return page


@blp.route("/letters/<slug>/signatures", methods=["POST"])
@documents(blp, 404, 409, 422)
@api_roles("member")
@blp.arguments(SignSchema)
@blp.response(201, SignatureSchema)
def sign_letter(data: dict[str, Any], slug: str) -> Any:
    """Sign the letter for your member organisation (a member's token): approved at once."""
    letter = _letter_or_404(slug)
    try:
        signature = services.sign_as_member(letter, current_user, data["signer_name"], data["signer_title"])
    except services.SignatureError as exc:
        return _refused(exc)
    db.session.commit()
    return _view(signature, letter, staff=True)


@blp.route("/letters/<slug>/signatures/<id:id>/approve", methods=["POST"])
@documents(blp, 404, 409)
@api_roles(*STAFF)
@blp.response(200, SignatureSchema)
def approve_signature(slug: str, id: int) -> Any:
    """Approve a signature awaiting approval (coordinators); the signer is told."""
    letter = _letter_or_404(slug)
    signature = _signature_or_404(letter, id)
    try:
        moderation.approve(signature, current_user)
    except services.SignatureError as exc:
        return _refused(exc)
    db.session.commit()
    moderation.notify([signature])
    return _view(signature, letter, staff=True)


@blp.route("/letters/<slug>/signatures/<id:id>/reject", methods=["POST"])
@documents(blp, 404, 409, 422)
@api_roles(*STAFF)
@blp.arguments(RejectSchema)
@blp.response(200, SignatureSchema)
def reject_signature(data: dict[str, Any], slug: str, id: int) -> Any:
    """Reject a signature awaiting approval with a reason the signer is told (coordinators)."""
    letter = _letter_or_404(slug)
    signature = _signature_or_404(letter, id)
    try:
        moderation.reject(signature, data["reason"], current_user)
    except services.SignatureError as exc:
        return _refused(exc)
    db.session.commit()
    moderation.notify([signature])
    return _view(signature, letter, staff=True)
