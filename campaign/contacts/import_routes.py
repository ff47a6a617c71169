"""The CSV import page and its template file.

The uploaded file is read in memory and never kept: after fixing the rejected rows,
the coordinator uploads the file again.
"""

from __future__ import annotations

from flask import Response, render_template, request
from flask_login import current_user

from campaign.contacts import bp, csvio, services
from campaign.contacts.forms import ImportForm
from campaign.extensions import db
from campaign.security import staff_required


@bp.route("/import", methods=["GET", "POST"])
@staff_required
def import_contacts() -> str:
    request.max_content_length = csvio.MAX_BYTES  # a 50,000-row directory is larger than other uploads
    form = ImportForm()
    report = None
    if form.validate_on_submit():
        data = form.file.data.read()
        report = services.import_csv(
            data, dry_run=form.dry_run.data, accept_valid=form.accept_valid.data, actor=current_user
        )
        if report.imported:
            db.session.commit()
        else:
            db.session.rollback()
    return render_template(
        "contacts/import.html",
        form=form,
        report=report,
        columns=csvio.COLUMNS,
        aliases=csvio.ALIASES,
        required=csvio.REQUIRED,
        max_megabytes=csvio.MAX_BYTES // (1024 * 1024),
    )


@bp.route("/import/template.csv")
@staff_required
def import_template() -> Response:
    """An empty file with the header row, to fill in a spreadsheet and save as CSV UTF-8."""
    header = ",".join(csvio.COLUMNS) + "\r\n"
    return Response(
        header,
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="contacts-template.csv"'},
    )
