"""Coverage of the UN Member States, and saved audiences."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from campaign.auth.forms import ConfirmForm
from campaign.contacts import bp, services
from campaign.contacts.countries import country_name
from campaign.contacts.forms import AudienceForm
from campaign.contacts.models import Audience, Contact
from campaign.extensions import db
from campaign.forms import choices
from campaign.letters.models import LANGUAGE_NAMES_EN
from campaign.security import staff_required


@bp.route("/coverage")
@staff_required
def coverage() -> str:
    """Every UN Member State with its deliverable and suppressed contacts; the gaps first."""
    rows = services.coverage()
    covered = sum(1 for row in rows if row.deliverable)
    only_gaps = request.args.get("gaps") == "1"
    shown = [row for row in rows if not (only_gaps and row.deliverable)]
    shown.sort(key=lambda row: bool(row.deliverable))  # stable: by name within gaps, then within covered
    return render_template("contacts/coverage.html", rows=shown, total=len(rows), covered=covered, only_gaps=only_gaps)


def deliverable_count(audience: Audience) -> int:
    query = services.audience_query(audience).where(Contact.suppression.is_(None)).order_by(None)
    return db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0


@bp.route("/audiences")
@staff_required
def audiences() -> str:
    found = services.list_audiences()
    return render_template(
        "contacts/audiences.html",
        audiences=[(audience, deliverable_count(audience)) for audience in found],
        country_name=country_name,
        language_names=LANGUAGE_NAMES_EN,
    )


def audience_form(audience: Audience | None) -> AudienceForm:
    form = AudienceForm(obj=audience)
    # Tags in use, and the audience's own even if no contact carries them any more.
    tags = {name for name, _ in services.tag_counts()} | set(audience.tags if audience else [])
    form.tags.choices = choices((tag, tag) for tag in sorted(tags, key=str.casefold))
    return form


def _save(form: AudienceForm, audience: Audience | None) -> Audience | None:
    try:
        saved = services.save_audience(
            form.name.data,
            form.tags.data or [],
            form.countries.data or [],
            form.languages.data or [],
            audience=audience,
            actor=current_user,
        )
    except services.ContactError as exc:
        db.session.rollback()
        form.name.errors = [*form.name.errors, str(exc)]
        return None
    db.session.commit()
    count = deliverable_count(saved)
    flash(f"Saved the audience {saved.name!r}: {count} deliverable contact{'' if count == 1 else 's'}.", "success")
    return saved


@bp.route("/audiences/new", methods=["GET", "POST"])
@staff_required
def new_audience() -> str | Response:
    form = audience_form(None)
    if form.validate_on_submit() and _save(form, None):
        return redirect(url_for("contacts.audiences"))
    return render_template("contacts/audience_form.html", form=form, audience=None)


@bp.route("/audiences/<id:audience_id>", methods=["GET", "POST"])
@staff_required
def edit_audience(audience_id: int) -> str | Response:
    audience = services.get_audience(audience_id) or abort(404)
    form = audience_form(audience)
    if form.validate_on_submit() and _save(form, audience):
        return redirect(url_for("contacts.audiences"))
    return render_template(
        "contacts/audience_form.html",
        form=form,
        audience=audience,
        count=deliverable_count(audience),
        confirm=ConfirmForm(),
    )


@bp.route("/audiences/<id:audience_id>/delete", methods=["POST"])
@staff_required
def delete_audience(audience_id: int) -> Response:
    audience = services.get_audience(audience_id) or abort(404)
    if ConfirmForm().validate_on_submit():
        name = audience.name
        services.delete_audience(audience, actor=current_user)
        db.session.commit()
        flash(f"Deleted the audience {name!r}.", "success")
    return redirect(url_for("contacts.audiences"))
