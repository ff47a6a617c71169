"""Letter files: ``flask letters import`` and ``export``, the seed letter, bad files, the demo letter.

The commands commit; the ``database`` fixture turns those commits into savepoints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from campaign.audit import AuditEvent
from campaign.extensions import db
from campaign.letters import files, services
from campaign.letters.models import Letter, Meeting, Revision, Translation

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared/seed/open-letter-veto-restraint-2015.md"
DEMO_LETTERS = ROOT / "letters"
DEMO_SLUG = "protect-civilians-ministerial-2027"
MEMBERS_DEMO_SLUG = "health-care-in-conflict-2027"


def seed_as_letter_file(status: str = "sent", deadline: str = "2015-09-29T22:00:00Z") -> str:
    """The seed letter in the front matter format: its bold "To:" block becomes the addressee."""
    lines = SEED.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("**To:"))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith("**"))
    addressee = "\n".join(line.strip().strip("*").strip() for line in lines[start : end + 1])
    meta = {
        "title": "Framing the veto in the event of mass atrocities",
        "slug": "veto-restraint-2015",
        "language": "en",
        "status": status,
        "addressee": addressee,
        "signature_deadline": deadline,
        "meeting": {
            "title": "High Level Ministerial Meeting on Framing the Veto in the Event of Mass Atrocities",
            "location": "United Nations Headquarters, New York",
            "starts_at": "2015-09-30T10:00:00",
            "ends_at": "2015-10-01T18:00:00",
            "timezone": "America/New_York",
        },
    }
    body = "\n".join(lines[end + 1 :]).strip()
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n\n" + body + "\n"


def letter_file(slug: str = "a-letter", body: str = "Excellencies,\n\nWe ask you to act.", **meta: object) -> str:
    meta = {"title": "A letter", "addressee": "To: Heads of State\nand Government", **meta}
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n\n" + body + "\n"


@pytest.fixture
def runner(app, database):
    return app.test_cli_runner()


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "letters"
    path.mkdir()
    return path


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def run_import(runner, path: Path):
    return runner.invoke(args=["letters", "import", str(path)])


def totals(app) -> dict[str, int]:
    with app.app_context():
        return {
            model.__name__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (Letter, Revision, Translation, Meeting, AuditEvent)
        }


def get(app, slug: str) -> Letter:
    letter = services.get_letter(slug)
    assert letter is not None
    return letter


# --- the seed letter -------------------------------------------------------------


def test_the_seed_letter_imports_and_renders_exactly(app, runner, folder):
    result = run_import(runner, write(folder, "veto-restraint-2015.md", seed_as_letter_file()))
    assert result.exit_code == 0, result.output
    assert "veto-restraint-2015.md: created (status sent;" in result.output
    assert "1 created; 0 errors" in result.output
    with app.app_context():
        letter = get(app, "veto-restraint-2015")
        html = letter.published_revision.body_html
        assert "70<sup>th</sup> anniversary" in html
        assert "<strong>International Coalition for the Responsibility to Protect (ICRtoP)</strong>" in html
        assert "Four vetoes used over the span of three years on <em>one</em> crisis" in html
        assert letter.current_revision.addressee.startswith("To: Heads of State and Government on the Occasion")
        assert letter.current_revision.addressee.endswith("30 September and 1 October 2015")
        # It went the whole way through the workflow, and got its (passed) deadline at the end.
        assert (letter.status, letter.published_revision_id) == ("sent", letter.current_revision_id)
        assert letter.signature_deadline == datetime(2015, 9, 29, 22, tzinfo=UTC)
        moves = db.session.scalars(
            sa.select(AuditEvent.summary).where(AuditEvent.action == "letter.transition").order_by(AuditEvent.id)
        ).all()
        assert [m.split(": ")[1] for m in moves] == [
            "draft → review",
            "review → open",
            "open → closed",
            "closed → sent",
        ]
        meeting = letter.meeting
        assert (meeting.timezone, meeting.starts_at_local) == ("America/New_York", datetime(2015, 9, 30, 10))
        assert meeting.starts_at == datetime(2015, 9, 30, 14, tzinfo=UTC)


def test_round_trip_leaves_one_letter_and_no_new_revision(app, runner, folder, tmp_path):
    write(folder, "veto-restraint-2015.md", seed_as_letter_file(status="open", deadline="2031-01-01T09:30:00+01:00"))
    write(folder, "veto-restraint-2015.fr.md", letter_file("veto-restraint-2015", title="Encadrer le veto"))
    assert run_import(runner, folder).exit_code == 0
    before = totals(app)
    exported = tmp_path / "exported"
    result = runner.invoke(args=["letters", "export", "veto-restraint-2015", "--output", str(exported)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in exported.iterdir()) == ["veto-restraint-2015.fr.md", "veto-restraint-2015.md"]
    text = (exported / "veto-restraint-2015.md").read_text(encoding="utf-8")
    assert "signature_deadline: '2031-01-01T08:30:00Z'" in text
    assert "  starts_at: '2015-09-30T10:00:00'" in text and "  timezone: America/New_York" in text
    assert "addressee: |-\n  To: Heads of State" in text

    again = run_import(runner, exported)
    assert again.exit_code == 0, again.output
    assert "2 unchanged; 0 errors" in again.output
    assert totals(app) == before
    runner.invoke(args=["letters", "export", "veto-restraint-2015", "--output", str(tmp_path / "second")])
    for path in exported.iterdir():
        assert (tmp_path / "second" / path.name).read_bytes() == path.read_bytes()


def test_a_changed_file_adds_exactly_one_revision(app, runner, folder):
    path = write(folder, "veto-restraint-2015.md", seed_as_letter_file(status="draft"))
    assert run_import(runner, path).exit_code == 0
    path.write_text(path.read_text(encoding="utf-8").replace("ten-year anniversary", "tenth anniversary"), "utf-8")
    result = run_import(runner, path)
    assert "revised (revision 2)" in result.output
    assert "1 unchanged; 0 errors" in run_import(runner, path).output
    with app.app_context():
        letter = get(app, "veto-restraint-2015")
        assert [r.number for r in services.revisions(letter)] == [2, 1]
        assert "tenth anniversary" in letter.current_revision.body_markdown
    assert totals(app)["Letter"] == 1


def test_a_published_letter_revised_by_file_keeps_its_public_text(app, runner, folder):
    path = write(folder, "a-letter.md", letter_file(status="open", signature_deadline="2031-01-01T00:00:00Z"))
    run_import(runner, path)
    path.write_text(letter_file(body="New words.", status="open", signature_deadline="2031-01-01T00:00:00Z"))
    result = run_import(runner, path)
    assert "revised (revision 2; the public still reads revision 1 until the changes are published)" in result.output
    with app.app_context():
        letter = get(app, "a-letter")
        assert (letter.published_revision.number, letter.current_revision.number) == (1, 2)


TRICKY_TEXTS = [
    ("A title: with a colon", "To: Heads of State  \nand Government", "Line one\n\n---\n\nAfter a rule"),
    ("'Quoted' \"title\" #not-a-comment", "", "    indented code first\n\nthen text"),
    ("رسالة مفتوحة", "إلى: رؤساء الدول\nوالحكومات", "---\ntitle: not front matter\n---\n\nbody"),  # noqa: RUF001
    ("yes", "null", "\n\n  Starts after blank lines, ends with spaces   \n\n"),
]


@pytest.mark.parametrize(("title", "addressee", "body"), TRICKY_TEXTS)
def test_texts_made_elsewhere_export_and_import_back_unchanged(app, runner, tmp_path, title, addressee, body):
    with app.app_context():
        letter = services.create_letter(services.LetterText(title=title, body_markdown=body, addressee=addressee))
        services.save_translation(
            letter, "fr", services.LetterText(title=title, body_markdown=body, addressee=addressee)
        )
        db.session.commit()
        slug = letter.slug
    runner.invoke(args=["letters", "export", slug, "--output", str(tmp_path)])
    before = totals(app)
    result = run_import(runner, tmp_path)
    assert "2 unchanged; 0 errors" in result.output, result.output
    assert totals(app) == before


# --- the workflow, settings and meetings -------------------------------------------


def test_status_is_reached_by_moving_forward(app, runner, folder):
    path = write(folder, "a-letter.md", letter_file(status="draft"))
    run_import(runner, path)
    path.write_text(letter_file(status="open", signature_deadline="2031-05-01T12:00:00Z"))
    result = run_import(runner, path)
    assert "updated (settings updated; draft → open)" in result.output
    with app.app_context():
        letter = get(app, "a-letter")
        assert letter.status == "open" and letter.published_revision_id == letter.current_revision_id


def test_going_backwards_is_refused_and_nothing_of_the_file_is_kept(app, runner, folder):
    path = write(folder, "a-letter.md", letter_file(status="review"))
    run_import(runner, path)
    before = totals(app)
    path.write_text(letter_file(body="Changed text too.", status="draft"))
    result = run_import(runner, path)
    assert result.exit_code == 1
    assert "error (The letter is in review; it cannot go back to draft by import" in result.output
    assert totals(app) == before  # the revision made before the refusal was rolled back
    with app.app_context():
        assert get(app, "a-letter").status == "review"


def test_opening_after_the_deadline_is_refused_with_the_reason(app, runner, folder):
    meeting = {"title": "M", "starts_at": "2031-09-21T10:00:00", "timezone": "Europe/Zurich"}
    path = write(
        folder, "a-letter.md", letter_file(status="open", signature_deadline="2020-01-01T00:00:00Z", meeting=meeting)
    )
    result = run_import(runner, path)
    assert result.exit_code == 1
    assert "The signature deadline has passed" in result.output
    assert totals(app) == dict.fromkeys(("Letter", "Revision", "Translation", "Meeting", "AuditEvent"), 0)


def test_meetings_are_matched_by_title_start_and_zone(app, runner, folder):
    meeting = {
        "title": "Ministerial Conference",
        "location": "Geneva",
        "starts_at": "2031-09-21T10:00:00",
        "timezone": "Europe/Zurich",
    }
    write(folder, "first.md", letter_file(title="First", meeting=meeting))
    write(folder, "second.md", letter_file(title="Second", meeting={**meeting, "location": "Palais des Nations"}))
    result = run_import(runner, folder)
    assert "first.md: created (status draft; meeting 'Ministerial Conference' created)" in result.output
    assert "second.md: created (status draft; meeting 'Ministerial Conference' updated)" in result.output
    with app.app_context():
        meetings = db.session.scalars(sa.select(Meeting)).all()
        assert [(m.location, m.starts_at) for m in meetings] == [
            ("Palais des Nations", datetime(2031, 9, 21, 8, tzinfo=UTC))
        ]
        assert get(app, "first").meeting_id == get(app, "second").meeting_id == meetings[0].id
    write(folder, "third.md", letter_file(title="Third", meeting={**meeting, "starts_at": "2031-09-22T10:00:00"}))
    run_import(runner, folder / "third.md")
    assert totals(app)["Meeting"] == 2


def test_removing_optional_keys_clears_the_settings(app, runner, folder):
    meeting = {"title": "M", "starts_at": "2031-09-21T10:00:00", "timezone": "Europe/Zurich"}
    path = write(folder, "a-letter.md", letter_file(embargo_until="2031-01-01T00:00:00Z", meeting=meeting))
    run_import(runner, path)
    path.write_text(letter_file())
    assert "updated (settings updated)" in run_import(runner, path).output
    with app.app_context():
        letter = get(app, "a-letter")
        assert (letter.embargo_until, letter.meeting_id) == (None, None)


def test_members_only_imports_exports_and_clears(app, runner, folder, tmp_path):
    path = write(folder, "a-letter.md", letter_file(status="open", members_only=True))
    assert "a-letter.md: created (status open)" in run_import(runner, path).output
    with app.app_context():
        assert get(app, "a-letter").members_only is True
    runner.invoke(args=["letters", "export", "a-letter", "--output", str(tmp_path / "out")])
    exported = (tmp_path / "out" / "a-letter.md").read_text(encoding="utf-8")
    assert "\nmembers_only: true\n" in exported
    assert "1 unchanged; 0 errors" in run_import(runner, tmp_path / "out").output

    path.write_text(letter_file(status="open"))
    assert "a-letter.md: updated (settings updated)" in run_import(runner, path).output
    with app.app_context():
        assert get(app, "a-letter").members_only is False
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "letter.settings"))
        assert event.details == {"members_only": "False"}
    runner.invoke(args=["letters", "export", "a-letter", "--output", str(tmp_path / "again")])
    assert "members_only" not in (tmp_path / "again" / "a-letter.md").read_text(encoding="utf-8")


# --- translations ------------------------------------------------------------------


def test_translations_are_imported_after_their_original(app, runner, folder):
    write(folder, "a-letter.ar.md", letter_file(title="رسالة", body="أصحاب الفخامة،", status="published"))
    write(folder, "a-letter.fr.md", letter_file(title="Une lettre", body="Excellences,", status="review"))
    write(folder, "a-letter.md", letter_file(status="open", signature_deadline="2031-01-01T00:00:00Z"))
    result = run_import(runner, folder)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert lines[0].endswith("a-letter.md: created (status open)")
    assert lines[1].endswith("a-letter.ar.md: created (status published)")
    assert lines[2].endswith("a-letter.fr.md: created (status review)")
    with app.app_context():
        letter = get(app, "a-letter")
        assert [t.language for t in services.published_translations(letter)] == ["ar"]
        assert letter.translation("ar").published_revision.body_html == "<p>أصحاب الفخامة،</p>"


def test_a_changed_published_translation_is_republished(app, runner, folder):
    write(folder, "a-letter.md", letter_file())
    path = write(folder, "a-letter.fr.md", letter_file(title="Une lettre", body="Excellences,", status="published"))
    run_import(runner, folder)
    path.write_text(letter_file(title="Une lettre", body="Mesdames et Messieurs,", status="published"))
    assert "a-letter.fr.md: revised (revision 2; status published)" in run_import(runner, path).output
    with app.app_context():
        translation = get(app, "a-letter").translation("fr")
        assert translation.published_revision_id == translation.current_revision_id
    path.write_text(letter_file(title="Une lettre", body="Mesdames et Messieurs,", status="review"))
    assert "a-letter.fr.md: updated (status review)" in run_import(runner, path).output


# --- bad files ---------------------------------------------------------------------

GOOD_META = "---\ntitle: A letter\n"
BAD_FILES = [
    ("no-front-matter", "a.md", "Excellencies,\n\nJust text.\n", "No front matter"),
    ("unclosed", "a.md", "---\ntitle: A letter\n\nBody\n", "The front matter is not closed"),
    ("invalid-yaml", "a.md", "---\ntitle: [unclosed\n---\n\nBody\n", "not valid YAML"),
    ("tab-indented-yaml", "a.md", "---\nmeeting:\n\ttitle: x\n---\n\nBody\n", "not valid YAML"),
    ("not-a-mapping", "a.md", "---\n- title\n- body\n---\n\nBody\n", "must be 'key: value' lines"),
    ("unknown-key", "a.md", GOOD_META + "author: me\n---\n\nBody\n", "Unknown key author; a letter has title"),
    ("repeated-key", "a.md", GOOD_META + "status: draft\nstatus: open\n---\n\nBody\n", "repeats status"),
    ("python-tag", "a.md", GOOD_META + "slug: !!python/object/apply:os.system ['id']\n---\n\nB\n", "not valid YAML"),
    ("bad-language", "a.md", GOOD_META + "language: de\n---\n\nBody\n", "'de' is not a UN language"),
    ("yes-no-language", "a.md", GOOD_META + "language: no\n---\n\nBody\n", "language: give text"),
    ("name-language", "a.de.md", GOOD_META + "---\n\nBody\n", "'de' in the file name is not a UN language"),
    ("name-shape", "a.b.fr.md", GOOD_META + "---\n\nBody\n", "Name the file <slug>.md"),
    ("name-slug", "A Letter.md", GOOD_META + "---\n\nBody\n", "'A Letter' is not a letter address"),
    ("slug-mismatch", "a.md", GOOD_META + "slug: b\n---\n\nBody\n", "does not match the file name"),
    ("bad-status", "a.md", GOOD_META + "status: published\n---\n\nBody\n", "'published' is not one of draft"),
    ("bad-date", "a.md", GOOD_META + "signature_deadline: 2027-13-45T10:00:00Z\n---\n\nB\n", "month must be in 1..12"),
    ("bad-date-text", "a.md", GOOD_META + "signature_deadline: '2027-09-15 at noon'\n---\n\nB\n", "not an ISO 8601"),
    ("words-date", "a.md", GOOD_META + "embargo_until: next week\n---\n\nBody\n", "give a date and a time"),
    ("date-only", "a.md", GOOD_META + "signature_deadline: 2031-09-15\n---\n\nBody\n", "give a date and a time"),
    ("naive-deadline", "a.md", GOOD_META + "signature_deadline: '2031-09-15T10:00:00'\n---\n\nB\n", "add the offset"),
    ("members-only-text", "a.md", GOOD_META + "members_only: 'true'\n---\n\nB\n", "members_only: give true or false"),
    ("year-range", "a.md", GOOD_META + "embargo_until: '9999-12-31T23:00:00-05:00'\n---\n\nB\n", "out of range"),
    (
        "meeting-offset",
        "a.md",
        GOOD_META
        + "meeting:\n  title: M\n  starts_at: 2031-09-21T10:00:00+02:00\n  timezone: Europe/Zurich\n---\n\nB\n",
        "meeting.starts_at: give the local time without an offset",
    ),
    (
        "meeting-zone",
        "a.md",
        GOOD_META + "meeting:\n  title: M\n  starts_at: 2031-09-21T10:00:00\n  timezone: Europe/Geneva\n---\n\nB\n",
        "'Europe/Geneva' is not a time zone name",
    ),
    (
        "meeting-start",
        "a.md",
        GOOD_META + "meeting:\n  title: M\n  timezone: UTC\n---\n\nB\n",
        "meeting.starts_at is missing",
    ),
    (
        "meeting-ends-first",
        "a.md",
        GOOD_META + "meeting:\n  title: M\n  starts_at: 2031-09-21T10:00:00\n  ends_at: 2031-09-20T10:00:00\n"
        "  timezone: UTC\n---\n\nB\n",
        "it ends before it starts",
    ),
    ("meeting-key", "a.md", GOOD_META + "meeting:\n  title: M\n  room: 20\n---\n\nB\n", "Unknown key meeting.room"),
    ("meeting-scalar", "a.md", GOOD_META + "meeting: tomorrow\n---\n\nB\n", "meeting: give its title"),
    ("no-title", "a.md", "---\nstatus: draft\n---\n\nBody\n", "has no title"),
    ("blank-title", "a.md", "---\ntitle: '   '\n---\n\nBody\n", "has no title"),
    ("numeric-title", "a.md", "---\ntitle: 1325\n---\n\nBody\n", "title: give text"),
    ("no-body", "a.md", GOOD_META + "---\n\n  \n\n", "no text after the front matter"),
    ("not-utf8", "a.md", b"---\ntitle: Caf\xe9\n---\n\nBody\n", "not UTF-8 text (byte 0xe9 at offset 14)"),
    ("nul", "a.md", GOOD_META + "---\n\nBo\x00dy\n", "NUL character"),
    ("too-long-body", "a.md", GOOD_META + "---\n\n" + "x" * 200_001 + "\n", "longer than 200,000 characters"),
    ("over-large", "a.md", GOOD_META + "---\n\n" + "x" * files.MAX_FILE_BYTES, "a letter file may have 1,000,000"),
    ("orphan-translation", "ghost.fr.md", GOOD_META + "---\n\nBonjour\n", "There is no letter 'ghost' to translate"),
    ("translation-key", "ghost.fr.md", GOOD_META + "embargo_until: x\n---\n\nB\n", "Unknown key embargo_until"),
    ("translation-members", "ghost.fr.md", GOOD_META + "members_only: true\n---\n\nB\n", "Unknown key members_only"),
    ("wrong-extension", "a.txt", GOOD_META + "---\n\nBody\n", "A letter file's name ends in .md"),
]


@pytest.mark.parametrize(("name", "filename", "content", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_are_refused_clearly_and_import_nothing(app, runner, folder, name, filename, content, message):
    before = totals(app)
    result = run_import(runner, write(folder, filename, content))
    assert result.exit_code == 1
    assert f"{filename}: error (" in result.output
    assert message in result.output
    assert "nothing imported; 1 error" in result.output
    assert totals(app) == before


def test_translation_problems_need_the_letter(app, runner, folder):
    write(folder, "a-letter.md", letter_file())
    run_import(runner, folder)
    before = totals(app)
    own = run_import(runner, write(folder, "a-letter.en.md", letter_file()))
    assert "That is the letter's own language" in own.output and own.exit_code == 1
    mismatch = run_import(runner, write(folder, "a-letter.fr.md", letter_file(language="es")))
    assert "language: 'es' does not match the file name's 'fr'" in mismatch.output
    assert totals(app) == before


def test_a_bad_file_in_a_folder_does_not_stop_the_others(app, runner, folder):
    write(folder, "good.md", letter_file(title="Good"))
    write(folder, "bad.md", "no front matter")
    write(folder, "good.fr.md", letter_file(title="Bonne"))
    write(folder, "notes.txt", "ignored")
    result = run_import(runner, folder)
    assert result.exit_code == 1
    assert "2 created; 1 error" in result.output
    assert totals(app)["Letter"] == 1 and totals(app)["Translation"] == 1


def test_cli_edge_cases(runner, tmp_path, folder):
    empty = runner.invoke(args=["letters", "import", str(folder)])
    assert empty.exit_code == 1 and "no .md files" in empty.output
    missing = runner.invoke(args=["letters", "import", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    unknown = runner.invoke(args=["letters", "export", "no-such-letter", "--output", str(tmp_path)])
    assert unknown.exit_code == 1 and "no letter 'no-such-letter'" in unknown.output


def test_reading_never_constructs_python_objects(tmp_path):
    path = tmp_path / "a.md"
    path.write_text("---\ntitle: !!python/name:os.system\n---\n\nBody\n")
    with pytest.raises(files.LetterFileError, match="not valid YAML"):
        files.read_file(path)


# --- the demo letter ---------------------------------------------------------------


@pytest.fixture
def before_the_demo_deadline(monkeypatch):
    """The demo letter opens for signatures only before its deadline: read it as of now-ish."""
    frozen = datetime(2026, 12, 1, tzinfo=UTC)
    monkeypatch.setattr("campaign.letters.services.utcnow", lambda: frozen)
    monkeypatch.setattr("campaign.letters.imports.utcnow", lambda: frozen)


def test_the_shipped_letters_are_what_export_writes(app, runner, tmp_path, before_the_demo_deadline):
    names = sorted(p.name for p in DEMO_LETTERS.iterdir())
    assert names == [f"{MEMBERS_DEMO_SLUG}.md", f"{DEMO_SLUG}.ar.md", f"{DEMO_SLUG}.fr.md", f"{DEMO_SLUG}.md"]
    result = run_import(runner, DEMO_LETTERS)
    assert result.exit_code == 0, result.output
    for slug in (DEMO_SLUG, MEMBERS_DEMO_SLUG):
        runner.invoke(args=["letters", "export", slug, "--output", str(tmp_path)])
    for name in names:
        assert (tmp_path / name).read_text(encoding="utf-8") == (DEMO_LETTERS / name).read_text(encoding="utf-8")


def test_demo_load_opens_the_letter_once(app, runner, before_the_demo_deadline):
    first = runner.invoke(args=["demo", "load"])
    assert first.exit_code == 0, first.output
    assert f"{DEMO_SLUG}.md: created (status open; meeting" in first.output
    assert f"{MEMBERS_DEMO_SLUG}.md: created (status open)" in first.output
    assert "4 created; 0 errors" in first.output
    loaded = totals(app)
    with app.app_context():
        letter = get(app, DEMO_SLUG)
        assert letter.is_public() and letter.current_revision.author.role == "coordinator"
        assert [t.language for t in services.published_translations(letter)] == ["ar", "fr"]
        html = letter.published_revision.body_html
        assert "80<sup>th</sup>" in html and "<strong>Civilian Shield Coalition</strong>" in html and "<ul>" in html
        assert "80<sup>e</sup>" in letter.translation("fr").published_revision.body_html
        assert (letter.meeting.timezone, letter.meeting.starts_at_local) == ("Europe/Zurich", datetime(2027, 9, 21, 10))
        assert not letter.members_only
        statement = get(app, MEMBERS_DEMO_SLUG)
        assert statement.members_only and statement.accepts_signatures() and statement.is_public()
    second = runner.invoke(args=["demo", "load"])
    assert second.exit_code == 0 and "4 kept; 0 errors" in second.output
    assert totals(app) == loaded


def test_demo_load_leaves_a_coordinators_changes_alone(app, runner, before_the_demo_deadline):
    runner.invoke(args=["demo", "load"])
    with app.app_context():
        letter = get(app, DEMO_SLUG)
        services.save_revision(letter, services.LetterText(title="Edited", body_markdown="Edited text."))
        services.transition(letter, "closed")
        db.session.commit()
    runner.invoke(args=["demo", "load"])
    with app.app_context():
        letter = get(app, DEMO_SLUG)
        assert (letter.title, letter.status) == ("Edited", "closed")
