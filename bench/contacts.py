"""``contacts_import_50000``: a 50,000-row CSV through ``import_csv``, on the benchmark's database.

The rate is rows a second for the whole import (decoding, validating every row, one
lookup of the existing emails, the bulk inserts) and its commit.  The imported
contacts are deleted afterwards so later figures start from the same database.
Run alone with ``python -m bench.contacts`` against a migrated ``DATABASE_URL``.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time

import sqlalchemy as sa

ROWS = 50_000
DOMAIN = "bench-import.example.org"
LANGUAGES = ("en", "fr", "es", "ar", "ru", "zh")
HEADER = ["country_code", "country", "organisation", "honorific", "first_name", "last_name", "position",
          "salutation", "email", "language", "tags", "timezone"]  # fmt: skip


def sample_csv(rows: int = ROWS) -> bytes:
    """A well-formed file of ``rows`` new contacts, every row valid."""
    from campaign.contacts.countries import UN_MEMBER_STATES

    codes = sorted(UN_MEMBER_STATES)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    for n in range(rows):
        code = codes[n % len(codes)]
        writer.writerow([
            code, "", f"Permanent Mission {code} {n}", "H.E.", f"Given{n}", f"Family{n}", "Counsellor",
            "Excellency,", f"person{n}@{DOMAIN}", LANGUAGES[n % 6], f"Group {n % 40};NY", "America/New_York",
        ])  # fmt: skip
    return buffer.getvalue().encode()


def import_rate(env: dict[str, str], rows: int = ROWS) -> float:
    """Rows a second for importing ``rows`` new contacts and committing them."""
    from campaign import create_app
    from campaign.contacts import services
    from campaign.contacts.models import Contact
    from campaign.extensions import db
    from config import normalise_database_url

    app = create_app({
        "APP_ENV": "development", "DATABASE_URL": normalise_database_url(env["DATABASE_URL"]),
        "OUTBOX_DIR": env.get("OUTBOX_DIR", ""), "REDIS_URL": env.get("REDIS_URL") or None,
    })  # fmt: skip
    data = sample_csv(rows)
    with app.app_context():
        try:
            start = time.perf_counter()
            report = services.import_csv(data, dry_run=False, accept_valid=False)
            db.session.commit()
            elapsed = time.perf_counter() - start
            if not report.imported or report.new != rows:
                raise RuntimeError(f"the benchmark file did not import: {report}")
        finally:
            db.session.rollback()
            db.session.execute(sa.delete(Contact).where(Contact.email.like(f"%@{DOMAIN}")))
            db.session.commit()
            db.engine.dispose()
    return rows / elapsed


if __name__ == "__main__":
    if not os.environ.get("DATABASE_URL"):
        sys.exit("set DATABASE_URL to a migrated database")
    print(f"{import_rate(dict(os.environ)):.0f} rows/s")
