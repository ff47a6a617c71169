"""Coordinators' pages for mailings: the list, composing, a mailing's page, its checks and its preview.

Approval, sending, cancelling and the deliveries are in ``sending_routes``; the outbox
in ``outbox_routes``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from campaign.auth.forms import ConfirmForm
from campaign.contacts import services as contacts
from campaign.contacts.countries import country_name
from campaign.contacts.models import Contact
from campaign.db import begin_write, page_arg
from campaign.extensions import db
from campaign.forms import choices
from campaign.letters.models import LANGUAGE_NAMES_EN, PUBLISHED, Letter
from campaign.mailings import bp, documents, personalise, services
from campaign.mailings.forms import MailingForm, ResolveForm, SendForm
from campaign.mailings.models import Mailing, MailingStatus
from campaign.mailings.personalise import MERGE_FIELDS, Renderer
from campaign.rendering import TemplateError
from campaign.security import staff_required

if TYPE_CHECKING:
    from campaign.mailings.sending import Progress

PER_PAGE = 50
#: Contacts offered in the preview's list; a larger audience is previewed by contact id.
PREVIEW_CHOICES = 2000
#: The preview of the HTML part: framed by our own pages only, no script, nothing fetched.
PREVIEW_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
#: While a mailing is in one of these states its page follows the progress.
ACTIVE = (MailingStatus.SCHEDULED.value, MailingStatus.SENDING.value)


def get_mailing_or_404(mailing_id: int) -> Mailing:
    return services.get_mailing(mailing_id) or abort(404)


def mailing_for_update(mailing_id: int) -> Mailing:
    """The mailing, locked until the commit, for a request that changes it: its row on
    PostgreSQL (``FOR UPDATE``), the database on SQLite (``BEGIN IMMEDIATE``).  Two clicks
    at once then run one after the other, and the second sees what the first did."""
    db.session.commit()  # end the read transaction the sign-in check opened
    begin_write(db.session)
    found = db.session.get(Mailing, mailing_id, with_for_update=True, populate_existing=True)
    return found or abort(404)


# --- the list ------------------------------------------------------------------------------------


@bp.route("/mailings")
@staff_required
def mailings() -> str:
    query = (
        sa.select(Mailing)
        .options(selectinload(Mailing.letter), selectinload(Mailing.created_by), selectinload(Mailing.approved_by))
        .order_by(Mailing.created_at.desc(), Mailing.id.desc())
    )
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    unsent = (MailingStatus.DRAFT.value, MailingStatus.APPROVED.value)
    progress = {m.id: services.progress(m) for m in page.items if m.status not in unsent}
    return render_template("mailings/mailings.html", page=page, progress=progress)


# --- composing -----------------------------------------------------------------------------------


def letter_choices(current: Letter | None) -> list[SelectChoice]:
    """Published letters, newest first; a mailing's own letter stays listed even if it no longer is."""
    letters = list(
        db.session.scalars(
            sa.select(Letter)
            .where(Letter.status.in_([s.value for s in PUBLISHED]), Letter.published_revision_id.is_not(None))
            .order_by(Letter.updated_at.desc(), Letter.id.desc())
        )
    )
    if current is not None and current not in letters:
        letters.append(current)
    return choices(
        [("", "— choose a letter —"), *((str(letter.id), f"{letter.title} ({letter.status})") for letter in letters)]
    )


def mailing_form(mailing: Mailing | None) -> MailingForm:
    if mailing is None:
        data = {"rate_per_minute": current_app.config["MAILING_RATE"], "letter": request.args.get("letter", "")}
    else:
        names = ("name", "subject", "introduction", "tags", "countries", "languages", "rate_per_minute")
        data = {name: getattr(mailing, name) for name in names} | {"letter": str(mailing.letter_id)}
    form = MailingForm(data=data)
    form.letter.choices = letter_choices(mailing.letter if mailing else None)
    tags = {name for name, _ in contacts.tag_counts()} | set(form.tags.data or [])
    tags |= set(mailing.tags if mailing else [])
    form.tags.choices = choices((tag, tag) for tag in sorted(tags, key=str.casefold))
    saved = contacts.list_audiences()
    form.audience.choices = choices([("", "— choose an audience —"), *((str(a.id), a.name) for a in saved)])
    return form


def _copy_audience(form: MailingForm) -> str | None:
    """The "Copy" button: the saved audience's tags, countries and languages into the form, unsaved."""
    value = form.audience.data or ""
    audience = contacts.get_audience(int(value)) if value.isascii() and value.isdigit() and len(value) <= 9 else None
    if audience is None:
        form.audience.errors = ["Choose a saved audience to copy."]
        return None
    form.tags.data, form.countries.data, form.languages.data = audience.tags, audience.countries, audience.languages
    tags = {choice.value for choice in form.tags.choices} | set(audience.tags)
    form.tags.choices = choices((tag, tag) for tag in sorted(tags, key=str.casefold))
    return f"Copied the audience {audience.name!r}. Nothing is saved until you save the mailing."


def _save(form: MailingForm, mailing: Mailing | None) -> Mailing | None:
    """Create or change the mailing; None with the errors on the form when it cannot be saved."""
    letter = db.session.get(Letter, int(form.letter.data))
    if letter is None:
        form.letter.errors = ["Choose a letter."]
        return None
    if letter.is_published:
        for name, message in services.template_errors(letter, form.subject.data, form.introduction.data).items():
            getattr(form, name).errors = [f"It does not render: {message}."]
        if form.subject.errors or form.introduction.errors:
            return None
    try:
        if mailing is None:
            return services.create_mailing(form.data_for_service(letter), actor=current_user)
        return services.update_mailing(mailing, form.data_for_service(letter), actor=current_user)
    except services.MailingError as exc:
        db.session.rollback()
        if not form.attach_error(str(exc)):
            form.form_errors.append(str(exc))
        return None


def _compose(mailing: Mailing | None) -> str | Response:
    form = mailing_form(mailing)
    copied = None
    if request.method == "POST" and form.copy_audience.data:
        copied = _copy_audience(form)
    elif form.validate_on_submit():
        was_approved = mailing is not None and mailing.is_approved
        version = mailing.version if mailing else None
        saved = _save(form, mailing)
        if saved is not None:
            db.session.commit()
            if mailing is None:
                flash(f"Drafted the mailing {saved.name!r}.", "success")
            elif saved.version == version:
                flash("Nothing changed.", "info")
            elif was_approved:
                flash(
                    "Saved. Its approval is withdrawn: a coordinator other than its author approves it again.",
                    "warning",
                )
            else:
                flash("Saved.", "success")
            return redirect(url_for("mailings.mailing", mailing_id=saved.id))
    error = None
    if request.method == "POST" and copied is None and not form.copy_audience.data:
        error = " ".join(form.form_errors) or "The mailing was not saved: correct the fields marked below."
    return render_template(
        "mailings/mailing_form.html", form=form, mailing=mailing, error=error, copied=copied, merge_fields=MERGE_FIELDS
    )


@bp.route("/mailings/new", methods=["GET", "POST"])
@staff_required
def new_mailing() -> str | Response:
    return _compose(None)


@bp.route("/mailings/<id:mailing_id>/edit", methods=["GET", "POST"])
@staff_required
def edit_mailing(mailing_id: int) -> str | Response:
    mailing = mailing_for_update(mailing_id) if request.method == "POST" else get_mailing_or_404(mailing_id)
    if not mailing.editable:
        flash(f"This mailing is {mailing.status}: it can no longer be changed.", "info")
        return redirect(url_for("mailings.mailing", mailing_id=mailing.id))
    return _compose(mailing)


# --- a mailing's page ----------------------------------------------------------------------------


def mailing_page(mailing: Mailing, send_form: SendForm | None = None) -> str:
    """The mailing's page; the send form comes back with its errors when a send was refused."""
    deliverable, suppressed = services.recipient_counts(mailing)
    uncertain = services.uncertain_deliveries(mailing)
    progress = services.progress(mailing)
    return render_template(
        "mailings/mailing.html",
        mailing=mailing,
        deliverable=deliverable,
        suppressed=suppressed,
        uncovered=services.uncovered(mailing),
        progress=progress if progress.total else None,
        summary=progress_summary(mailing, progress),
        active=mailing.status in ACTIVE,
        due_times=services.due_times(mailing) if progress.total else [],
        uncertain=[(delivery, ResolveForm(prefix=f"d{delivery.id}", formdata=None)) for delivery in uncertain],
        send_form=send_form or SendForm(formdata=None),
        confirm=ConfirmForm(),
        is_author=mailing.created_by_id == current_user.id,
        country_name=country_name,
        documents=documents.listed(mailing.id) if mailing.approved_at else [],
        language_names=LANGUAGE_NAMES_EN,
    )


@bp.route("/mailings/<id:mailing_id>")
@staff_required
def mailing(mailing_id: int) -> str:
    return mailing_page(get_mailing_or_404(mailing_id))


@bp.route("/mailings/<id:mailing_id>/documents/<lang>.pdf")
@staff_required
def document(mailing_id: int, lang: str) -> Response:
    """The PDF attached to the mailing's messages in ``lang``, as rendered at approval."""
    found = personalise.stored_document(get_mailing_or_404(mailing_id).id, lang)
    if found is None:
        abort(404)
    response = current_app.response_class(found.content, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{found.filename}"'
    return response


def progress_summary(mailing: Mailing, progress: Progress) -> str:
    """One sentence for people (and the live region): where the mailing stands."""
    if not progress.total:
        return f"{mailing.status_enum.label}: nothing sent yet."
    states = ", ".join(f"{count} {state}" for state, count in progress.counts.items() if count)
    return f"{mailing.status_enum.label}: {progress.done} of {progress.total} handled ({progress.percent} %): {states}."


@bp.route("/mailings/<id:mailing_id>/progress")
@staff_required
def progress(mailing_id: int) -> Response:
    """The deliveries per state, for the page's progress bar (static/js/mailing-progress.js)."""
    mailing = get_mailing_or_404(mailing_id)
    found = services.progress(mailing)
    return jsonify(
        status=mailing.status,
        status_label=mailing.status_enum.label,
        active=mailing.status in ACTIVE,
        counts=found.counts,
        total=found.total,
        done=found.done,
        percent=found.percent,
        summary=progress_summary(mailing, found),
    )


@bp.route("/mailings/<id:mailing_id>/check")
@staff_required
def check(mailing_id: int) -> str:
    """Every deliverable recipient rendered, as approval will: each failure with its contact and reason."""
    mailing = get_mailing_or_404(mailing_id)
    failures = services.check_recipients(mailing)
    deliverable, _ = services.recipient_counts(mailing)
    ids = [failure.contact_id for failure in failures]
    found = {contact.id: contact for contact in db.session.scalars(sa.select(Contact).where(Contact.id.in_(ids)))}
    return render_template(
        "mailings/check.html", mailing=mailing, failures=failures, contacts=found, deliverable=deliverable
    )


# --- preview -------------------------------------------------------------------------------------


def recipient_choices(mailing: Mailing) -> list[SelectChoice]:
    rows = db.session.execute(
        services.recipients_query(mailing)
        .with_only_columns(
            Contact.id,
            Contact.email,
            Contact.country,
            Contact.honorific,
            Contact.given_name,
            Contact.family_name,
            Contact.language,
            Contact.suppression,
        )
        .limit(PREVIEW_CHOICES)
    )
    labels = []
    for row in rows:
        name = " ".join(part for part in (row.honorific, row.given_name, row.family_name) if part)
        state = ", suppressed" if row.suppression else ""
        labels.append(
            SelectChoice(str(row.id), f"{country_name(row.country)} — {name} <{row.email}> ({row.language}{state})")
        )
    return labels


@bp.route("/mailings/<id:mailing_id>/preview")
@staff_required
def preview(mailing_id: int) -> str:
    """The message as one recipient receives it: subject, the HTML part (framed) and the text part."""
    mailing = get_mailing_or_404(mailing_id)
    recipients = recipient_choices(mailing)
    wanted = request.args.get("contact", type=int) or (int(recipients[0].value) if recipients else None)
    contact = db.session.get(Contact, wanted) if wanted and wanted < 2**31 else None
    rendered, error = None, None
    if contact is not None:
        try:
            rendered = Renderer(mailing).render(contact)
        except TemplateError as exc:
            error = str(exc)
    return render_template(
        "mailings/preview.html",
        mailing=mailing,
        recipients=recipients,
        contact=contact,
        rendered=rendered,
        error=error,
        confirm=ConfirmForm(),
    )


@bp.route("/mailings/<id:mailing_id>/preview/<id:contact_id>/html")
@staff_required
def preview_html(mailing_id: int, contact_id: int) -> Response:
    """The HTML part alone, for the preview's sandboxed frame."""
    mailing = get_mailing_or_404(mailing_id)
    contact = db.session.get(Contact, contact_id) or abort(404)
    try:
        html = Renderer(mailing).render(contact).html
    except TemplateError as exc:
        abort(422, f"The message does not render for this recipient: {exc}")
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
