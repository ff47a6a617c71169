"""Hostile Markdown never becomes executable HTML: in rendering, in stored revisions, in the API.

The corpus lives in ``xss_corpus.py`` so the public page, feed and PDF tests use the same one.
"""

from __future__ import annotations

import markdown
import pytest
import sqlalchemy as sa

from campaign.auth import tokens
from campaign.auth.models import User
from campaign.extensions import db
from campaign.letters import services
from campaign.letters.models import Letter, Revision
from campaign.rendering import render
from tests.letters.xss_corpus import PAYLOADS, executable_parts, url_scheme

IDS = [name for name, _ in PAYLOADS]

#: What the seed letter and ordinary letters use; all of it must come through.
FEATURES = """\
## Our request

As we commemorate the 70<sup>th</sup> anniversary, the **International Coalition** asks, *once more*:

1. restraint in the use of the veto;
2. a [code of conduct](https://example.org/act "ACT Group") and <mailto:secretariat@example.org>.

- H<sub>2</sub>O and ~~nothing~~ else

| State | Position |
| ----- | -------- |
| France | supports |

A claim that needs a source.[^1]

[^1]: The 2005 World Summit Outcome Document, paragraphs 138 and 139.
"""

EXPECTED_FEATURES = [
    "<h2>Our request</h2>",
    "70<sup>th</sup>",
    "<strong>International Coalition</strong>",
    "<em>once more</em>",
    "<ol>",
    "<li>restraint in the use of the veto;</li>",
    '<a href="https://example.org/act" title="ACT Group" rel="noopener noreferrer nofollow">code of conduct</a>',
    "H<sub>2</sub>O",
    "<ul>",
    "<table>",
    "<th>State</th>",
    "<td>France</td>",
    '<sup id="fnref:1"><a class="footnote-ref" href="#fn:1"',
    '<li id="fn:1">',
]


def test_the_corpus_is_large_and_named_once():
    assert len(PAYLOADS) >= 40
    assert len(set(IDS)) == len(IDS)


def test_the_check_is_not_vacuous():
    """Unsanitised, the corpus is full of things the check must catch."""
    raw = [markdown.markdown(payload, extensions=["tables", "footnotes"]) for _, payload in PAYLOADS]
    caught = [name for name, html in zip(IDS, raw, strict=True) if executable_parts(html)]
    assert len(caught) >= 50, sorted(set(IDS) - set(caught))
    assert executable_parts('<a href="java\tscript:x">') == ["javascript: URL in href on <a>"]
    assert executable_parts('<a href="&#x6A;avascript:x">') == ["javascript: URL in href on <a>"]


@pytest.mark.parametrize(
    ("value", "scheme"),
    [
        ("https://example.org", "https"),
        ("  JaVa\tScRiPt:alert(1)", "javascript"),
        ("\x0ejavascript:x", "javascript"),
        ("#fn:1", None),
        ("/letters/x", None),
        ("page.html?a=b:c", None),
        ("mailto:a@example.org", "mailto"),
    ],
)
def test_url_scheme_reads_urls_as_a_browser_does(value, scheme):
    assert url_scheme(value) == scheme


@pytest.mark.parametrize(("name", "payload"), PAYLOADS, ids=IDS)
def test_rendering_leaves_nothing_executable(name, payload):
    html = render(payload).html
    assert executable_parts(html) == [], html
    in_a_letter = render(f"Excellencies,\n\n{payload}\n\nWith respect, **the Coalition**\n").html
    assert executable_parts(in_a_letter) == [], in_a_letter


@pytest.mark.parametrize(
    ("payload", "reported"),
    [
        ("<script>alert(1)</script>", "<script> element"),
        ('<p onclick="alert(1)">x</p>', "onclick attribute"),
        ('<a href="javascript:alert(1)">x</a>', "href attribute"),
        ('<iframe src="https://evil.example"></iframe>', "<iframe> element"),
    ],
)
def test_the_author_is_told_what_was_removed(payload, reported):
    assert reported in render(payload).removed


def test_what_letters_use_survives():
    rendered = render(FEATURES)
    for piece in EXPECTED_FEATURES:
        assert piece in rendered.html, piece
    assert rendered.removed == []
    assert executable_parts(rendered.html) == []


def test_features_survive_amid_the_whole_corpus():
    hostile = "\n\n".join(payload for _, payload in PAYLOADS)
    html = render(f"{FEATURES}\n\n{hostile}\n").html
    assert executable_parts(html) == []
    for piece in ("70<sup>th</sup>", "<strong>International Coalition</strong>", "<em>once more</em>", "<table>"):
        assert piece in html


@pytest.fixture
def member_token(app, member):
    with app.app_context():
        _, raw = tokens.create_token(db.session.get(User, member.id), "xss")
        db.session.commit()
    return raw


@pytest.fixture
def staff_token(app, coordinator):
    with app.app_context():
        _, raw = tokens.create_token(db.session.get(User, coordinator.id), "xss")
        db.session.commit()
    return raw


@pytest.mark.parametrize(("name", "payload"), PAYLOADS, ids=IDS)
def test_stored_revisions_and_the_api_carry_nothing_executable(app, client, staff_token, member_token, name, payload):
    # The payload comes last: an unclosed HTML block swallows what follows it, as Markdown says.
    body = f"As we mark the 70<sup>th</sup> anniversary, **we ask** for *one* thing.\n\n{payload}\n"
    with app.app_context():
        letter = services.create_letter(services.LetterText(title=f"Letter {name}", body_markdown=body))
        services.transition(letter, "review")
        services.transition(letter, "open")
        translation = services.save_translation(
            letter, "fr", services.LetterText(title=f"Lettre {name}", body_markdown=f"Excellences,\n\n{payload}\n")
        )
        services.set_translation_status(translation, "published")
        db.session.commit()
        slug = letter.slug
        stored = db.session.scalars(
            sa.select(Revision.body_html).join(Letter, Revision.letter_id == Letter.id).where(Letter.slug == slug)
        ).all()
    assert len(stored) == 2
    for html in stored:
        assert executable_parts(html) == [], html
    for token in (staff_token, member_token):
        response = client.get(f"/api/v1/letters/{slug}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        html = response.get_json()["body_html"]
        assert executable_parts(html) == [], html
        assert "70<sup>th</sup>" in html and "<strong>we ask</strong>" in html and "<em>one</em>" in html


def test_a_hostile_draft_through_the_api_is_stored_clean(app, client, staff_token):
    hostile = "\n\n".join(payload for _, payload in PAYLOADS)
    created = client.post(
        "/api/v1/letters",
        headers={"Authorization": f"Bearer {staff_token}"},
        json={"title": "Everything at once", "body_markdown": f"{FEATURES}\n\n{hostile}"},
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    html = created.get_json()["body_html"]
    assert executable_parts(html) == []
    assert "70<sup>th</sup>" in html and "<td>France</td>" in html
