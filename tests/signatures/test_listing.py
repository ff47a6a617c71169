"""The public list of signatories: one query, grouping and sorting, revision notes, the page and the PDF."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaign.admin import services as admin_services
from campaign.auth.services import organisation_name_key
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import pdf, services
from campaign.letters.models import Letter
from campaign.letters.services import LetterText
from campaign.signatures import listing
from campaign.signatures.models import Signature
from tests.letters.publishing import ORIGINAL, publish
from tests.letters.test_pdf import pdf_text


def add_signatures(app, slug: str, rows: Iterable[tuple], **common) -> None:
    """Insert signatures in bulk: (organisation, country[, status[, email]]) rows, committed."""
    now = utcnow()
    with app.app_context():
        letter = services.get_letter(slug)
        values = []
        for n, row in enumerate(rows):
            name, country, status, email = (*row, "approved", None)[:4] if len(row) < 4 else row
            values.append({
                "letter_id": letter.id, "organisation_name": name, "organisation_key": organisation_name_key(name),
                "country": country, "signer_name": f"Signer {n}", "signer_title": "Director",
                "signer_email": email or f"signer{n}@example.org", "status": status, "source": "public",
                "revision_id": letter.published_revision_id, "needs_reconfirmation": False,
                "approved_at": now - timedelta(days=n % 5) if status == "approved" else None,
                "created_at": now, "updated_at": now, "consent_text": "", "rejection_reason": "",
            } | common)  # fmt: skip
        db.session.execute(sa.insert(Signature), values)
        db.session.commit()


def many(count: int) -> list[tuple[str, str]]:
    countries = ("FR", "BR", "KE", "JP", "DE", "CL", "IN", "ZA")
    return [(f"Organisation {n:05d}", countries[n % len(countries)]) for n in range(count)]


class QueryCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements.append(statement)


def count_queries(app, client, url: str) -> tuple[int, str]:
    counter = QueryCounter()
    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", counter)
    try:
        response = client.get(url)
    finally:
        sa.event.remove(engine, "before_cursor_execute", counter)
    assert response.status_code == 200
    return len(counter.statements), response.get_data(as_text=True)


@pytest.mark.parametrize("by", ["country", "name"])
def test_the_page_issues_the_same_queries_for_1000_signatories_as_for_10(app, client, by):
    small, large = publish(app, ORIGINAL), publish(app, ORIGINAL)
    add_signatures(app, small.slug, many(10))
    add_signatures(app, large.slug, many(1000))
    client.get(f"/letters/{small.slug}")  # warm what any first request loads

    few, small_html = count_queries(app, client, f"/letters/{small.slug}?by={by}")
    lots, large_html = count_queries(app, client, f"/letters/{large.slug}?by={by}")

    assert few == lots <= 8
    assert "10 organisations have signed" in small_html
    assert "1,000 organisations have signed" in large_html
    assert large_html.count("Organisation 0") == 1000


def test_approved_signatories_is_one_query(app, ctx):
    letter = publish(app, ORIGINAL)
    add_signatures(app, letter.slug, many(50))
    loaded = services.get_letter(letter.slug)
    loaded.published_revision_id  # noqa: B018 - loaded before counting
    counter = QueryCounter()
    sa.event.listen(db.engine, "before_cursor_execute", counter)
    try:
        signatories = listing.approved_signatories(loaded)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", counter)
    assert len(signatories) == 50 and len(counter.statements) == 1


def test_only_approved_signatures_are_listed_without_signers(app, client):
    letter = publish(app, ORIGINAL)
    add_signatures(
        app,
        letter.slug,
        [
            ("Approved Org", "FR", "approved", "secret-approved@example.org"),
            ("Pending Org", "FR", "pending_approval", "p@example.org"),
            ("Unverified Org", "FR", "pending_verification", "u@example.org"),
            ("Rejected Org", "FR", "rejected", "r@example.org"),
            ("Withdrawn Org", "FR", "withdrawn", "w@example.org"),
        ],
    )
    html = client.get(f"/letters/{letter.slug}").get_data(as_text=True)
    assert "Approved Org" in html and "1 organisation has signed" in html
    for absent in ("Pending Org", "Unverified Org", "Rejected Org", "Withdrawn Org", "secret-approved", "Signer 0"):
        assert absent not in html


def test_sorting_and_grouping_fold_case_and_accents(app, ctx):
    letter = publish(app, ORIGINAL)
    names = [("zeta Action", "FR"), ("Éclat Humanitaire", "FR"), ("alpha Aid", "BR"), ("Ecole Libre", "AT"),
             ("Ärzte Hilfe", "AT"), ("beta Rights", "BR")]  # fmt: skip
    add_signatures(app, letter.slug, names)
    signatories = listing.approved_signatories(services.get_letter(letter.slug))

    assert [s.organisation_name for s in signatories] == [
        "alpha Aid", "Ärzte Hilfe", "beta Rights", "Éclat Humanitaire", "Ecole Libre", "zeta Action",
    ]  # fmt: skip
    assert [s.organisation_name for s in listing.alphabetical(reversed(signatories))] == [
        s.organisation_name for s in signatories
    ]
    groups = listing.grouped_by_country(signatories)
    assert [(g.country_name, [s.organisation_name for s in g.signatories]) for g in groups] == [
        ("Austria", ["Ärzte Hilfe", "Ecole Libre"]),
        ("Brazil", ["alpha Aid", "beta Rights"]),
        ("France", ["Éclat Humanitaire", "zeta Action"]),
    ]
    assert listing.count_label(1) == "1 organisation has signed"
    assert listing.count_label(1234) == "1,234 organisations have signed"


def test_the_page_switches_between_country_and_name(app, client):
    letter = publish(app, ORIGINAL)
    add_signatures(app, letter.slug, [("Kenyan Voices", "KE"), ("Brazilian Forum", "BR")])
    by_country = client.get(f"/letters/{letter.slug}").get_data(as_text=True)
    by_name = client.get(f"/letters/{letter.slug}?by=name").get_data(as_text=True)

    assert '<h3 id="signatories-br">Brazil' in by_country and '<h3 id="signatories-ke">Kenya' in by_country
    assert "<h3" not in by_name.split('id="signatories"')[1]
    assert "Brazilian Forum (Brazil)" in by_name and "Kenyan Voices (Kenya)" in by_name
    assert by_name.index("Brazilian Forum") < by_name.index("Kenyan Voices")


def test_an_earlier_revision_is_noted(app, client):
    letter = publish(app, ORIGINAL)
    add_signatures(app, letter.slug, [("Early Signer", "FR")])
    with app.app_context():
        saved = services.get_letter(letter.slug)
        services.save_revision(saved, LetterText(title="Revised", body_markdown="A substantively changed text."))
        services.publish_changes(saved)
        db.session.commit()
    add_signatures(app, letter.slug, [("Late Signer", "DE")])

    html = client.get(f"/letters/{letter.slug}?by=name").get_data(as_text=True)
    assert 'Early Signer (France) <small class="revision-note">(signed revision 1)</small>' in html
    assert "Late Signer (Germany)</li>" in html


def test_the_pdf_lists_the_signatories_and_changes_when_one_is_approved(app, client):
    letter = publish(app, ORIGINAL)
    add_signatures(app, letter.slug, [("Zulu Network", "ZA"), ("Amnesty Test", "GB")])
    add_signatures(app, letter.slug, [("Waiting Org", "KE", "pending_approval", "w@example.org")])

    first = client.get(f"/letters/{letter.slug}.pdf").data
    text = pdf_text(first)
    assert "Signatories (2)" in text
    assert text.index("Amnesty Test (United Kingdom") < text.index("Zulu Network (South Africa)")
    assert "Waiting Org" not in text

    with app.app_context():
        loaded = services.get_letter(letter.slug)
        key_before = pdf.signatories_key(
            admin_services.get_settings(), loaded, listing.pdf_rows(listing.approved_signatories(loaded))
        )
        db.session.execute(
            sa.update(Signature)
            .where(Signature.organisation_name == "Waiting Org")
            .values(status="approved", approved_at=utcnow(), updated_at=utcnow())
        )
        db.session.commit()
        key_after = pdf.signatories_key(
            admin_services.get_settings(), loaded, listing.pdf_rows(listing.approved_signatories(loaded))
        )
    assert key_before != key_after
    second = pdf_text(client.get(f"/letters/{letter.slug}.pdf").data)
    assert "Signatories (3)" in second and "Waiting Org (Kenya)" in second


def _approve(app, name: str) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(Signature)
            .where(Signature.organisation_name == name)
            .values(status="approved", approved_at=utcnow(), updated_at=sa.func.now())
        )
        db.session.commit()


def test_conditional_get_answers_304_until_a_signature_is_approved(app, client):
    letter = publish(app, ORIGINAL)
    add_signatures(app, letter.slug, [("First Org", "FR"), ("Second Org", "FR", "pending_approval", "s@example.org")])
    first = client.get(f"/letters/{letter.slug}")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"

    again = client.get(f"/letters/{letter.slug}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    other_order = client.get(f"/letters/{letter.slug}?by=name", headers={"If-None-Match": etag})
    assert other_order.status_code == 200

    _approve(app, "Second Org")
    changed = client.get(f"/letters/{letter.slug}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert "Second Org" in changed.get_data(as_text=True)


def test_the_etag_changes_with_the_count_even_at_the_same_instant(app, ctx):
    letter = publish(app, ORIGINAL)
    loaded = db.session.get(Letter, letter.id)
    empty = listing.page_validator(loaded)
    add_signatures(app, letter.slug, [("Org A", "FR", "pending_verification", "a@example.org")])
    assert listing.page_validator(loaded) == empty  # the page shows no signature awaiting anything
    stamp = utcnow()
    add_signatures(app, letter.slug, [("Org B", "FR")], updated_at=stamp)
    one = listing.page_validator(loaded)
    add_signatures(app, letter.slug, [("Org C", "KE")], updated_at=stamp)
    assert len({empty, one, listing.page_validator(loaded)}) == 3
    assert listing.page_validator(loaded, "fr") != listing.page_validator(loaded, "en")
