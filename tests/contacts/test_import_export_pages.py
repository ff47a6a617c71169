"""The import page (reports, dry run, accept-valid, unreadable files), the export, and the default
timezone setting new contacts get."""

from __future__ import annotations

import csv
import io
import re

import pytest

from campaign.admin.models import CoalitionSettings
from campaign.extensions import db
from tests.contacts.pages import (
    BAD_ROWS,
    GOOD_ROWS,
    contact_form,
    contact_row,
    count_contacts,
    csv_bytes,
    fill_directory,
    make_contact,
    text,
    upload,
)


@pytest.fixture
def staff(auth, coordinator):
    auth.login(coordinator)
    return coordinator


# --- import -------------------------------------------------------------------------------------


def test_import_with_errors_reports_every_rejected_row_and_imports_nothing(app, client, staff):
    response = upload(client, csv_bytes(*GOOD_ROWS, *BAD_ROWS))
    assert response.status_code == 200
    page = text(response)
    assert "Nothing was imported: 5 of 7 rows are rejected." in page
    assert re.search(r"<th scope=\"row\">Valid</th><td>2</td>", page)
    assert re.search(r"<th scope=\"row\">New contacts</th><td>2</td>", page)
    assert re.search(r"<th scope=\"row\">Rejected</th><td>5</td>", page)
    rejected = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", page)
    assert [(int(line), email) for line, email, _ in rejected] == [
        (4, "someone@mission.example.org"),
        (5, "not-an-email"),
        (6, "ru@mission.example.org"),
        (7, "de@mission.example.org"),
        (8, "JEAN.DUPONT@mission.example.org"),
    ]
    reasons = [reason for _, _, reason in rejected]
    assert "'XX'" in reasons[0] and "not valid" in reasons[1] and "'de'" in reasons[2]
    assert "formula" in reasons[3] and "line 2" in reasons[4]
    assert count_contacts(app) == 0

    # Fixed, the file imports.
    response = upload(client, csv_bytes(*GOOD_ROWS, "CN,China,Mission,,C,D,,,china@mission.example.org,zh,P5"))
    page = text(response)
    assert "Imported: 3 new, 0 updated, 0 unchanged." in page
    assert count_contacts(app) == 3
    jean = contact_row(app, "jean.dupont@mission.example.org")
    assert (jean.country, jean.language, jean.tags) == ("FR", "fr", ["P5", "Security Council"])
    assert [event.kind for event in jean.events] == ["imported"]

    # Again, with one change: matched by email and updated, never duplicated.
    changed = GOOD_ROWS[1].replace("Ambassador", "Chargée d'affaires").replace("ama.mensah", "AMA.Mensah")
    page = text(upload(client, csv_bytes(GOOD_ROWS[0], changed)))
    assert "Imported: 0 new, 1 updated, 1 unchanged." in page
    assert count_contacts(app) == 3
    assert contact_row(app, "ama.mensah@mission.example.org").position == "Chargée d'affaires"


def test_import_dry_run_reports_and_imports_nothing(app, client, staff):
    page = text(upload(client, csv_bytes(*GOOD_ROWS), dry_run=True))
    assert "Checked only (dry run): nothing was imported." in page
    assert re.search(r"<th scope=\"row\">New contacts</th><td>2</td>", page)
    assert count_contacts(app) == 0


def test_import_accept_valid_imports_the_valid_rows_only(app, client, staff):
    page = text(upload(client, csv_bytes(*GOOD_ROWS, *BAD_ROWS), accept_valid=True))
    assert "Imported: 2 new, 0 updated, 0 unchanged; 5 rejected rows left out." in page
    assert "Permanent Mission of France" not in page  # the report lists rejected rows, not imported ones
    assert count_contacts(app) == 2


def test_import_accepts_aliases_a_bom_and_warns_about_unknown_columns(app, client, staff):
    header = "email,country_code,given_name,family_name,honorific_prefix,favourite_colour"
    content = "\ufeff".encode() + csv_bytes("ana@mission.example.org,es,Ana,García,Sra.,blue", header=header)
    page = text(upload(client, content))
    assert "Imported: 1 new" in page
    assert "Ignored unknown columns: favourite_colour." in page
    ana = contact_row(app, "ana@mission.example.org")
    assert (ana.given_name, ana.family_name, ana.honorific, ana.country) == ("Ana", "García", "Sra.", "ES")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (csv_bytes("FR,France,Mission,,Réne,Dupont,,,rene@mission.example.org,fr,").decode().encode("latin-1"),
         "The file is not UTF-8: line 2"),
        (csv_bytes(*GOOD_ROWS).decode().encode("utf-16"), "not UTF-8"),
        (b"", "The file is empty"),
        (b"name,address\r\nA,B\r\n", "lacks the required columns email and country_code"),
    ],
)  # fmt: skip
def test_import_refuses_a_file_it_cannot_read_with_a_clear_error(app, client, staff, content, message):
    page = text(upload(client, content))
    assert "The file was not imported." in page and message in page
    assert count_contacts(app) == 0


def test_import_needs_a_file(client, staff):
    response = client.post("/admin/contacts/import", data={}, content_type="multipart/form-data")
    assert "Choose a CSV file to upload." in text(response)


def test_import_page_explains_the_format_and_offers_a_template(client, staff):
    page = text(client.get("/admin/contacts/import"))
    for words in ("UTF-8", "given_name", "honorific_prefix", "separated by <code>;</code>", "country_code"):
        assert words in page
    response = client.get("/admin/contacts/import/template.csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="contacts-template.csv"'
    header = response.get_data(as_text=True).strip().split(",")
    assert header[:3] == ["country_code", "country", "organisation"] and "email" in header and "tags" in header


def test_an_upload_over_the_size_limit_is_refused(app, client, staff, monkeypatch):
    from campaign.contacts import csvio

    monkeypatch.setattr(csvio, "MAX_BYTES", 1024)
    response = upload(client, csv_bytes(*GOOD_ROWS * 20))
    assert response.status_code == 413
    assert count_contacts(app) == 0


# --- export -------------------------------------------------------------------------------------


def test_export_streams_the_filtered_contacts_with_formulas_neutralised(app, client, staff):
    fill_directory(app)
    make_contact(app, "formula@mission.example.org", "FR", organisation="=cmd|'/C calc'!A0", tags=["P5"],
                 given_name="+SUM(1)", family_name="@name", position="-2")  # fmt: skip
    response = client.get("/admin/contacts/export.csv?tag=P5")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="contacts-')
    assert response.is_streamed
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).removeprefix("\ufeff"))))
    assert sorted(row["email"] for row in rows) == [
        "china@mission.example.org",
        "formula@mission.example.org",
        "france@mission.example.org",
    ]
    formula = next(row for row in rows if row["email"] == "formula@mission.example.org")
    assert formula["organisation"] == "'=cmd|'/C calc'!A0"
    assert (formula["first_name"], formula["last_name"], formula["position"]) == ("'+SUM(1)", "'@name", "'-2")


# --- the default timezone setting ---------------------------------------------------------------


def test_default_timezone_setting_is_saved_and_given_to_new_contacts(app, client, auth, admin):
    auth.login(admin)
    page = text(client.get("/admin/settings"))
    common = page.index('<optgroup label="Common">')
    assert page.index('value="America/New_York"', common) < page.index('value="Europe/Zurich"', common)
    assert "Europe/Zurich (Geneva)" in page
    settings = {"name": "Coalition", "default_timezone": "Europe/Zurich"}
    assert client.post("/admin/settings", data=settings).status_code == 302
    with app.app_context():
        assert db.session.get(CoalitionSettings, 1).default_timezone == "Europe/Zurich"

    client.post("/admin/contacts/new", data=contact_form(timezone=""))
    assert contact_row(app, "amina.diallo@mission.example.org").timezone == "Europe/Zurich"
    client.post("/admin/contacts/new", data=contact_form(email="other@mission.example.org", timezone="Asia/Tokyo"))
    assert contact_row(app, "other@mission.example.org").timezone == "Asia/Tokyo"
    upload(client, csv_bytes(*GOOD_ROWS))
    assert contact_row(app, "jean.dupont@mission.example.org").timezone == "Europe/Zurich"


@pytest.mark.parametrize("zone", ["Europe/Geneva", "Mars/Olympus", ""])
def test_default_timezone_setting_must_be_an_iana_zone(app, client, auth, admin, zone):
    auth.login(admin)
    response = client.post("/admin/settings", data={"name": "Coalition", "default_timezone": zone})
    assert response.status_code == 200 and "Not a valid choice" in text(response)
    with app.app_context():
        assert db.session.get(CoalitionSettings, 1) is None


def test_the_import_page_accepts_files_beyond_the_general_upload_limit(app, client, staff, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1024)
    response = upload(client, csv_bytes(*GOOD_ROWS * 20))
    assert response.status_code == 200
