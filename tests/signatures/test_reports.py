"""Coordinators' report: counts, charts as accessible SVG, CSV and JSON exports, staff only."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from campaign.extensions import db
from campaign.signatures import charts
from campaign.signatures.models import Signature
from tests.letters.publishing import ORIGINAL, publish
from tests.signatures.test_listing import add_signatures

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - the app's own output


@pytest.fixture
def letter(app):
    published = publish(app, ORIGINAL)
    add_signatures(
        app,
        published.slug,
        [
            ('=HYPERLINK("http://evil")', "FR", "approved", "a@example.org"),
            ("+Plus Org", "KE", "approved", "b@example.org"),
            ("-Minus Org", "BR", "approved", "c@example.org"),
            ("@At Org", "JP", "pending_approval", "d@example.org"),
            ("\tTab Org", "PL", "rejected", "e@example.org"),
            ("Plain Org", "US", "withdrawn", "f@example.org"),
        ],
    )
    return published


def test_regions_cover_every_member_state():
    from campaign.contacts.countries import UN_MEMBER_STATES

    assert all(charts.region_of(code) != charts.OTHER for code in UN_MEMBER_STATES)
    assert charts.region_of("KE") == charts.AFRICA and charts.region_of("us") == charts.WEOG
    assert charts.region_of("PS") == charts.ASIA_PACIFIC and charts.region_of("ZZ") == charts.OTHER


def test_cumulative_by_day_fills_gaps():
    moments = [datetime(2026, 1, 1, 9, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)]
    assert charts.cumulative_by_day([*moments, None]) == [
        (date(2026, 1, 1), 1), (date(2026, 1, 2), 1), (date(2026, 1, 3), 3),
    ]  # fmt: skip
    assert charts.cumulative_by_day([]) == []


@pytest.mark.parametrize("points", [[], [(date(2026, 1, 1), 4)], [(date(2026, 1, 1), 1), (date(2026, 1, 5), 9)]])
def test_over_time_chart_is_valid_accessible_svg(points):
    svg = parse(charts.over_time_svg(points))
    assert svg.tag == f"{SVG}svg" and svg.get("role") == "img"
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert "style" not in str(charts.over_time_svg(points))
    if points:
        assert f"{points[-1][1]} approved signatures" in desc.text


def test_region_chart_has_one_bar_per_region_with_its_total():
    bars = charts.by_region(["FR", "DE", "KE", "BR", "XX"])
    assert bars == [(charts.AFRICA, 1), (charts.LATIN_AMERICA, 1), (charts.WEOG, 2), (charts.OTHER, 1)]
    svg = parse(charts.by_region_svg(bars))
    assert len(svg.findall(f"{SVG}rect")) == 4
    assert svg.find(f"{SVG}desc").text.endswith("5 in all.")


def test_report_page_counts_charts_and_lists_everything(app, client, auth, coordinator, letter):
    auth.login(coordinator)
    response = client.get(f"/admin/signatures/letters/{letter.slug}/report")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    counts = re.search(r'<table class="signature-counts">.*?<tbody><tr>(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r"<td>(\d+)</td>", counts) == ["0", "1", "3", "1", "1"]
    svgs = re.findall(r"<svg .*?</svg>", html, re.S)
    assert len(svgs) == 2
    over_time, by_region = (parse(svg) for svg in svgs)
    assert "3 approved signatures" in over_time.find(f"{SVG}desc").text
    assert by_region.find(f"{SVG}desc").text.endswith("3 in all.")
    assert '<table class="chart-data" id="by-region-data">' in html
    for email in ("a@example.org", "d@example.org", "e@example.org", "f@example.org"):
        assert email in html
    assert "Signer 0" in html


def _follow(client, page: str, text: str) -> str:
    """The page the link reading ``text`` on ``page`` leads to, which must answer 200."""
    html = client.get(page).get_data(as_text=True)
    found = re.search(rf'<a href="([^"]+)">{re.escape(text)}</a>', html)
    assert found, f"no link {text!r} on {page}"
    response = client.get(found.group(1))
    assert response.status_code == 200, found.group(1)
    return response.get_data(as_text=True)


def test_the_letter_page_the_queue_and_a_signature_link_to_the_report(app, client, auth, coordinator, letter):
    auth.login(coordinator)
    title = ORIGINAL.title
    with app.app_context():
        pending = db.session.scalar(sa.select(Signature.id).where(Signature.status == "pending_approval"))
    for page, text in [
        (f"/admin/letters/{letter.slug}", "Signatures report"),
        ("/admin/signatures", title),
        (f"/admin/signatures?letter={letter.slug}&status=all", title),
        (f"/admin/signatures/{pending}", "Signatures report"),
    ]:
        report = _follow(client, page, text)
        assert f"<h1>Signatures: {title}</h1>" in report and "d@example.org" in report
    queue = _follow(client, f"/admin/letters/{letter.slug}", "Signatures awaiting approval")
    assert "@At Org" in queue and "+Plus Org" not in queue


def test_a_draft_has_no_report_link(app, client, auth, coordinator):
    draft = publish(app, ORIGINAL, status="draft")
    auth.login(coordinator)
    assert "/report" not in client.get(f"/admin/letters/{draft.slug}").get_data(as_text=True)


@pytest.mark.parametrize("path", ["report", "export.csv", "export.json"])
def test_reports_are_for_staff_only(app, client, auth, member, letter, path):
    url = f"/admin/signatures/letters/{letter.slug}/{path}"
    assert client.get(url).headers["Location"].startswith("/login")
    auth.login(member)
    assert client.get(url).status_code == 403


def test_csv_export_neutralises_formulas(app, client, auth, coordinator, letter):
    auth.login(coordinator)
    response = client.get(f"/admin/signatures/letters/{letter.slug}/export.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    names = {row["organisation_name"] for row in rows}
    assert names == {'\'=HYPERLINK("http://evil")', "'+Plus Org", "'-Minus Org", "'@At Org", "'\tTab Org", "Plain Org"}
    assert all(not row[field].startswith(("=", "+", "-", "@", "\t")) for row in rows for field in row)
    plain = next(row for row in rows if row["organisation_name"] == "Plain Org")
    assert plain["signer_email"] == "f@example.org" and plain["status"] == "withdrawn"
    assert plain["region"] == charts.WEOG and plain["country_name"] == "United States"


def test_json_export_has_all_fields_unaltered(app, client, auth, admin, letter):
    auth.login(admin)
    response = client.get(f"/admin/signatures/letters/{letter.slug}/export.json")
    body = json.loads(response.get_data(as_text=True))
    assert body["letter"] == letter.slug and len(body["signatures"]) == 6
    record = next(r for r in body["signatures"] if r["signer_email"] == "a@example.org")
    assert record["organisation_name"] == '=HYPERLINK("http://evil")'  # JSON is data, not a spreadsheet
    assert record["status"] == "approved" and record["revision_number"] == 1 and record["signed_published_revision"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Signature.id))) >= 6
