"""The public letter pages: what is public, the published text, languages, Open Graph, no script."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html.parser import HTMLParser

import pytest

from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import public, services
from campaign.letters.services import LetterText, MeetingData
from tests.letters.publishing import ORIGINAL, TRANSLATIONS, publish, seed_text
from tests.letters.xss_corpus import PAYLOADS, executable_parts

UN_MEETING = MeetingData(
    title="High-level ministerial meeting on the veto",
    location="United Nations Headquarters, New York",
    starts_at_local=datetime(2015, 9, 30, 10, 0),
    ends_at_local=datetime(2015, 9, 30, 13, 0),
    timezone="America/New_York",
)


class _Meta(HTMLParser):
    """The ``<meta property=…>`` and ``<link rel=…>`` tags of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.properties: dict[str, str] = {}
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and values.get("property"):
            self.properties[values["property"]] = values.get("content") or ""
        elif tag == "link":
            self.links.append(values)


def head_of(html: str) -> _Meta:
    parser = _Meta()
    parser.feed(html)
    return parser


def letter_text_of(html: str) -> str:
    """The letter's own part of the page: the container with its lang and dir."""
    match = re.search(r'<div class="letter-text"[^>]*>(.*?)</div>\s*<section class="signatories"', html, re.S)
    assert match, "no letter text on the page"
    return match.group(1)


def test_seed_letter_renders_exactly(app, client):
    letter = publish(app, seed_text(), meeting=UN_MEETING)

    response = client.get(f"/letters/{letter.slug}")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    body = letter_text_of(html)
    assert "70<sup>th</sup>" in body
    assert "<strong>International Coalition for the Responsibility to Protect (ICRtoP)</strong>" in body
    assert "<em>one</em>" in body
    assert '<p class="addressee">To: Heads of State and Government on the Occasion' in body
    assert "30 September and 1 October 2015</p>" in body
    # The occasion, in New York's wall-clock time with the zone named.
    assert "High-level ministerial meeting on the veto, United Nations Headquarters, New York" in html
    assert '<time datetime="2015-09-30T10:00:00-04:00">30 September 2015, 10:00</time>' in html
    assert '<time datetime="2015-09-30T13:00:00-04:00">13:00</time>' in html
    assert "local time in America/New_York (EDT)" in html
    assert f'href="/meetings/{letter.meeting_id}.ics"' in html
    assert "Open for signatures" in html
    assert f'href="/letters/{letter.slug}.pdf"' in html
    # The signatures feature fills this section.
    assert '<h2 id="signatories-heading">Signatories</h2>' in html
    assert "will be listed here" in html


def test_open_graph_and_feed_link(app, client):
    letter = publish(app, ORIGINAL)

    html = client.get(f"/letters/{letter.slug}").get_data(as_text=True)

    head = head_of(html)
    site = app.config["SITE_URL"]
    assert head.properties["og:type"] == "article"
    assert head.properties["og:title"] == ORIGINAL.title
    assert head.properties["og:url"] == f"{site}/letters/{letter.slug}"
    assert head.properties["og:description"] == "We call on all States to protect civilians and to act without delay."
    feeds = [link for link in head.links if link.get("type") == "application/atom+xml"]
    assert [link["rel"] for link in feeds] == ["alternate"]
    assert feeds[0]["href"] == "/feed.atom"


def test_og_description_is_short_plain_text(app, client):
    long_body = "The *Council* must act. " + "Civilians need protection now. " * 40
    letter = publish(app, LetterText(title="A long letter", body_markdown=long_body))

    head = head_of(client.get(f"/letters/{letter.slug}").get_data(as_text=True))

    description = head.properties["og:description"]
    assert description.startswith("The Council must act. Civilians")
    assert len(description) <= 201 and description.endswith("…")


@pytest.mark.parametrize(
    ("status", "embargo", "public_"),
    [
        ("draft", None, False),
        ("review", None, False),
        ("open", timedelta(days=2), False),
        ("open", timedelta(days=-2), True),
        ("open", None, True),
        ("closed", None, True),
        ("sent", None, True),
    ],
)
def test_only_published_letters_past_embargo_are_public(app, client, status, embargo, public_):
    letter = publish(app, ORIGINAL, status=status, embargo_until=utcnow() + embargo if embargo else None)

    for url in (f"/letters/{letter.slug}", f"/letters/{letter.slug}.pdf", f"/letters/{letter.slug}?lang=en"):
        assert client.get(url).status_code == (200 if public_ else 404), url
    listed = client.get("/letters").get_data(as_text=True)
    assert (f'href="/letters/{letter.slug}"' in listed) is public_


def test_unknown_letter_is_404(client):
    assert client.get("/letters/no-such-letter").status_code == 404
    assert client.get("/letters/no-such-letter.pdf").status_code == 404


def test_list_newest_first_with_occasion_deadline_status_and_pages(app, client, monkeypatch):
    deadline = utcnow() + timedelta(days=30)
    first = publish(app, LetterText(title="First letter", body_markdown="One."), meeting=UN_MEETING)
    second = publish(app, LetterText(title="Second letter", body_markdown="Two."), status="closed")
    third = publish(app, LetterText(title="Third letter", body_markdown="Three."))
    with app.app_context():
        letter = services.get_letter(third.slug)
        services.update_settings(
            letter, signature_deadline=deadline, embargo_until=None, meeting=None, members_only=False
        )
        db.session.commit()

    html = client.get("/letters").get_data(as_text=True)

    assert html.index("Third letter") < html.index("Second letter") < html.index("First letter")
    assert "High-level ministerial meeting on the veto, United Nations Headquarters, New York" in html
    assert '<time datetime="2015-09-30">30 September 2015</time>' in html
    assert deadline.strftime("%d %b %Y, %H:%M UTC") in html
    assert "Closed" in html and "Open for signatures" in html

    monkeypatch.setattr(public, "PER_PAGE", 2)
    page_one = client.get("/letters").get_data(as_text=True)
    page_two = client.get("/letters?page=2").get_data(as_text=True)
    assert "Third letter" in page_one and "Second letter" in page_one and "First letter" not in page_one
    assert "First letter" in page_two and "Third letter" not in page_two
    assert 'href="/letters?page=2"' in page_one
    assert client.get("/letters?page=99").status_code == 200
    assert f'href="/letters/{second.slug}"' in page_one and f'href="/letters/{first.slug}"' in page_two


def test_deadline_passed_is_shown(app, client):
    letter = publish(app, ORIGINAL)
    with app.app_context():
        saved = services.get_letter(letter.slug)
        past = utcnow() - timedelta(hours=1)
        services.update_settings(saved, signature_deadline=past, embargo_until=None, meeting=None, members_only=False)
        db.session.commit()

    html = client.get(f"/letters/{letter.slug}").get_data(as_text=True)

    assert "Signature deadline passed" in html
    assert "Open for signatures" not in html


def test_page_shows_the_published_revision_until_changes_are_published(app, client):
    letter = publish(app, ORIGINAL)
    changed = LetterText(title="A revised title", body_markdown="Revised text, not yet public.")
    with app.app_context():
        services.save_revision(services.get_letter(letter.slug), changed)
        db.session.commit()

    html = client.get(f"/letters/{letter.slug}").get_data(as_text=True)
    assert ORIGINAL.title in html and "A revised title" not in html and "not yet public" not in html
    assert "A revised title" not in client.get("/letters").get_data(as_text=True)

    with app.app_context():
        services.publish_changes(services.get_letter(letter.slug))
        db.session.commit()
    html = client.get(f"/letters/{letter.slug}").get_data(as_text=True)
    assert "A revised title" in html and "Revised text, not yet public." in html


def test_language_switcher_lists_published_translations(app, client):
    letter = publish(app, ORIGINAL, translations={"fr": TRANSLATIONS["fr"], "ar": TRANSLATIONS["ar"]})
    with app.app_context():  # a Spanish translation still in draft is not offered
        services.save_translation(services.get_letter(letter.slug), "es", TRANSLATIONS["es"])
        db.session.commit()

    html = client.get(f"/letters/{letter.slug}").get_data(as_text=True)

    switcher = re.search(r'<nav class="languages".*?</nav>', html, re.S).group(0)
    assert f'<a href="/letters/{letter.slug}" lang="en" hreflang="en" aria-current="page">English</a>' in switcher
    assert f'<a href="/letters/{letter.slug}?lang=fr" lang="fr" hreflang="fr">Français</a>' in switcher
    assert f'<a href="/letters/{letter.slug}?lang=ar" lang="ar" hreflang="ar">العربية</a>' in switcher
    assert "Español" not in switcher
    alternates = {link["hreflang"]: link["href"] for link in head_of(html).links if link.get("hreflang")}
    site = app.config["SITE_URL"]
    assert alternates == {
        "en": f"{site}/letters/{letter.slug}",
        "fr": f"{site}/letters/{letter.slug}?lang=fr",
        "ar": f"{site}/letters/{letter.slug}?lang=ar",
    }

    french = client.get(f"/letters/{letter.slug}?lang=fr").get_data(as_text=True)
    assert "<h1>Lettre ouverte sur la protection des civils</h1>" in french
    assert '<div class="letter-text" lang="fr" dir="ltr">' in french
    assert "<strong>protéger les civils</strong>" in letter_text_of(french)
    assert f'href="/letters/{letter.slug}.pdf?lang=fr"' in french
    assert head_of(french).properties["og:url"] == f"{site}/letters/{letter.slug}?lang=fr"
    assert 'aria-current="page">Français</a>' in french


@pytest.mark.parametrize("lang", ["es", "de", "xx", "../en", "EN"])
def test_a_language_not_published_is_404(app, client, lang):
    letter = publish(app, ORIGINAL, translations={"fr": TRANSLATIONS["fr"]})
    with app.app_context():
        services.save_translation(services.get_letter(letter.slug), "es", TRANSLATIONS["es"])
        db.session.commit()

    assert client.get(f"/letters/{letter.slug}", query_string={"lang": lang}).status_code == 404
    assert client.get(f"/letters/{letter.slug}.pdf", query_string={"lang": lang}).status_code == 404


def test_a_withdrawn_translation_is_no_longer_public(app, client):
    letter = publish(app, ORIGINAL, translations={"fr": TRANSLATIONS["fr"]})
    with app.app_context():
        translation = services.get_letter(letter.slug).translation("fr")
        services.set_translation_status(translation, "review")
        db.session.commit()

    assert client.get(f"/letters/{letter.slug}?lang=fr").status_code == 404
    assert "Français" not in client.get(f"/letters/{letter.slug}").get_data(as_text=True)


def test_arabic_translation_is_right_to_left(app, client):
    letter = publish(app, ORIGINAL, translations={"ar": TRANSLATIONS["ar"]})

    html = client.get(f"/letters/{letter.slug}?lang=ar").get_data(as_text=True)

    assert '<header lang="ar" dir="rtl">' in html
    assert '<div class="letter-text" lang="ar" dir="rtl">' in html
    assert "<strong>حماية المدنيين</strong>" in letter_text_of(html)
    assert '<p class="addressee">إلى رؤساء الدول والحكومات\nنيويورك</p>' in html
    # The page's own words stay English, and so does <html lang>.
    assert html.startswith('<!doctype html>\n<html lang="en"')


def test_nothing_executable_reaches_the_public_page(app, client):
    body = "\n\n".join(f"{name}: {payload}" for name, payload in PAYLOADS)
    title = '<script>alert(1)</script> "quoted" title'
    letter = publish(
        app, LetterText(title=title, addressee="<img src=x onerror=alert(1)>\nNew York", body_markdown=body)
    )

    html = client.get(f"/letters/{letter.slug}").get_data(as_text=True)

    assert executable_parts(letter_text_of(html)) == []
    assert "payload-para" in html and "payload-click" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &#34;quoted&#34; title" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    head = head_of(html)
    assert head.properties["og:title"] == title
