"""Coordinators' report on a letter's signatures: counts, the full list, charts, exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

from flask import Response, abort, render_template, stream_with_context

from campaign import audit
from campaign.extensions import db
from campaign.letters import services as letter_services
from campaign.letters.models import Letter
from campaign.security import staff_required
from campaign.signatures import admin_bp, charts, listing
from campaign.signatures.models import SignatureStatus
from campaign.spreadsheets import csv_lines


def _letter_or_404(slug: str) -> Letter:
    return letter_services.get_letter(slug) or abort(404)


@admin_bp.route("/letters/<slug>/report")
@staff_required
def letter_report(slug: str) -> str:
    """Counts by status, charts of approvals over time and by region, and every signature."""
    letter = _letter_or_404(slug)
    signatures = list(db.session.scalars(listing.signatures_query(letter)))
    approved = [s for s in signatures if s.status == SignatureStatus.APPROVED]
    timeline = charts.cumulative_by_day(s.approved_at for s in approved)
    regions = charts.by_region(s.country for s in approved)
    return render_template(
        "signatures/report/letter.html",
        letter=letter,
        counts=listing.status_counts(letter),
        statuses=list(SignatureStatus),
        signatures=signatures,
        timeline=timeline,
        regions=regions,
        over_time_svg=charts.over_time_svg(timeline),
        by_region_svg=charts.by_region_svg(regions),
        region_of=charts.region_of,
    )


def _filename(letter: Letter, extension: str) -> str:
    return f"signatures-{letter.slug}-{datetime.now(UTC):%Y%m%d-%H%M}.{extension}"


def _csv_lines(letter: Letter) -> Iterator[str]:
    query = listing.signatures_query(letter).execution_options(yield_per=500)
    batches = (
        (
            [record[field] for field in listing.EXPORT_FIELDS]
            for record in (listing.export_record(s, letter.published_revision_id) for s in partition)
        )
        for partition in db.session.scalars(query).partitions()
    )
    yield from csv_lines(listing.EXPORT_FIELDS, batches)


@admin_bp.route("/letters/<slug>/export.csv")
@staff_required
def export_csv(slug: str) -> Response:
    """Every signature, all fields, as CSV; cells a spreadsheet would run as a formula are neutralised."""
    letter = _letter_or_404(slug)
    audit.record("signatures.export", letter, summary=f"Exported the signatures of {letter.slug} as CSV")
    db.session.commit()
    return Response(
        stream_with_context(_csv_lines(letter)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{_filename(letter, "csv")}"'},
    )


@admin_bp.route("/letters/<slug>/export.json")
@staff_required
def export_json(slug: str) -> Response:
    """Every signature, all fields, as JSON: ``{"letter", "exported_date", "signatures": [...]}``."""
    letter = _letter_or_404(slug)
    records = [
        listing.export_record(signature, letter.published_revision_id)
        for signature in db.session.scalars(listing.signatures_query(letter))
    ]
    audit.record("signatures.export", letter, summary=f"Exported the signatures of {letter.slug} as JSON")
    db.session.commit()
    body = {"letter": letter.slug, "exported_date": datetime.now(UTC).isoformat(), "signatures": records}
    return Response(
        json.dumps(body, ensure_ascii=False, indent=1),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{_filename(letter, "json")}"'},
    )
