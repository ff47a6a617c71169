"""A mailing's delivery report: counts and charts, the deliveries that need a look with their
evidence, the CSV export and the printable delivery record (what a coordinator shows a donor:
per mission, the letter was delivered).

The filters (state, language, country) narrow the list, the export and the record; the
counts and charts always cover the whole mailing.  Exporting and printing are recorded in
the audit log.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, render_template, request, stream_with_context

from campaign import audit
from campaign.db import page_arg
from campaign.extensions import db
from campaign.mailings import bp, report
from campaign.mailings.models import DeliveryStatus, Mailing
from campaign.mailings.routes import get_mailing_or_404
from campaign.security import staff_required
from campaign.spreadsheets import csv_lines

PER_PAGE = 50


def _filename(mailing: Mailing, extension: str) -> str:
    return f"mailing-{mailing.id}-deliveries-{datetime.now(UTC):%Y%m%d-%H%M}.{extension}"


@bp.route("/mailings/<id:mailing_id>/report")
@staff_required
def report_page(mailing_id: int) -> str:
    """Counts by state, language and country with charts, and the deliveries that need a look."""
    mailing = get_mailing_or_404(mailing_id)
    filters = report.Filters.from_args(request.args)
    states = report.by_state(mailing.id)
    languages = report.by_language(mailing.id)
    countries = report.by_country(mailing.id)
    regions = report.by_region(countries)
    everything = report.Group("all", "All deliveries", {s: n for s, n in states.items() if n})
    page = db.paginate(report.attention_query(mailing.id, filters), page=page_arg(), per_page=PER_PAGE, error_out=False)
    return render_template(
        "mailings/report.html",
        mailing=mailing,
        filters=filters,
        states=states,
        total=sum(states.values()),
        languages=languages,
        countries=countries,
        regions=regions,
        reached=sum(1 for country in countries if country.reached),
        outcomes=report.OUTCOMES,
        by_language_svg=report.outcome_chart("by-language", "Deliveries by language", languages, everything),
        by_region_svg=report.outcome_chart("by-region", "Deliveries by UN regional group", regions),
        page=page,
        evidence=report.last_events([delivery.id for delivery in page.items]),
        attention=[state.value for state in report.ATTENTION],
        delivery_states=[state.value for state in DeliveryStatus],
        language_name=report.language_name,
        occurred_at=report.occurred_at,
    )


@bp.route("/mailings/<id:mailing_id>/report.csv")
@staff_required
def report_csv(mailing_id: int) -> Response:
    """The deliveries matching the filters, one row each, streamed; formula-like cells neutralised."""
    mailing = get_mailing_or_404(mailing_id)
    filters = report.Filters.from_args(request.args)
    audit.record("mailings.report_export", mailing, f"Exported the deliveries of mailing {mailing.id} as CSV",
                 filters=filters.as_args())  # fmt: skip
    db.session.commit()
    return Response(
        stream_with_context(csv_lines(report.EXPORT_FIELDS, report.export_rows(mailing.id, filters))),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{_filename(mailing, "csv")}"'},
    )


@bp.route("/mailings/<id:mailing_id>/record")
@staff_required
def record(mailing_id: int) -> str:
    """The printable delivery record: the mailing, then each delivery with its message id and
    every event of its history.  The deliveries are read a page at a time as the template
    reaches them, so only the page being written is held as objects."""
    mailing = get_mailing_or_404(mailing_id)
    filters = report.Filters.from_args(request.args)
    audit.record("mailings.record", mailing, f"Opened the delivery record of mailing {mailing.id}",
                 filters=filters.as_args())  # fmt: skip
    db.session.commit()
    return render_template(
        "mailings/record.html",
        mailing=mailing,
        filters=filters,
        states=report.by_state(mailing.id),
        printed_at=datetime.now(UTC),
        pages=report.pages(mailing.id, filters, events=True),
        occurred_at=report.occurred_at,
        language_name=report.language_name,
    )
