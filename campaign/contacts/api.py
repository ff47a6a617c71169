"""JSON endpoints of the contacts domain: ``/api/v1/contacts`` and its CSV import (staff only)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import abort, request
from flask_smorest import Blueprint
from sqlalchemy.orm import selectinload

from campaign.contacts import services
from campaign.contacts.csvio import MAX_BYTES
from campaign.contacts.models import Contact, Suppression
from campaign.extensions import db
from campaign.letters.models import UN_LANGUAGES
from campaign.restapi import PREFIX, PageArgs, api_roles, documents, page_of, paginate, problem, takes

blp = Blueprint("contacts_api", __name__, url_prefix=PREFIX, description="Mission contacts")

STAFF = ("coordinator", "admin")
SUPPRESSIONS = [s.value for s in Suppression]
_line = ma.validate.Regexp(r"^[^\r\n\x00]*$", error="Must be a single line.")


def _text(limit: int, **kwargs: Any) -> ma.fields.String:
    return ma.fields.String(validate=[ma.validate.Length(max=limit), _line], **kwargs)


class ContactSchema(ma.Schema):
    """A contact, with field names from the Open Supporter Data Interface where one fits."""

    id = ma.fields.Integer(dump_only=True)
    email = _text(254, required=True, metadata={"description": "Stored lower-cased; unique"})
    country = _text(2, required=True, metadata={"description": "ISO 3166-1 alpha-2", "example": "FR"})
    organisation = _text(300, load_default="")
    honorific_prefix = _text(80, attribute="honorific", load_default="")
    given_name = _text(120, load_default="")
    family_name = _text(120, load_default="")
    position = _text(300, load_default="")
    salutation = _text(300, load_default="", metadata={"example": "Excellency,"})
    language = ma.fields.String(load_default="en", validate=ma.validate.OneOf(list(UN_LANGUAGES)))
    languages_spoken = ma.fields.Function(
        lambda contact: [contact.language], dump_only=True, metadata={"type": "array", "items": {"type": "string"}}
    )
    timezone = _text(64, load_default=None, allow_none=True, metadata={"description": "IANA; default a setting"})
    tags = ma.fields.List(_text(64), load_default=list, validate=ma.validate.Length(max=100))
    notes = _text(5000, load_default="")
    suppression = ma.fields.String(dump_only=True, allow_none=True, metadata={"enum": [*SUPPRESSIONS, None]})
    suppression_reason = ma.fields.String(dump_only=True)
    suppressed_date = ma.fields.AwareDateTime(attribute="suppressed_at", dump_only=True, allow_none=True)
    needs_verification = ma.fields.Boolean(dump_only=True)
    last_verified_date = ma.fields.AwareDateTime(attribute="last_verified_at", dump_only=True, allow_none=True)
    created_date = ma.fields.AwareDateTime(attribute="created_at", dump_only=True)
    modified_date = ma.fields.AwareDateTime(attribute="updated_at", dump_only=True)


class ContactUpdateSchema(ContactSchema):
    """Omitted fields keep their value; `suppression` null makes the contact deliverable."""

    email = _text(254)
    country = _text(2)
    organisation = _text(300)
    honorific_prefix = _text(80, attribute="honorific")
    given_name = _text(120)
    family_name = _text(120)
    position = _text(300)
    salutation = _text(300)
    language = ma.fields.String(validate=ma.validate.OneOf(list(UN_LANGUAGES)))
    timezone = _text(64, allow_none=True)
    tags = ma.fields.List(_text(64), validate=ma.validate.Length(max=100))
    notes = _text(5000)
    suppression = ma.fields.String(allow_none=True, validate=ma.validate.OneOf(SUPPRESSIONS))
    suppression_reason = _text(500)


class ContactFilterArgs(PageArgs):
    q = _text(200, metadata={"description": "Words found in the email, names, organisation or position"})
    country = ma.fields.String(validate=ma.validate.Regexp(r"^[A-Za-z]{2}$"))
    tag = _text(64)
    language = ma.fields.String(validate=ma.validate.OneOf(list(UN_LANGUAGES)))
    suppression = ma.fields.String(validate=ma.validate.OneOf(services.FILTER_SUPPRESSION))


class ImportArgs(ma.Schema):
    dry_run = ma.fields.Boolean(load_default=False, metadata={"description": "Check and report; import nothing"})
    accept_valid = ma.fields.Boolean(load_default=False, metadata={"description": "Import the valid rows anyway"})


class RejectedRowSchema(ma.Schema):
    line = ma.fields.Integer(required=True)
    email = ma.fields.String(required=True)
    reason = ma.fields.String(required=True)


class ImportReportSchema(ma.Schema):
    total = ma.fields.Integer(required=True)
    valid = ma.fields.Integer(required=True)
    new = ma.fields.Integer(required=True)
    updated = ma.fields.Integer(required=True)
    unchanged = ma.fields.Integer(required=True)
    rejected = ma.fields.List(ma.fields.Nested(RejectedRowSchema), required=True)
    warnings = ma.fields.List(ma.fields.String(), required=True)
    imported = ma.fields.Boolean(required=True)
    dry_run = ma.fields.Boolean(required=True)


CSV_BODY = {
    "required": True,
    "description": "UTF-8 CSV with a header row; at most 20 MB and 200,000 rows. "
    "Columns: country_code and email (required), country, organisation, honorific, first_name, last_name, "
    "position, salutation, language, tags (separated by ;), timezone, notes.",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}


def _contact_or_404(id: int) -> Contact:
    return services.get_contact(id) or abort(404)


def _save(action: Any, *args: Any, status: int = 200) -> Any:
    """Run a service, answering 409 for a taken email and 422 for other broken rules."""
    try:
        contact = action(*args)
    except services.ContactError as exc:
        db.session.rollback()
        return problem(409 if isinstance(exc, services.DuplicateEmailError) else 422, str(exc))
    db.session.commit()
    return contact, status


@blp.route("/contacts")
@documents(blp, 422)
@api_roles(*STAFF)
@blp.arguments(ContactFilterArgs, location="query")
@blp.response(200, page_of(ContactSchema))
def list_contacts(args: dict[str, Any]) -> Any:
    """Contacts by country, organisation and email; filter by words, country, tag, language, suppression."""
    keys = ("q", "country", "tag", "language", "suppression")
    query = services.filter_query(services.ContactFilter(**{key: args.get(key, "") for key in keys}))
    return paginate(query.options(selectinload(Contact.tag_rows)), args)


@blp.route("/contacts", methods=["POST"])
@documents(blp, 409, 422)
@api_roles(*STAFF)
@blp.arguments(ContactSchema)
@blp.response(201, ContactSchema)
def create_contact(data: dict[str, Any]) -> Any:
    """Add a contact; the email must be new (compared case-insensitively)."""
    return _save(services.create_contact, services.ContactData(**data), status=201)


@blp.route("/contacts/<id:id>")
@documents(blp, 404)
@api_roles(*STAFF)
@blp.response(200, ContactSchema)
def get_contact(id: int) -> Any:
    return _contact_or_404(id)


@blp.route("/contacts/<id:id>", methods=["PATCH"])
@documents(blp, 404, 409, 422)
@api_roles(*STAFF)
@blp.arguments(ContactUpdateSchema)
@blp.response(200, ContactSchema)
def update_contact(data: dict[str, Any], id: int) -> Any:
    """Change a contact; omitted fields keep their value.  `suppression` (with an optional
    `suppression_reason`) stops mail to it; `null` makes it deliverable again."""
    contact = _contact_or_404(id)
    suppression = data.pop("suppression", ...)
    note = data.pop("suppression_reason", "")
    merged = services.ContactData(**{**vars(services.ContactData.of(contact)), **data})

    def change(contact: Contact) -> Contact:
        services.update_contact(contact, merged)
        if suppression is None:
            services.unsuppress(contact)
        elif suppression is not ... and (suppression != contact.suppression or note):
            services.suppress(contact, suppression, note)
        return contact

    return _save(change, contact)


@blp.route("/contacts/<id:id>", methods=["DELETE"])
@documents(blp, 404)
@api_roles(*STAFF)
@blp.response(204)
def delete_contact(id: int) -> Any:
    """Delete a contact and its history (the audit log keeps the deletion)."""
    services.delete_contact(_contact_or_404(id))
    db.session.commit()
    return ""


@blp.route("/contacts/import", methods=["POST"])
@documents(blp, 413, 415, 422)
@api_roles(*STAFF)
@blp.arguments(ImportArgs, location="query")
@blp.doc(requestBody=CSV_BODY)
@blp.response(200, ImportReportSchema)
@takes("text/csv")
def import_contacts(args: dict[str, Any]) -> Any:
    """Import contacts from a CSV body (`Content-Type: text/csv`), as `flask contacts import` does.

    Answers the report: `imported` is false on a dry run, or when rows were rejected and
    `accept_valid` was not given (nothing is then imported).  A file that cannot be read
    at all (encoding, header, size) is a 422 problem whose `detail` says why.
    """
    if request.mimetype != "text/csv":
        return problem(415, "Send the file as the request body with Content-Type: text/csv.")
    request.max_content_length = MAX_BYTES
    report = services.import_csv(request.get_data(), dry_run=args["dry_run"], accept_valid=args["accept_valid"])
    if report.error:
        db.session.rollback()
        return problem(422, report.error)
    db.session.commit()
    return report
