"""Public pages: published letters, their PDF, the Atom feed, meeting calendars.

Only letters that are published and past any embargo exist here; anything else,
a draft or a language not yet published included, is a 404 (coordinators preview
their letters on their own pages).
"""

from __future__ import annotations

import re

from flask import abort, current_app, make_response, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from campaign import pagecache
from campaign.admin.services import get_settings
from campaign.db import page_arg, utcnow
from campaign.extensions import db
from campaign.letters import pdf, public_bp, services
from campaign.letters.models import RTL_LANGUAGES, UN_LANGUAGES, Letter, Meeting, Revision
from campaign.letters.syndication import FeedEntry, atom_feed, meeting_calendar, summary
from campaign.rendering import plain_text

PER_PAGE = 20
FEED_SIZE = 50


def absolute_url(endpoint: str, **values: object) -> str:
    """A link for other sites (feeds, Open Graph, calendars), built on ``SITE_URL``, never the Host header."""
    return current_app.config["SITE_URL"] + url_for(endpoint, **values)


def _public_letter(slug: str) -> Letter:
    letter = services.public_letter(slug)
    if letter is None:
        abort(404)
    return letter


def _public_revision(letter: Letter) -> Revision:
    """The text the ``lang`` argument asks for; a language that is not published is a 404."""
    language, _ = pagecache.page_variant(request.args)
    if language is not None and language not in UN_LANGUAGES:
        abort(404)
    revision = services.public_revision(letter, language)
    if revision is None:
        abort(404)
    return revision


def _lang_arg(letter: Letter, language: str) -> dict[str, str]:
    return {} if language == letter.language else {"lang": language}


def _languages(letter: Letter, current: str) -> list[dict[str, object]]:
    """The original and each published translation, for the language switcher."""
    codes = [letter.language] + [t.language for t in services.published_translations(letter)]
    return [
        {
            "code": code,
            "name": UN_LANGUAGES[code],
            "original": code == letter.language,
            "current": code == current,
            "url": url_for("public.letter", slug=letter.slug, **_lang_arg(letter, code)),
            "absolute_url": absolute_url("public.letter", slug=letter.slug, **_lang_arg(letter, code)),
        }
        for code in codes
    ]


@public_bp.route("/letters")
def letters() -> str:
    query = services.public_letters().options(selectinload(Letter.published_revision), selectinload(Letter.meeting))
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    return render_template("letters/public/index.html", page=page)


@public_bp.route("/letters/<slug>")
def letter(slug: str) -> Response:
    """The letter and its approved signatories, by country or (``?by=name``) alphabetically.

    The page carries an ETag (``listing.page_validator``); a browser that sends it back
    gets a 304 until anything the page shows changes, a newly approved signature included.
    The page rendered for an anonymous reader is offered to ``pagecache``, which answers
    the next ones until then (or until the signature deadline) without coming here.
    """
    from campaign.signatures import listing  # here: the signatures package imports the letters one

    letter = _public_letter(slug)
    revision = _public_revision(letter)
    _, by = pagecache.page_variant(request.args)
    etag = listing.page_validator(letter, revision.id, by, current_user.get_id())
    if etag in request.if_none_match and not session.get("_flashes"):
        response = current_app.response_class(status=304)
    else:
        response = make_response(_letter_page(letter, revision, by))
        deadline = letter.signature_deadline if letter.accepts_signatures() else None
        pagecache.offer(etag, deadline.timestamp() if deadline else None)
    response.set_etag(etag)
    response.headers["Cache-Control"] = "no-cache"
    response.vary.add("Cookie")
    return response


def _letter_page(letter: Letter, revision: Revision, by: str) -> str:
    from campaign.signatures import listing

    language = revision.language
    description = summary(plain_text(revision.body_html), 200)
    signatories = listing.approved_signatories(letter)
    return render_template(
        "letters/public/letter.html",
        letter=letter,
        revision=revision,
        language=language,
        direction="rtl" if language in RTL_LANGUAGES else "ltr",
        languages=_languages(letter, language),
        page_url=absolute_url("public.letter", slug=letter.slug, **_lang_arg(letter, language)),
        pdf_url=url_for("public.letter_pdf", slug=letter.slug, **_lang_arg(letter, language)),
        description=description,
        signatories=signatories,
        signatory_groups=listing.grouped_by_country(signatories) if by == "country" else None,
        signatories_by=by,
        signatories_count=listing.count_label(len(signatories)),
        lang_arg=_lang_arg(letter, language),
    )


@public_bp.route("/letters/<slug>.pdf")
def letter_pdf(slug: str) -> Response:
    letter = _public_letter(slug)
    revision = _public_revision(letter)
    from campaign.signatures import listing

    signatories = listing.pdf_rows(listing.approved_signatories(letter))
    content = pdf.letter_pdf(letter, revision, get_settings(), signatories)
    db.session.commit()
    filename = re.sub(r"[^a-z0-9-]", "", f"{letter.slug}-{revision.language}".lower()) + ".pdf"
    response = current_app.response_class(content, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


@public_bp.route("/feed.atom")
def feed() -> Response:
    query = (
        services.public_letters()
        .limit(FEED_SIZE)
        .options(selectinload(Letter.published_revision), selectinload(Letter.translations))
    )
    entries = [
        FeedEntry(
            letter=letter,
            revision=letter.published_revision,
            url=absolute_url("public.letter", slug=letter.slug),
            translations=[
                (t.language, absolute_url("public.letter", slug=letter.slug, lang=t.language))
                for t in services.published_translations(letter)
            ],
        )
        for letter in db.session.scalars(query)
    ]
    name = get_settings().name
    body = atom_feed(
        entries,
        site_url=current_app.config["SITE_URL"],
        feed_url=absolute_url("public.feed"),
        title=f"Open letters from {name}",
        author=name,
    )
    return current_app.response_class(body, content_type="application/atom+xml; charset=utf-8")


@public_bp.route("/meetings/<id:id>.ics")
def meeting_ics(id: int) -> Response:
    """A meeting's calendar file; public only while at least one public letter is written for it."""
    letters = services.public_letters_for_meeting(id)
    meeting = db.session.get(Meeting, id) if letters else None
    if meeting is None:
        abort(404)
    body = meeting_calendar(
        meeting,
        [(letter.published_revision.title, absolute_url("public.letter", slug=letter.slug)) for letter in letters],
        site_url=current_app.config["SITE_URL"],
        now=utcnow(),
    )
    response = current_app.response_class(body, content_type="text/calendar; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="meeting-{meeting.id}.ics"'
    return response
