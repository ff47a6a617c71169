"""The CSV import against a corpus of bad files, the export, and ``flask contacts import|export``.

Nothing is ever half-imported: a file is refused whole, imported whole, or (when asked)
its valid rows are imported whole.
"""

from __future__ import annotations

import codecs
import csv
import io

import pytest
import sqlalchemy as sa

from campaign.audit import AuditEvent
from campaign.contacts import csvio, services
from campaign.contacts.models import Contact, ContactEvent, ContactTag
from campaign.contacts.services import ContactData, ContactFilter
from campaign.extensions import db

HEADER = "country_code,country,organisation,honorific,first_name,last_name,position,salutation,email,language,tags"
GOOD = [
    "FR,France,Mission permanente de la France,S.E. M.,Jean,Dupont,Représentant permanent,Excellence,"
    "jean.dupont@missions.example.org,fr,P5;Security Council",
    'GB,United Kingdom,UK Mission,H.E. Ms.,Ann,Smith,Permanent Representative,"Excellency,",'
    "ann.smith@missions.example.org,en,P5",
]


def body(*rows: str, header: str = HEADER) -> bytes:
    return "\n".join([header, *rows, ""]).encode()


def run(data: bytes, dry_run: bool = False, accept_valid: bool = False) -> services.ImportReport:
    return services.import_csv(data, dry_run=dry_run, accept_valid=accept_valid)


def count(model: type = Contact) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def reasons(report: services.ImportReport) -> list[tuple[int, str]]:
    return [(row.line, row.reason) for row in report.rejected]


def test_a_good_file_imports(ctx):
    report = run(body(*GOOD))
    assert (report.total, report.valid, report.new, report.imported, report.error) == (2, 2, 2, True, None)
    contact = services.get_by_email("JEAN.DUPONT@missions.example.org")
    assert (contact.country, contact.language, contact.salutation, contact.tags) == (
        "FR", "fr", "Excellence", ["P5", "Security Council"],
    )  # fmt: skip
    assert contact.timezone == "America/New_York"
    assert [event.kind for event in contact.events] == ["imported"]
    audit = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "contacts.import")).one()
    assert (audit.details["new"], audit.details["total"]) == (2, 2)


# --- file-level errors ------------------------------------------------------------------------------

TEXT = HEADER + "\n" + GOOD[0] + "\nFR,,Société Générale,,,,,,societe@example.org,fr,\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (TEXT.encode("latin-1"), "not UTF-8: line 2"),
        ((HEADER + "\nFR,,Mission’s,,,,,,a@example.org,en,\n").encode("cp1252"), "0x92"),  # noqa: RUF001
        (TEXT.encode("utf-16"), "UTF-16"),
        (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "UTF-16"),
        (TEXT.encode("utf-16-le"), "looks like UTF-16"),
        (TEXT.encode("utf-32"), "UTF-32"),
        (b"", "empty"),
        (b"\n\n\r\n", "empty"),
        (codecs.BOM_UTF8, "empty"),
        (b",,,\n,,,\n", "empty"),
        (HEADER.encode() + b"\n", "no contacts"),
        (body("FR,x@example.org", header="country,email"), "lacks the required column country_code"),
        (body("Ann", header="first_name"), "required columns email and country_code"),
        (body("FR,a@example.org,b@example.org", header="country_code,email,Email"), "email appears twice"),
        (b'country_code,email\nFR,"unclosed\n' + b"x" * 140_000, "cannot be read as CSV"),
    ],
)
def test_files_refused_whole(ctx, data, message):
    report = run(data, accept_valid=True)
    assert report.error is not None and message in report.error, report.error
    assert not report.imported and count() == 0


def test_the_encoding_error_says_what_to_do(ctx):
    error = run(TEXT.encode("latin-1")).error
    assert "Save it as UTF-8" in error and "0xE9" in error


def test_utf8_with_a_bom_is_accepted(ctx):
    report = run(codecs.BOM_UTF8 + body(*GOOD))
    assert (report.new, report.error) == (2, None)


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolons_and_tabs_are_recognised(ctx, delimiter):
    text = f'country_code{delimiter}email{delimiter}tags\nFR{delimiter}a@example.org{delimiter}"P5;NY"\n'
    report = run(text.encode())
    assert report.new == 1 and services.get_by_email("a@example.org").tags == ["NY", "P5"]


def test_osdi_aliases_and_loose_header_names(ctx):
    header = "Country Code, E-mail ,Given_Name,family-name,HONORIFIC_PREFIX,Organization"
    report = run(body("fr,A@Example.org,Jean,Dupont,S.E. M.,Mission", header=header))
    assert (report.new, report.warnings) == (1, [])
    contact = services.get_by_email("a@example.org")
    assert (contact.given_name, contact.family_name, contact.honorific, contact.organisation) == (
        "Jean", "Dupont", "S.E. M.", "Mission",
    )  # fmt: skip


def test_unknown_columns_are_a_warning(ctx):
    report = run(body("FR,a@example.org,+33 1 23,x", header="country_code,email,phone,Fax Number"))
    assert report.new == 1 and report.imported
    assert report.warnings == ["Ignored unknown columns: phone, Fax Number."]


def test_size_limits(ctx, monkeypatch):
    big = body(GOOD[0]) + b" " * (csvio.MAX_BYTES + 1)
    assert "limit is 20 MB" in run(big).error
    monkeypatch.setattr(csvio, "MAX_ROWS", 3)
    rows = [f"FR,,,,,,,,p{n}@example.org,en," for n in range(4)]
    assert "more than 3 rows" in run(body(*rows)).error
    assert run(body(*rows[:3])).new == 3


# --- rows -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("FR,,,,,,,,no-at-sign.example.org,en,", "must have an @-sign"),
        ("FR,,,,,,,,two words@example.org,en,", "not valid"),
        ("FR,,,,,,,,jö@example.org,en,", "not valid"),
        ("FR,,,,,,,," + "x" * 250 + "@example.org,en,", "not valid"),
        ("FR,,,,,,,,a@example,en,", "not valid"),
        ("FR,,,,,,,,,en,", "Email is missing"),
        ("XX,,,,,,,,a@example.org,en,", "'XX' is not an ISO 3166-1"),
        ("FRA,,,,,,,,a@example.org,en,", "ISO 3166-1"),
        (",France,,,,,,,a@example.org,en,", "Country is missing"),
        ("FR,,,,,,,,a@example.org,de,", "Language 'de'"),
        ("FR,,,,,,,,a@example.org,french,", "Language"),
        ('FR,,=HYPERLINK("http://x.example"),,,,,,a@example.org,en,', "organisation looks like a spreadsheet formula"),
        ("FR,,,+Jean,,,,,a@example.org,en,", "honorific looks like a spreadsheet formula"),
        ("FR,,,,-2+3,,,,a@example.org,en,", "first_name looks like"),
        ("FR,,,,,@SUM(A1),,,a@example.org,en,", "last_name looks like"),
        ("FR,,,,,,  =1+1,,a@example.org,en,", "position looks like"),
        ("FR,,,,,,,\t=1+1,a@example.org,en,", "salutation looks like"),
        ("FR,,,,,,,,a@example.org,en,=cmd|' /C calc'!A0", "tags looks like"),
        ("FR,,,,,,,,a@example.org,en", "1 cells; the header has 11"[-22:]),
        ("FR,,,,,,,,a@example.org,en,,extra", "12 cells; the header has 11"),
        ('FR,,"Mission\nde la France",,,,,,a@example.org,en,', "line break inside organisation"),
        ('FR,,"Mission\rde la France",,,,,,a@example.org,en,', "line break inside organisation"),
        ('FR,,,,,,,"Excellence,\r\n",a@example.org,en,', "line break inside salutation"),
        ("FR,,Mission\x00,,,,,,a@example.org,en,", "NUL byte in organisation"),
        ("FR,,,,,,,,a@example.org,en,P5;" + "t" * 65, "longer than 64"),
    ],
)
def test_rows_rejected_with_their_line_and_reason(ctx, row, reason):
    report = run(body(GOOD[0], row, GOOD[1]))
    assert (report.total, report.valid, len(report.rejected)) == (3, 2, 1)
    line, why = reasons(report)[0]
    assert line == 3 and reason in why, why
    assert not report.imported and count() == 0  # nothing imported without accept_valid


@pytest.mark.parametrize(
    ("row", "field", "value"),
    [
        ("fr,,,,,,,,a@example.org,en,", "country", "FR"),
        ("FR,,,,,,,,A@Example.ORG,en,", "email", "a@example.org"),
        ("FR,,,,,,,,a@example.org,FR,", "language", "fr"),
        ("FR,,,,,,,,a@example.org,,", "language", "en"),
        ("FR,,'=not a formula,,,,,,a@example.org,en,", "organisation", "=not a formula"),
        ("FR,,'-dash,,,,,,a@example.org,en,", "organisation", "-dash"),
        ("FR,,  padded  ,,,,,,a@example.org,en,", "organisation", "padded"),
        ("FR,,O'Neill & Partners,,,,,,a@example.org,en,", "organisation", "O'Neill & Partners"),
        ("FR,,,,,,,,a@example.org,en,NY; P5 ;;p5", "tags", ["NY", "P5"]),
    ],
)
def test_cells_accepted_and_normalised(ctx, row, field, value):
    report = run(body(row))
    assert report.new == 1, reasons(report)
    assert getattr(services.get_by_email("a@example.org"), field) == value


def test_notes_may_begin_like_a_formula(ctx):
    report = run(body("FR,a@example.org,=met at UNGA; -follow up", header="country_code,email,notes"))
    assert report.new == 1 and services.get_by_email("a@example.org").notes == "=met at UNGA; -follow up"


def test_timezone_column(ctx):
    report = run(body("CH,a@example.org,Europe/Zurich", "FR,b@example.org,", "FR,c@example.org,Paris",
                      header="country_code,email,timezone"))  # fmt: skip
    assert reasons(report) == [(4, "Timezone 'Paris' is not an IANA timezone (e.g. Europe/Zurich).")]
    run(body("CH,a@example.org,Europe/Zurich", "FR,b@example.org,", header="country_code,email,timezone"))
    assert services.get_by_email("a@example.org").timezone == "Europe/Zurich"
    assert services.get_by_email("b@example.org").timezone == "America/New_York"


def test_line_numbers_are_physical_lines(ctx):
    data = (
        HEADER + "\n"  # line 1
        + GOOD[0] + "\n"  # 2
        + "\n"  # 3: blank, skipped
        + 'FR,,"two\nlines",,,,,,x@example.org,en,\n'  # 4-5
        + "XX,,,,,,,,y@example.org,en,\r\n"  # 6
        + "FR,,,,,,,,JEAN.dupont@missions.example.org,en,\n"  # 7: same email as line 2
    ).encode()  # fmt: skip
    report = run(data)
    assert [(row.line, row.email) for row in report.rejected] == [
        (4, "x@example.org"), (6, "y@example.org"), (7, "JEAN.dupont@missions.example.org"),
    ]  # fmt: skip
    assert report.rejected[2].reason == "The same email as line 2."
    assert report.total == 4


# --- what is imported -------------------------------------------------------------------------------


def test_accept_valid_imports_only_the_valid_rows(ctx):
    report = run(body(GOOD[0], "XX,,,,,,,,bad@example.org,en,", GOOD[1]), accept_valid=True)
    assert (report.imported, report.new, len(report.rejected)) == (True, 2, 1)
    assert count() == 2 and services.get_by_email("bad@example.org") is None


@pytest.mark.parametrize("accept_valid", [False, True])
def test_dry_run_imports_nothing(ctx, accept_valid):
    services.create_contact(ContactData(country="FR", email="jean.dupont@missions.example.org"))
    before = (count(), count(ContactTag), count(ContactEvent), count(AuditEvent))
    report = run(body(*GOOD, "XX,,,,,,,,bad@example.org,en,"), dry_run=True, accept_valid=accept_valid)
    assert (report.dry_run, report.imported, report.new, report.updated, len(report.rejected)) == (
        True, False, 1, 1, 1,
    )  # fmt: skip
    assert (count(), count(ContactTag), count(ContactEvent), count(AuditEvent)) == before


def test_existing_contacts_are_updated_never_duplicated(ctx):
    contact = services.create_contact(
        ContactData(country="FR", email="Jean.Dupont@missions.example.org", notes="keep me", tags=["p5", "Old"])
    )
    services.create_contact(ContactData(country="GB", email="ann.smith@missions.example.org", language="en",
                                        organisation="UK Mission", honorific="H.E. Ms.", given_name="Ann",
                                        family_name="Smith", position="Permanent Representative",
                                        salutation="Excellency,", tags=["P5"]))  # fmt: skip
    report = run(body(*(row.replace("jean.dupont", "JEAN.DUPONT") for row in GOOD)))
    assert (report.new, report.updated, report.unchanged, report.valid) == (0, 1, 1, 2)
    assert count() == 2
    db.session.refresh(contact)
    assert (contact.family_name, contact.notes) == ("Dupont", "keep me")  # notes: not in the file
    assert set(contact.tags) == {"p5", "Security Council"}  # replaced, in the directory's spelling
    event = contact.events[0]
    assert event.kind == "updated" and event.details["changes"]["tags"] == [["Old", "p5"], ["p5", "Security Council"]]
    assert "family_name" in event.details["changes"] and "notes" not in event.details["changes"]
    assert run(body(*GOOD)).unchanged == 2


def test_columns_absent_from_the_file_are_kept(ctx):
    run(body(*GOOD))
    report = run(body("FR,jean.dupont@missions.example.org,Jean-Pierre", header="country_code,email,first_name"))
    assert report.updated == 1
    contact = services.get_by_email("jean.dupont@missions.example.org")
    assert (contact.given_name, contact.family_name, contact.language, contact.tags) == (
        "Jean-Pierre", "Dupont", "fr", ["P5", "Security Council"],
    )  # fmt: skip


def test_tags_take_the_directorys_spelling(ctx):
    services.create_contact(ContactData(country="US", email="us@example.org", tags=["Security Council"]))
    run(body("FR,a@example.org,security council;NEW", header="country_code,email,tags"))
    assert services.get_by_email("a@example.org").tags == ["NEW", "Security Council"]


def test_the_import_is_all_or_nothing(ctx, monkeypatch):
    """A database error half-way through leaves no contact, tag or history line behind."""
    rows = [f"FR,,,,,,,,p{n}@example.org,en,T{n % 3}" for n in range(1500)]
    statements = []

    @sa.event.listens_for(db.engine, "before_cursor_execute")
    def fail_on_second_batch(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO contacts"):
            statements.append(statement)
            if len(statements) == 2:
                raise RuntimeError("the database went away")

    try:
        with pytest.raises(RuntimeError):
            run(body(*rows))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", fail_on_second_batch)
    assert (count(), count(ContactTag), count(ContactEvent)) == (0, 0, 0)
    assert run(body(*rows)).new == 1500  # the session is usable afterwards


def test_a_failure_after_the_inserts_also_leaves_nothing(ctx, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(csvio.audit, "record", broken)
    with pytest.raises(RuntimeError):
        run(body(*GOOD))
    assert (count(), count(ContactTag), count(ContactEvent)) == (0, 0, 0)


def test_two_thousand_rows_take_a_handful_of_queries(ctx):
    rows = [f"{('FR', 'GB', 'MX')[n % 3]},,Mission {n},,,,,,p{n}@example.org,en,T{n % 7};NY" for n in range(2000)]
    run(body(*rows[:500]))  # some already there: they are updated
    statements = []

    def note(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", note)
    try:
        report = run(body(*(row.replace("Mission", "Mission permanente") for row in rows)))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", note)
    assert (report.new, report.updated) == (1500, 500)
    assert len(statements) < 40, len(statements)
    assert count() == 2000 and count(ContactTag) == 4000 and count(ContactEvent) == 2500


# --- export ---------------------------------------------------------------------------------------


def export(f: ContactFilter | None = None) -> str:
    return "".join(services.export_csv(services.filter_query(f or ContactFilter())))


def test_export_neutralises_formulas(ctx):
    services.create_contact(
        ContactData(country="FR", email="a@example.org", organisation="=HYPERLINK(\"x\")", given_name="+1",
                    family_name="-2", position="@SUM(A1)", notes="=notes", tags=["=tag"])
    )  # fmt: skip
    text = export()
    assert text.startswith("\ufeffcountry_code,country,")
    row = next(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert (row["organisation"], row["first_name"], row["last_name"], row["position"], row["notes"], row["tags"]) == (
        "'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "'=notes", "'=tag",
    )  # fmt: skip
    assert [csvio.neutralise(v) for v in ("\tx", "\rx", "x=1", "")] == ["'\tx", "'\rx", "x=1", ""]


def test_export_round_trips(ctx):
    run(body(*GOOD, "CN,,常驻代表团,,明远,沈,常驻代表,阁下：,pm.cn@example.org,zh,NY"))  # noqa: RUF001
    services.create_contact(ContactData(country="FR", email="b@example.org", organisation="=x", notes="@y"))
    services.suppress(services.get_by_email("b@example.org"), "bounced", "gone")
    text = export()
    assert "bounced" in text and "gone" in text
    report = run(text.encode())
    assert (report.unchanged, report.rejected, report.new, report.updated) == (4, [], 0, 0), reasons(report)
    assert "suppression" in report.warnings[0]
    assert export() == text


def test_export_of_a_filter(ctx):
    run(body(*GOOD))
    lines = export(ContactFilter(country="GB")).splitlines()
    assert len(lines) == 2 and "ann.smith@missions.example.org" in lines[1]


# --- the command line --------------------------------------------------------------------------------


@pytest.fixture
def runner(app, database):
    return app.test_cli_runner()


def test_cli_import_prints_counts_and_rejections(app, runner, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes(body(GOOD[0], "XX,,,,,,,,bad@example.org,en,", "FR,,,,,,,,,en,", GOOD[1]))
    result = runner.invoke(args=["contacts", "import", str(path)])
    assert result.exit_code == 1
    assert "4 rows: 2 valid, 2 new, 0 updated, 0 unchanged, 2 rejected" in result.output
    assert "line 3: bad@example.org: Country 'XX' is not an ISO 3166-1 alpha-2 code (e.g. FR)." in result.output
    assert "line 4: (no email): Email is missing." in result.output
    assert "Nothing was imported" in result.output
    with app.app_context():
        assert count() == 0
    result = runner.invoke(args=["contacts", "import", str(path), "--dry-run", "--accept-valid"])
    assert result.exit_code == 0 and "Dry run: nothing was imported." in result.output
    result = runner.invoke(args=["contacts", "import", str(path), "--accept-valid"])
    assert result.exit_code == 0 and "Imported: 2 new, 0 updated." in result.output
    with app.app_context():
        assert count() == 2
    path.write_bytes(body(*GOOD))
    result = runner.invoke(args=["contacts", "import", str(path)])
    assert result.exit_code == 0 and "2 unchanged, 0 rejected" in result.output


def test_cli_import_refuses_a_file(runner, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(TEXT.encode("latin-1"))
    result = runner.invoke(args=["contacts", "import", str(path)])
    assert result.exit_code == 1 and "Refused: The file is not UTF-8" in result.output
    assert runner.invoke(args=["contacts", "import", str(tmp_path / "missing.csv")]).exit_code == 2


def test_cli_export(app, runner, tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(body(*GOOD))
    assert runner.invoke(args=["contacts", "import", str(path)]).exit_code == 0
    result = runner.invoke(args=["contacts", "export"])
    assert result.exit_code == 0 and "ann.smith@missions.example.org" in result.output
    out = tmp_path / "out.csv"
    result = runner.invoke(args=["contacts", "export", "--output", str(out)])
    assert result.exit_code == 0
    assert out.read_text(encoding="utf-8-sig").splitlines()[0].startswith("country_code,country,organisation")
    result = runner.invoke(args=["contacts", "import", str(out)])
    assert result.exit_code == 0 and "2 unchanged" in result.output


def test_demo_directory_covers_every_member_state_but_two(app, runner):
    from campaign.contacts.demo import SUPPRESSED, load_contacts

    with app.app_context():
        assert load_contacts() > 193
        rows = services.coverage()
        assert all(row.deliverable + row.suppressed for row in rows)
        assert sorted(services.uncovered_states()) == sorted(SUPPRESSED)
        assert services.get_by_email("pm.cn@missions.example.org").language == "zh"
        assert services.get_by_email("pm.fr@missions.example.org").tags == ["NY", "P5", "Security Council"]
        assert services.get_by_email("geneva.fr@missions.example.org").timezone == "Europe/Zurich"
        assert all(e.endswith(".example.org") for e in db.session.scalars(sa.select(Contact.email)))
        before = count(ContactEvent), count(AuditEvent)
        assert load_contacts() == 0
        assert (count(ContactEvent), count(AuditEvent)) == before
