"""The letter PDF: its text, its scripts (Arabic shaped, CJK and Cyrillic drawn), its cache, its fetcher."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from campaign.admin import services as admin_services
from campaign.extensions import db
from campaign.letters import pdf, services
from campaign.letters.models import LetterPdf
from campaign.letters.services import LetterText
from tests.letters.publishing import ORIGINAL, TRANSLATIONS, assert_under, body_sentences, publish, seed_text
from tests.letters.xss_corpus import PAYLOADS

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "letters"
STATIC = Path(__file__).resolve().parents[2] / "static"


def poppler(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is missing: install poppler-utils")
    return path


def pdf_text(content: bytes) -> str:
    """The PDF's text as pdftotext reads it, whitespace folded to single spaces."""
    result = subprocess.run([poppler("pdftotext"), "-", "-"], input=content, capture_output=True, check=True)
    return " ".join(result.stdout.decode("utf-8").split())


def page_image(content: bytes, name: str) -> Path:
    """Page 1 as a PNG under test-artifacts/letters/, kept for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.pdf").write_bytes(content)
    prefix = ARTIFACTS / name
    subprocess.run(
        [poppler("pdftoppm"), "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", "-", str(prefix)],
        input=content,
        check=True,
    )
    return prefix.with_suffix(".png")


def test_seed_letter_pdf(app, client):
    letter = publish(app, seed_text())

    response = client.get(f"/letters/{letter.slug}.pdf")

    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == f'inline; filename="{letter.slug}-en.pdf"'
    assert response.data.startswith(b"%PDF-")
    text = pdf_text(response.data)
    assert_under(text, body_sentences())
    assert "To: Heads of State and Government on the Occasion of the High Level Ministerial Meetings" in text
    assert "Demarche" in text  # the letterhead
    with app.app_context():
        published_at = services.get_letter(letter.slug).published_at
    assert pdf.format_letter_date(published_at, "en") in text
    assert "Page 1 of 2" in text and "Page 2 of 2" in text
    page_image(response.data, "seed-en")


def test_pdf_prints_the_letterhead_and_logo(app, client, monkeypatch, tmp_path):
    logo = io.BytesIO()
    Image.new("RGB", (120, 40), (20, 60, 140)).save(logo, format="PNG")
    with app.app_context():
        admin_services.update_settings(
            admin_services.SettingsData(
                name="Coalition for Testing",
                letterhead="1 Example Square\nGeneva, Switzerland",
                mail_from_name="",
                mail_from_address="",
                reply_to="",
                postal_address="",
                privacy_notice="",
            ),
            logo=logo.getvalue(),
        )
        db.session.commit()
    letter = publish(app, ORIGINAL)
    fetched: list[str] = []
    original_fetch = pdf.StaticOnlyFetcher.fetch

    def spy(self, url, headers=None):
        fetched.append(url)
        return original_fetch(self, url, headers)

    monkeypatch.setattr(pdf.StaticOnlyFetcher, "fetch", spy)
    content = client.get(f"/letters/{letter.slug}.pdf").data

    text = pdf_text(content)
    assert "Coalition for Testing" in text and "1 Example Square" in text and "Geneva, Switzerland" in text
    assert sorted(fetched) == ["demarche:logo", "demarche:static/css/print.css"]
    (tmp_path / "logo.pdf").write_bytes(content)  # pdfimages does not read standard input
    images = subprocess.run(
        [poppler("pdfimages"), "-list", str(tmp_path / "logo.pdf")], capture_output=True, check=True
    )
    assert b" 120    40 " in images.stdout  # the logo, embedded at its own size


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("ar", ["المدنيين", "رؤساء"]),
        ("zh", ["保护平民", "公开信"]),
        ("ru", ["защитить мирных жителей", "Главам государств"]),
        ("fr", ["protéger les civils", "Page 1 sur 1"]),
        ("es", ["protejan a los civiles", "Página 1 de 1"]),
    ],
)
def test_translations_in_every_script(app, client, language, words):
    letter = publish(app, ORIGINAL, translations={language: TRANSLATIONS[language]})

    response = client.get(f"/letters/{letter.slug}.pdf?lang={language}")

    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f'inline; filename="{letter.slug}-{language}.pdf"'
    text = pdf_text(response.data)
    assert_under(text, words)
    fonts = subprocess.run([poppler("pdffonts"), "-"], input=response.data, capture_output=True, check=True)
    assert b"Noto" in fonts.stdout
    # Look at these: Arabic joined and right to left, no boxes for Chinese or Russian.
    image = page_image(response.data, f"translation-{language}")
    with Image.open(image) as page:
        width, height = page.size
        assert abs(width - 661) <= 1 and abs(height - 935) <= 1  # A4 at 80 dpi


def test_arabic_pdf_is_right_to_left(app, client):
    letter = publish(app, ORIGINAL, translations={"ar": TRANSLATIONS["ar"]})

    content = client.get(f"/letters/{letter.slug}.pdf?lang=ar").data

    # pdftotext -bbox gives each word's box, its letters in drawing order (left to right):
    # on a right-to-left page the first word of the body lies right of the words after it.
    result = subprocess.run([poppler("pdftotext"), "-bbox", "-", "-"], input=content, capture_output=True, check=True)
    boxes = {}
    for line in result.stdout.decode().splitlines():
        if "<word " in line:
            word = line.rsplit(">", 2)[-2].split("<")[0]
            x_min = float(line.split('xMin="')[1].split('"')[0])
            boxes.setdefault(word[::-1], x_min)
    assert boxes["ندعو"] > boxes["جميع"] > boxes["الدول"]


def test_pdf_is_cached_per_revision(app, client, monkeypatch):
    letter = publish(app, ORIGINAL)
    renders: list[str] = []
    original = pdf.html_to_pdf

    def counting(html, fetcher):
        renders.append(html)
        return original(html, fetcher)

    monkeypatch.setattr(pdf, "html_to_pdf", counting)

    first = client.get(f"/letters/{letter.slug}.pdf").data
    second = client.get(f"/letters/{letter.slug}.pdf").data

    assert first == second
    assert len(renders) == 1
    with app.app_context():
        rows = db.session.scalars(sa.select(LetterPdf).where(LetterPdf.letter_id == letter.id)).all()
        assert len(rows) == 1 and rows[0].content == first

        saved = services.get_letter(letter.slug)
        services.save_revision(saved, LetterText(title="Revised", body_markdown="A changed text for the PDF."))
        db.session.commit()
    assert client.get(f"/letters/{letter.slug}.pdf").data == first  # not yet published
    with app.app_context():
        services.publish_changes(services.get_letter(letter.slug))
        db.session.commit()

    third = client.get(f"/letters/{letter.slug}.pdf").data

    assert len(renders) == 2
    assert "A changed text for the PDF." in pdf_text(third)
    with app.app_context():  # the old revision's PDF is never served again: it is dropped
        rows = db.session.scalars(sa.select(LetterPdf).where(LetterPdf.letter_id == letter.id)).all()
        published = services.get_letter(letter.slug).published_revision_id
        assert [(row.revision_id, row.content) for row in rows] == [(published, third)]


def test_the_key_covers_letterhead_logo_and_signatories(app, ctx):
    letter = services.get_letter(publish(app, ORIGINAL).slug)
    settings = admin_services.get_settings()
    before = pdf.signatories_key(settings, letter)

    settings.letterhead = "A new address"
    assert pdf.signatories_key(settings, letter) != before
    settings.letterhead = ""
    assert pdf.signatories_key(settings, letter) == before
    settings.logo = b"\x89PNG\r\n\x1a\n"
    assert pdf.signatories_key(settings, letter) != before
    settings.logo = None
    assert pdf.signatories_key(settings, letter, [("Org", "FR")]) != before


def test_a_new_letterhead_replaces_the_pdf_in_that_language_only(app, client):
    letter = publish(app, ORIGINAL, translations={"fr": TRANSLATIONS["fr"]})
    english = client.get(f"/letters/{letter.slug}.pdf").data
    french = client.get(f"/letters/{letter.slug}.pdf?lang=fr").data
    with app.app_context():
        settings = admin_services.get_settings()
        data = {k: getattr(settings, k) or "" for k in admin_services.SettingsData.__dataclass_fields__}
        admin_services.update_settings(admin_services.SettingsData(**{**data, "letterhead": "Rue du Test 1"}))
        db.session.commit()

    renewed = client.get(f"/letters/{letter.slug}.pdf").data

    assert renewed != english and "Rue du Test 1" in pdf_text(renewed)
    with app.app_context():
        rows = db.session.scalars(sa.select(LetterPdf).where(LetterPdf.letter_id == letter.id)).all()
        assert sorted(row.content for row in rows) == sorted([renewed, french])


def test_a_concurrent_render_reuses_the_stored_pdf(app, ctx, monkeypatch):
    letter = services.get_letter(publish(app, ORIGINAL).slug)
    settings = admin_services.get_settings()
    revision = letter.published_revision
    key = pdf.signatories_key(settings, letter)
    real_cached = pdf._cached
    calls = {"n": 0}

    def cached_after_a_race(revision_, key_):
        # The first look finds nothing; meanwhile "another request" stores its PDF.
        calls["n"] += 1
        if calls["n"] == 1:
            with db.session.begin_nested():
                db.session.execute(
                    sa.insert(LetterPdf).values(
                        letter_id=letter.id, revision_id=revision.id, signatories_key=key, content=b"%PDF-winner"
                    )
                )
            return None
        return real_cached(revision_, key_)

    monkeypatch.setattr(pdf, "_cached", cached_after_a_race)

    assert pdf.letter_pdf(letter, revision, settings) == b"%PDF-winner"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LetterPdf)) == 1


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "http://example.org/",
        "https://example.org/x.css",
        "ftp://example.org/x",
        "data:text/css,body{}",
        "demarche:static/../../../etc/passwd",
        "demarche:static/%2e%2e/%2e%2e/etc/passwd",
        "demarche:static//etc/passwd",
        "demarche:static/css",
        "demarche:static/no-such-file.css",
        "demarche:logo",  # no logo set
        "demarche:/etc/passwd",
        "/etc/passwd",
    ],
)
def test_fetcher_refuses_everything_else(url):
    fetcher = pdf.StaticOnlyFetcher(str(STATIC))

    with pytest.raises(ValueError, match="refused"):
        fetcher(url)
    assert fetcher.refused == [url]


def test_fetcher_serves_static_files_and_the_logo():
    fetcher = pdf.StaticOnlyFetcher(str(STATIC), logo=b"\x89PNG\r\n\x1a\nlogo", logo_mimetype="image/png")

    stylesheet = fetcher("demarche:static/css/print.css")
    logo = fetcher("demarche:logo")

    assert stylesheet.read() == (STATIC / "css" / "print.css").read_bytes()
    assert stylesheet.content_type == "text/css"
    assert logo.read() == b"\x89PNG\r\n\x1a\nlogo" and logo.content_type == "image/png"
    assert fetcher.refused == []


def test_rendering_never_fetches_outside_resources(ctx):
    fetcher = pdf.StaticOnlyFetcher(str(STATIC))
    html = (
        '<link rel="stylesheet" href="http://example.org/x.css">'
        '<link rel="stylesheet" href="file:///etc/passwd">'
        '<p>Text <img src="file:///etc/passwd" alt="x"> <img src="https://example.org/x.png" alt="y">'
        '<a href="http://example.org/page">a link</a></p>'
        '<p class="x">and <span>more</span></p>'
    )

    content = pdf.html_to_pdf(html, fetcher)

    assert content.startswith(b"%PDF-")
    assert sorted(fetcher.refused) == sorted(
        ["http://example.org/x.css", "file:///etc/passwd", "file:///etc/passwd", "https://example.org/x.png"]
    )
    assert "root:" not in pdf_text(content)


def test_nothing_executable_reaches_the_pdf(app, client, monkeypatch):
    body = "\n\n".join(f"{name}: {payload}" for name, payload in PAYLOADS)
    body += "\n\n[a link](http://example.org/page) and ![an image](file:///etc/passwd)"
    letter = publish(app, LetterText(title="Hostile", addressee="<script>x</script>", body_markdown=body))
    fetched: list[str] = []
    original_fetch = pdf.StaticOnlyFetcher.fetch

    def spy(self, url, headers=None):
        fetched.append(url)
        return original_fetch(self, url, headers)

    monkeypatch.setattr(pdf.StaticOnlyFetcher, "fetch", spy)
    content = client.get(f"/letters/{letter.slug}.pdf").data

    assert fetched == ["demarche:static/css/print.css"]
    urls = subprocess.run([poppler("pdfinfo"), "-url", "-"], input=content, capture_output=True, check=True)
    links = [line.split()[-1] for line in urls.stdout.decode().splitlines()[1:] if line.strip()]
    assert links and all(link.startswith(("http://", "https://", "mailto:")) for link in links), links
    assert b"/JavaScript" not in content and b"/JS " not in content and b"/Launch" not in content
    assert "payload-para" in pdf_text(content)


def test_dates_in_each_language():
    day = datetime(2015, 9, 30, tzinfo=UTC)
    assert [pdf.format_letter_date(day, lang) for lang in ("en", "fr", "es", "ru", "ar", "zh")] == [
        "30 September 2015",
        "30 septembre 2015",
        "30 de septiembre de 2015",
        "30 сентября 2015 г.",  # noqa: RUF001
        "30 سبتمبر 2015",
        "2015年9月30日",
    ]
