"""Coordinators' pages for contacts: the list with bulk tags and export, a contact's page and its changes.

The import is in ``import_routes``; coverage and audiences in ``audience_routes``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response as BaseResponse

from campaign import audit
from campaign.auth.forms import ConfirmForm
from campaign.contacts import bp, services
from campaign.contacts.countries import country_name
from campaign.contacts.forms import (
    BulkTagsForm,
    ContactFilterForm,
    ContactForm,
    SuppressForm,
    country_pairs,
    split_tags,
    suppression_label,
)
from campaign.contacts.models import Contact
from campaign.db import page_arg
from campaign.extensions import db
from campaign.forms import choices
from campaign.security import staff_required

PER_PAGE = 50


def get_contact_or_404(contact_id: int) -> Contact:
    return services.get_contact(contact_id) or abort(404)


def filter_form() -> ContactFilterForm:
    """The list's filters from the query string, their choices from what the directory holds."""
    form = ContactFilterForm(request.args)
    used = db.session.scalars(sa.select(Contact.country).distinct())
    form.country.choices = choices([("", "Any country"), *country_pairs(used)])
    form.tag.choices = choices([("", "Any tag"), *((name, f"{name} ({n})") for name, n in services.tag_counts())])
    return form


def criteria(form: ContactFilterForm) -> services.ContactFilter:
    if not form.validate():
        return services.ContactFilter()
    return services.ContactFilter(
        q=form.q.data or "",
        country=form.country.data or "",
        tag=form.tag.data or "",
        language=form.language.data or "",
        suppression=form.suppression.data or "",
    )


@bp.app_template_filter("contact_state")
def contact_state(contact: Contact) -> str:
    return suppression_label(contact.suppression)


@bp.app_template_filter("change_value")
def change_value(value: object) -> str:
    """One side of a change in a contact's history: tags joined, nothing as a dash."""
    if isinstance(value, list):
        value = "; ".join(map(str, value))
    return str(value) if value not in (None, "") else "—"


@bp.route("")
@staff_required
def contacts() -> str:
    form = filter_form()
    query = services.filter_query(criteria(form)).options(selectinload(Contact.tag_rows))
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    return render_template(
        "contacts/contacts.html",
        form=form,
        page=page,
        args=form.args(),
        bulk=BulkTagsForm(formdata=None),
        country_name=country_name,
    )


@bp.route("/export.csv")
@staff_required
def export() -> Response:
    """The contacts the current filters select, as CSV, streamed."""
    query = services.filter_query(criteria(ContactFilterForm(request.args)))  # no choices needed to read filters
    audit.record("contacts.export", None, "Exported contacts as CSV", filters=dict(request.args))
    db.session.commit()
    filename = f"contacts-{datetime.now(UTC):%Y%m%d-%H%M}.csv"
    return Response(
        stream_with_context(services.export_csv(query)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.route("/tags", methods=["POST"])
@staff_required
def bulk_tags() -> BaseResponse:
    """Add or remove tags on the contacts ticked in the list, then return to the same filtered page."""
    form = BulkTagsForm()
    back = {k: v for k, v in request.form.items() if k in ("q", "country", "tag", "language", "suppression", "page")}
    ids = [int(v) for v in request.form.getlist("ids") if v.isascii() and v.isdigit() and len(v) <= 9]
    adding = request.form.get("action") != "remove"
    if not form.validate_on_submit():
        flash(" ".join(form.bulk_tag.errors) or "The form expired; please try again.", "error")
    elif not ids:
        flash("Tick the contacts to tag first.", "error")
    else:
        tags = split_tags(form.bulk_tag.data)
        try:
            changed = (services.add_tags if adding else services.remove_tags)(ids, tags, actor=current_user)
        except services.ContactError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            verb = "Tagged" if adding else "Removed the tag from"
            flash(f"{verb} {changed} of the {len(ids)} selected contacts: {'; '.join(tags)}.", "success")
    return redirect(url_for("contacts.contacts", **back))


@bp.route("/new", methods=["GET", "POST"])
@staff_required
def new_contact() -> str | BaseResponse:
    form = ContactForm()
    error = None
    if form.validate_on_submit():
        try:
            contact = services.create_contact(form.data_for_service(), actor=current_user)
        except services.ContactError as exc:
            db.session.rollback()
            error = _form_error(form, str(exc))
        else:
            db.session.commit()
            flash(f"Added {contact.email}.", "success")
            return redirect(url_for("contacts.contact", contact_id=contact.id))
    return render_template("contacts/contact_form.html", form=form, contact=None, error=error)


@bp.route("/<id:contact_id>/edit", methods=["GET", "POST"])
@staff_required
def edit_contact(contact_id: int) -> str | BaseResponse:
    contact = get_contact_or_404(contact_id)
    form = ContactForm()
    if request.method == "GET":
        form.fill_from(services.ContactData.of(contact))
    error = None
    if form.validate_on_submit():
        try:
            services.update_contact(contact, form.data_for_service(), actor=current_user)
        except services.ContactError as exc:
            db.session.rollback()
            error = _form_error(form, str(exc))
        else:
            db.session.commit()
            flash(f"Saved {contact.email}.", "success")
            return redirect(url_for("contacts.contact", contact_id=contact.id))
    return render_template("contacts/contact_form.html", form=form, contact=contact, error=error)


def _form_error(form: ContactForm, message: str) -> str:
    """The summary above the form; the message itself goes beside its field when it names one."""
    if form.attach_error(message):
        return "The contact was not saved: correct the field marked below."
    return f"The contact was not saved: {message}"


@bp.route("/<id:contact_id>")
@staff_required
def contact(contact_id: int) -> str:
    from campaign.mailings.tracking import deliveries_of_contact  # mailings builds on contacts, not the reverse

    found = get_contact_or_404(contact_id)
    return render_template(
        "contacts/contact.html",
        contact=found,
        deliveries=deliveries_of_contact(found.id),
        suppress_form=SuppressForm(formdata=None),
        confirm=ConfirmForm(),
        country_name=country_name,
    )


@bp.route("/<id:contact_id>/suppress", methods=["POST"])
@staff_required
def suppress(contact_id: int) -> BaseResponse:
    found = get_contact_or_404(contact_id)
    form = SuppressForm()
    if form.validate_on_submit():
        try:
            services.suppress(found, form.reason.data, form.note.data or "", actor=current_user)
        except services.ContactError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"No more mail goes to {found.email}: {contact_state(found)}.", "success")
    else:
        flash(" ".join(e for errors in form.errors.values() for e in errors), "error")
    return redirect(url_for("contacts.contact", contact_id=found.id))


@bp.route("/<id:contact_id>/unsuppress", methods=["POST"])
@staff_required
def unsuppress(contact_id: int) -> BaseResponse:
    found = get_contact_or_404(contact_id)
    if ConfirmForm().validate_on_submit():
        services.unsuppress(found, actor=current_user)
        db.session.commit()
        flash(f"{found.email} is deliverable again.", "success")
    return redirect(url_for("contacts.contact", contact_id=found.id))


@bp.route("/<id:contact_id>/verify", methods=["POST"])
@staff_required
def verify(contact_id: int) -> BaseResponse:
    found = get_contact_or_404(contact_id)
    if ConfirmForm().validate_on_submit():
        services.mark_verified(found, actor=current_user)
        db.session.commit()
        flash(f"Recorded that {found.email} was verified today.", "success")
    return redirect(url_for("contacts.contact", contact_id=found.id))


@bp.route("/<id:contact_id>/delete", methods=["GET", "POST"])
@staff_required
def delete_contact(contact_id: int) -> str | BaseResponse:
    """A confirmation page; its POST deletes the contact and its history (the audit log keeps the address)."""
    found = get_contact_or_404(contact_id)
    form = ConfirmForm()
    if form.validate_on_submit():
        email = found.email
        services.delete_contact(found, actor=current_user)
        db.session.commit()
        flash(f"Deleted {email}.", "success")
        return redirect(url_for("contacts.contacts"))
    return render_template("contacts/delete.html", contact=found, form=form, country_name=country_name)
