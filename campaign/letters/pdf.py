"""Letters as PDF: WeasyPrint, a URL fetcher that only knows the app's own files, a cache.

The template refers to its resources by internal URLs (``demarche:static/…`` and
``demarche:logo``); the fetcher answers those from the static folder and the
coalition's settings and refuses every other URL (``file:``, ``http(s):``,
``data:``…), so no markup in a letter can make the renderer read a file or call out.
A rendered PDF is stored per (revision, signatories key): the key is a digest of
everything else the PDF prints, so a changed letterhead or signatory list makes a
new one and an unchanged letter is rendered once.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from flask import current_app, render_template
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse
from werkzeug.security import safe_join

from campaign.admin.models import CoalitionSettings
from campaign.extensions import db
from campaign.letters.models import RTL_LANGUAGES, Letter, LetterPdf, Revision

#: Bump when the PDF's layout changes, so cached PDFs are made again.
PDF_LAYOUT = 1
INTERNAL_SCHEME = "demarche:"
STATIC_PREFIX = INTERNAL_SCHEME + "static/"
LOGO_URL = INTERNAL_SCHEME + "logo"

# Month names as each language writes them in a date (Russian in the genitive).
_MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June",
           "July", "August", "September", "October", "November", "December"],
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin",
           "juillet", "août", "septembre", "octobre", "novembre", "décembre"],
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio",
           "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"],
    "ru": ["января", "февраля", "марта", "апреля", "мая", "июня",
           "июля", "августа", "сентября", "октября", "ноября", "декабря"],
    "ar": ["يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو",
           "يوليو", "أغسطس", "سبتمبر", "أكتوبر", "نوفمبر", "ديسمبر"],
}  # fmt: skip
#: Words the PDF prints around the letter, in the letter's language.
LABELS = {
    "en": {"page": '"Page " counter(page) " of " counter(pages)', "signatories": "Signatories"},
    "fr": {"page": '"Page " counter(page) " sur " counter(pages)', "signatories": "Signataires"},
    "es": {"page": '"Página " counter(page) " de " counter(pages)', "signatories": "Firmantes"},
    "ru": {"page": '"Страница " counter(page) " из " counter(pages)', "signatories": "Подписавшие организации"},
    "ar": {"page": '"صفحة " counter(page) " من " counter(pages)', "signatories": "الموقعون"},
    "zh": {"page": '"第 " counter(page) " 页，共 " counter(pages) " 页"', "signatories": "签署方"},  # noqa: RUF001
}


def format_letter_date(value: date | datetime, language: str) -> str:
    """A date as a letter in ``language`` would print it: "30 September 2015", "2015年9月30日"."""
    if language == "zh":
        return f"{value.year}年{value.month}月{value.day}日"
    months = _MONTHS.get(language, _MONTHS["en"])
    month = months[value.month - 1]
    if language == "es":
        return f"{value.day} de {month} de {value.year}"
    if language == "ru":
        return f"{value.day} {month} {value.year} г."  # noqa: RUF001 - Cyrillic "g.", for "year"
    return f"{value.day} {month} {value.year}"


class StaticOnlyFetcher(URLFetcher):
    """WeasyPrint's URL fetcher, limited to the app's static files and the coalition's logo.

    It never opens a file outside the static folder nor a network connection:
    anything but ``demarche:static/<path>`` and ``demarche:logo`` is refused.
    """

    def __init__(self, static_folder: str, logo: bytes | None = None, logo_mimetype: str | None = None) -> None:
        super().__init__(allowed_protocols=(), allow_redirects=False, fail_on_errors=False)
        self.static_folder = static_folder
        self.logo, self.logo_mimetype = logo, logo_mimetype
        #: Every URL asked for and refused, for the logs and the tests.
        self.refused: list[str] = []

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        if url == LOGO_URL and self.logo:
            return URLFetcherResponse(url, self.logo, {"Content-Type": self.logo_mimetype or "image/png"})
        if url.startswith(STATIC_PREFIX):
            path = safe_join(self.static_folder, unquote(url.removeprefix(STATIC_PREFIX)))
            if path is not None and os.path.isfile(path):
                with open(path, "rb") as file:
                    body = file.read()
                mimetype = mimetypes.guess_type(path)[0] or "application/octet-stream"
                return URLFetcherResponse(url, body, {"Content-Type": mimetype})
        self.refused.append(url)
        raise ValueError(f"refused to fetch {url[:200]!r}: only the app's static files and logo are available")


def signatories_key(settings: CoalitionSettings, letter: Letter, signatories: Sequence[tuple[str, ...]] = ()) -> str:
    """A digest of what a PDF prints besides the revision: letterhead, logo, date, signatories."""
    material = {
        "layout": PDF_LAYOUT,
        "name": settings.name,
        "letterhead": settings.letterhead or "",
        "logo": hashlib.sha256(settings.logo).hexdigest() if settings.logo else None,
        "published_at": letter.published_at.isoformat() if letter.published_at else None,
        "signatories": [list(s) for s in signatories],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def html_to_pdf(html: str, fetcher: URLFetcher) -> bytes:
    """Render ``html`` with WeasyPrint; relative links resolve against the site."""
    base_url = current_app.config["SITE_URL"] + "/"
    return HTML(string=html, base_url=base_url, url_fetcher=fetcher).write_pdf()


def render_letter_pdf(
    letter: Letter,
    revision: Revision,
    settings: CoalitionSettings,
    signatories: Sequence[tuple[str, ...]] = (),
) -> bytes:
    """The letter as an A4 PDF: letterhead, date, addressee, body, signatories, page numbers."""
    language = revision.language
    html = render_template(
        "letters/pdf.html",
        letter=letter,
        revision=revision,
        settings=settings,
        language=language,
        direction="rtl" if language in RTL_LANGUAGES else "ltr",
        date_text=format_letter_date(letter.published_at or revision.created_at, language),
        labels=LABELS.get(language, LABELS["en"]),
        signatories=signatories,
        stylesheet_url=STATIC_PREFIX + "css/print.css",
        logo_url=LOGO_URL if settings.logo else None,
    )
    fetcher = StaticOnlyFetcher(current_app.static_folder or "", settings.logo, settings.logo_mimetype)
    pdf = html_to_pdf(html, fetcher)
    if fetcher.refused:
        current_app.logger.warning("PDF of %s refused to fetch %s", letter.slug, fetcher.refused)
    return pdf


def _cached(revision: Revision, key: str) -> LetterPdf | None:
    return db.session.scalar(
        sa.select(LetterPdf).where(LetterPdf.revision_id == revision.id, LetterPdf.signatories_key == key)
    )


def letter_pdf(
    letter: Letter,
    revision: Revision,
    settings: CoalitionSettings,
    signatories: Sequence[tuple[str, ...]] = (),
) -> bytes:
    """The PDF of ``revision``, rendered once per revision and signatories key; callers commit.

    Storing a PDF drops the letter's older PDFs in the same language (earlier revisions,
    earlier signatory lists): only the current one is ever served, and the table stays
    at one row per letter and language.  Two requests rendering the same PDF at once
    both insert: the loser's insert fails on the unique constraint, only its savepoint
    is rolled back, and it reads the row the winner stored.
    """
    key = signatories_key(settings, letter, signatories)
    found = _cached(revision, key)
    if found is not None:
        return found.content
    content = render_letter_pdf(letter, revision, settings, signatories)
    try:
        with db.session.begin_nested():
            row = LetterPdf(letter_id=letter.id, revision_id=revision.id, signatories_key=key, content=content)
            db.session.add(row)
            db.session.flush()
            same_language = sa.select(Revision.id).where(
                Revision.letter_id == letter.id, Revision.language == revision.language
            )
            db.session.execute(
                sa.delete(LetterPdf).where(
                    LetterPdf.letter_id == letter.id, LetterPdf.id != row.id, LetterPdf.revision_id.in_(same_language)
                )
            )
    except sa.exc.IntegrityError:
        found = _cached(revision, key)
        if found is not None:
            return found.content
        raise
    return content
