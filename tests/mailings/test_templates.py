"""Subject and introduction templates: undefined names, the sandbox, names in every script,
and what reaches the message headers (RFC 2047 words, never a line break)."""

# ruff: noqa: RUF001 - names in Arabic, Chinese and Cyrillic scripts

from __future__ import annotations

import re
import time
from email.header import decode_header, make_header
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign import queue
from campaign.auth.models import User
from campaign.contacts.models import Contact
from campaign.extensions import db
from campaign.letters.models import Letter
from campaign.mailings import sending, services
from campaign.mailings.models import Delivery, Mailing
from campaign.rendering import MergeFields, TemplateError, compile_template, personalise
from tests.factories import text_of
from tests.letters.publishing import ORIGINAL, TRANSLATIONS
from tests.mailings.world import approved, draft, make_world

CONTEXT = {
    "contact": MergeFields("contact", salutation="Excellency,", family_name="O'Neill", tags=["P5", "EU"]),
    "letter": MergeFields("letter", title="Open letter"),
    "meeting": None,
}


def _render_both(source: str) -> list[TemplateError]:
    """Render as the subject and text part are, then as the HTML part is; both must fail."""
    errors = []
    for html in (False, True):
        with pytest.raises(TemplateError) as caught:
            personalise(source, CONTEXT, html=html)
        errors.append(caught.value)
    return errors


# --- undefined names --------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ ambassador }}", "'ambassador' is not a merge field"),
        ("Dear {{ contact.nickname }}", "contact has no field 'nickname'"),
        ("{% if contact.nickname %}yes{% endif %}", "contact has no field 'nickname'"),
        ("{{ letter.subtitle|upper }}", "letter has no field 'subtitle'"),
        ("{{ meeting.title }}", "no value to take 'title' from"),
        ("{% for tag in contact.labels %}{{ tag }}{% endfor %}", "contact has no field 'labels'"),
    ],
)
def test_undefined_names_are_errors_that_name_the_field(source, message) -> None:
    for error in _render_both(source):
        assert message in str(error)


def test_defaults_and_conditions_still_work() -> None:
    source = "{{ contact.nickname|default('Excellency') }}{% if 'P5' in contact.tags %}, P5{% endif %}"
    assert personalise(source, CONTEXT) == "Excellency, P5"
    assert personalise("{% for tag in contact.tags %}[{{ tag }}]{% endfor %}", CONTEXT) == "[P5][EU]"


def test_syntax_errors_name_the_line() -> None:
    with pytest.raises(TemplateError, match="line 2"):
        compile_template("Dear {{ contact.salutation }}\n{% if contact.tags %}unclosed")


# --- the sandbox ------------------------------------------------------------------

ESCAPES = [
    ("{{ contact.__class__ }}", "unsafe"),
    ("{{ contact.salutation.__class__.__mro__ }}", "unsafe"),
    ("{{ contact.salutation.upper.__globals__ }}", "__globals__"),
    ("{{ contact.__init__.__globals__ }}", "unsafe"),
    ("{{ contact.tags.mro() }}", "'mro'"),
    ("{{ ''.__class__.mro()[1].__subclasses__() }}", "unsafe"),
    ("{{ lipsum(1) }}", "'lipsum' is not a merge field"),
    ("{{ range(10)|list }}", "'range' is not a merge field"),
    ("{{ cycler('a', 'b').next() }}", "'cycler' is not a merge field"),
    ("{{ joiner() }}", "'joiner' is not a merge field"),
    ("{{ namespace(a=1) }}", "'namespace' is not a merge field"),
    ("{{ self }}", "'self' is not a merge field"),
    ("{{ self._TemplateReference__context }}", "'self' is not a merge field"),
    ("{{ '%s' % contact.salutation }}", "% operator"),
    ("{{ '%(x)s' % {'x': contact} }}", "% operator"),
    ("{{ 'x' * 1000000000 }}", "too long"),
    ("{{ 1000000000 * contact.tags }}", "too long"),
    ("{{ 'x'.encode() * 1000000000 }}", "too long"),
    ("{{ 9 ** 99999999 }}", "exponent too large"),
    ("{{ ((10 ** 64) ** 64) ** 64 }}", "too large"),
    ("{{ contact|attr('__class__') }}", "No filter named 'attr'"),
    ("{{ '%s'|format(contact) }}", "No filter named 'format'"),
    ("{{ '{0.__class__}'.format(contact) }}", "'format'"),
    ("{{ '{:>1000000000}'.format(1) }}", "'format'"),
    ("{{ 'x'.ljust(1000000000) }}", "'ljust'"),
    ("{{ 'x'.center(1000000000) }}", "'center'"),
    ("{{ ('x' * 20000).join('y' * 20000) }}", "'join'"),
    ("{{ ('x' * 20000)|replace('x', 'y' * 20000) }}", "too long"),
    ("{{ ('x' * 20000)|list|join('y' * 20000) }}", "too long"),
    ("{% for c in 'x' * 20000 %}{{ 'y' * 20000 }}{% endfor %}", "longer than 20,000"),
    ("{% include 'base.html' %}", "{% include %} is not available"),
    ("{% import 'macros.html' as m %}", "{% import %} is not available"),
    ("{% from 'macros.html' import field %}", "{% from … import %} is not available"),
    ("{% extends 'base.html' %}", "{% extends %} is not available"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "{% macro %} is not available"),
    ("{% block b %}{{ self.b() }}{% endblock %}", "{% block %} is not available"),
    ("{% set x = 'x' * 20000 %}{{ x ~ x ~ x }}", "{% set %} is not available"),
    ("{% autoescape false %}{{ contact.family_name }}{% endautoescape %}", "{% autoescape %} is not available"),
    ("{% for t in contact.tags recursive %}{{ loop(contact.tags) }}{% endfor %}", "recursive loops"),
    ("{% for a in 'x' * 20000 %}{% for b in 'x' * 20000 %}{% endfor %}{% endfor %}", "loop cannot contain"),
]


@pytest.mark.parametrize(("source", "message"), ESCAPES, ids=[source[:40] for source, _ in ESCAPES])
def test_sandbox_escapes_are_refused_quickly(source, message) -> None:
    started = time.monotonic()
    for error in _render_both(source):
        assert message in str(error)
    # Refused before the work is done: nothing allocated a gigabyte or looped for minutes.
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "introduction",
    ["{% include 'email/mailing.html' %}", "{% set x = 1 %}{{ x }}", "{{ contact.salutation"],
)
def test_a_mailing_with_a_refused_template_is_not_saved(app, ctx, introduction) -> None:
    world = make_world(app)
    letter = db.session.get(Letter, world.letter_id)
    with pytest.raises(services.MailingError, match="do not compile"):
        services.create_mailing(services.MailingData(letter, "Open letter", introduction))


# --- names in every script, through the outbox ----------------------------------------

SUBJECT = "{{ contact.family_name }}: {{ letter.title }}"
INTRODUCTION = "{{ contact.salutation }}\n\nFor {{ contact.given_name }} {{ contact.family_name }}."
#: email → (subject, name as written in the introduction, the salutation)
EXPECTED = {
    "oneill@mission.example": (f"O'Neill: {ORIGINAL.title}", "Siobhán O'Neill", "Excellency,"),
    "hassan@mission.example": (f"حسن: {TRANSLATIONS['ar'].title}", "أحمد حسن", "سعادة السفير،"),
    "wang@mission.example": (f"王: {ORIGINAL.title}", "伟 王", "尊敬的大使阁下："),
    "ivanov@mission.example": (f"Иванов: {ORIGINAL.title}", "Иван Иванов", "Ваше Превосходительство,"),
}


def _send(world, mailing_id: int, request: dict | None = None) -> None:
    mailing = db.session.get(Mailing, mailing_id)
    row = services.request_send(mailing, request or {}, actor=db.session.get(User, world.author.id))
    db.session.commit()
    queue.dispatch(row)


def _raw_messages(directory: Path) -> dict[str, bytes]:
    """Each .eml as written, by the address it went to."""
    found = {}
    for path in directory.glob("*.eml"):
        raw = path.read_bytes()
        to = re.search(rb"^To: .*?<?([\w.+-]+@[\w.-]+)>?\r?$", raw, re.MULTILINE)
        found[to.group(1).decode()] = raw
    return found


def _raw_header(raw: bytes, name: str) -> str:
    """A header exactly as on the wire, continuation lines joined."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r\n(?=[ \t])", "", head)
    prefix = f"{name.lower()}:"
    values = [line.split(":", 1)[1].strip() for line in unfolded.split("\r\n") if line.lower().startswith(prefix)]
    assert len(values) == 1, values
    return values[0]


def test_names_in_every_script_reach_each_part_as_written(app, ctx, outbox) -> None:
    world = make_world(app)
    _send(world, approved(app, world, subject=SUBJECT, introduction=INTRODUCTION))
    assert sending.progress(db.session.scalar(sa.select(sa.func.max(Mailing.id)))).counts["sent"] == 6
    parsed = {m["To"].addresses[0].addr_spec: m for m in outbox.messages()}
    for email, (subject, name, salutation) in EXPECTED.items():
        message = parsed[email]
        assert message["Subject"] == subject
        text = text_of(message)
        assert name in text and salutation in text
        html = message.get_body(preferencelist=("html",)).get_content()
        assert salutation in html
        if "'" in name:
            # Escaped in the HTML part only; the subject and text keep the apostrophe.
            assert name.replace("'", "&#39;") in html and name not in html
        else:
            assert name in html
    assert 'dir="rtl"' in parsed["hassan@mission.example"].get_body(preferencelist=("html",)).get_content()


def test_non_ascii_subjects_are_encoded_words_in_the_raw_headers(app, ctx, outbox) -> None:
    world = make_world(app)
    _send(world, approved(app, world, subject=SUBJECT, introduction=INTRODUCTION))
    raw = _raw_messages(outbox.directory)
    for email, (subject, _, _) in EXPECTED.items():
        header = _raw_header(raw[email], "Subject")
        assert raw[email].split(b"\r\n\r\n", 1)[0].isascii()
        if subject.isascii():
            assert header == subject
        else:
            assert "=?utf-8?" in header.lower()
            assert str(make_header(decode_header(header))) == subject


@pytest.mark.parametrize("line_break", ["\r\n", "\n", "\r", "\u2028"], ids=["crlf", "lf", "cr", "u2028"])
def test_a_line_break_from_a_contact_field_never_reaches_the_subject(app, ctx, outbox, line_break) -> None:
    world = make_world(app)
    mailing_id = draft(app, world, subject=SUBJECT)
    injected = f"O'Neill{line_break}Bcc: victim@attacker.example"
    # Contact validation refuses line breaks; this one came in by another way (an old import).
    db.session.execute(sa.update(Contact).where(Contact.email == "oneill@mission.example").values(family_name=injected))
    db.session.commit()
    failures = services.check_recipients(db.session.get(Mailing, mailing_id))
    assert [(f.email, "line break" in f.error) for f in failures] == [("oneill@mission.example", True)]
    with pytest.raises(services.MailingError, match="do not render"):
        services.approve(db.session.get(Mailing, mailing_id), db.session.get(User, world.approver.id))


def test_a_line_break_that_appears_after_approval_fails_that_delivery_only(app, ctx, outbox) -> None:
    world = make_world(app)
    mailing_id = approved(app, world, subject=SUBJECT)
    db.session.execute(
        sa.update(Contact)
        .where(Contact.email == "oneill@mission.example")
        .values(family_name="O'Neill\r\nBcc: victim@attacker.example")
    )
    db.session.commit()
    _send(world, mailing_id)
    delivery = db.session.scalar(sa.select(Delivery).where(Delivery.email == "oneill@mission.example"))
    assert delivery.status == "failed" and "line break" in delivery.reason
    assert sending.progress(mailing_id).counts["sent"] == 5
    for raw in _raw_messages(outbox.directory).values():
        assert b"victim@attacker.example" not in raw
    assert "oneill@mission.example" not in _raw_messages(outbox.directory)
