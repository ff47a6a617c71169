"""What each recipient of a mailing receives: subject, introduction and letter in their language.

The subject and introduction are coordinators' templates rendered in the sandbox
(``campaign.rendering.personalise``): plain for the subject and the text part,
autoescaped for the HTML part.  The letter is the revision published in the
recipient's language when one exists, else in the letter's own language; an approved
mailing uses the revisions and signatory list frozen at its approval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, render_template
from markupsafe import Markup

from campaign.admin.services import get_settings
from campaign.contacts.countries import country_name
from campaign.contacts.models import Contact
from campaign.extensions import db
from campaign.letters import pdf
from campaign.letters.models import RTL_LANGUAGES, Letter, Revision, TranslationStatus
from campaign.mailings.backends import has_line_break
from campaign.mailings.models import Mailing, MailingDocument
from campaign.rendering import (
    MergeFields,
    TemplateError,
    compile_template,
    paragraphs_html,
    personalise,
    plain_text,
)

#: The merge fields a template may use, with what each holds; listed on the compose page.
MERGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("contact.salutation", "how the letter opens, as protocol writes it (“Excellency,”)"),
    ("contact.honorific", "“H.E. Ms”, “Mr”…"),
    ("contact.given_name", "given name"),
    ("contact.family_name", "family name"),
    ("contact.full_name", "honorific, given and family name"),
    ("contact.position", "“Permanent Representative”…"),
    ("contact.organisation", "“Permanent Mission of …”"),
    ("contact.country", "ISO 3166 code, “FR”"),
    ("contact.country_name", "“France”"),
    ("contact.language", "the language the contact reads: ar, en, es, fr, ru or zh"),
    ("contact.tags", "a list: {% if 'P5' in contact.tags %}…{% endif %}"),
    ("contact.email", "the address the message goes to"),
    ("letter.title", "the title, in the recipient's language"),
    ("letter.url", "the public page, in the recipient's language"),
    ("letter.signatories", "how many organisations signed"),
    ("meeting.title", "the letter's meeting, when it has one"),
    ("meeting.location", "where it takes place"),
    ("meeting.date", "its first day, written out (“3 March 2027”)"),
    ("coalition.name", "the coalition's name"),
)


@dataclass(frozen=True)
class Personalised:
    subject: str
    text: str
    html: str
    language: str
    revision: Revision


def published_revisions(letter: Letter) -> dict[str, int]:
    """The revision each language would be sent in now: the letter's, and each published translation's."""
    found = {letter.language: letter.published_revision_id} if letter.published_revision_id else {}
    for translation in letter.translations:
        if translation.status == TranslationStatus.PUBLISHED and translation.published_revision_id:
            found.setdefault(translation.language, translation.published_revision_id)
    return found


def revisions_of(mailing: Mailing) -> dict[str, int]:
    """The frozen map once approved, the letter's current one before."""
    return dict(mailing.revisions) if mailing.is_approved and mailing.revisions else published_revisions(mailing.letter)


def signatories_of(mailing: Mailing) -> list[list[str]]:
    """(organisation, country code, revision signed when not the published one) per signatory."""
    if mailing.is_approved:
        return [list(row) for row in mailing.signatories]
    from campaign.signatures import listing

    return [list(row) for row in listing.pdf_rows(listing.approved_signatories(mailing.letter))]


class Renderer:
    """Renders a mailing for many recipients: templates compiled once, revisions loaded once."""

    def __init__(self, mailing: Mailing) -> None:
        self.mailing = mailing
        self.letter = mailing.letter
        self.settings = get_settings()
        # Compiling fails early with the line of the error, before any recipient is tried.
        self.subject = compile_template(mailing.subject)
        self.intro_text = compile_template(mailing.introduction)
        self.intro_html = compile_template(mailing.introduction, html=True)
        ids = revisions_of(mailing)
        rows = db.session.scalars(sa.select(Revision).where(Revision.id.in_(ids.values()))).all()
        by_id = {row.id: row for row in rows}
        self.revisions = {language: by_id[rid] for language, rid in ids.items() if rid in by_id}
        self.signatories = signatories_of(mailing)
        self.signatory_lines = [(row[0], country_name(row[1])) for row in self.signatories]
        self.letter_texts: dict[int, str] = {}
        self.documents: dict[str, MailingDocument] = {}
        from campaign.mailings.notices import sender_address

        self.sender: tuple[str, str | None] = sender_address()
        meeting = self.letter.meeting
        self.meeting = (
            MergeFields(
                "meeting",
                title=meeting.title,
                location=meeting.location,
                date=pdf.format_letter_date(meeting.starts_at_local.date(), self.letter.language),
            )
            if meeting
            else None
        )

    def language_for(self, contact_language: str) -> str:
        return contact_language if contact_language in self.revisions else self.letter.language

    def _context(self, contact: Contact, language: str, revision: Revision) -> dict[str, object]:
        site = current_app.config["SITE_URL"]
        lang = "" if language == self.letter.language else f"?lang={language}"
        return {
            "contact": MergeFields(
                "contact",
                salutation=contact.salutation,
                honorific=contact.honorific,
                given_name=contact.given_name,
                family_name=contact.family_name,
                full_name=contact.full_name,
                position=contact.position,
                organisation=contact.organisation,
                country=contact.country,
                country_name=country_name(contact.country),
                language=contact.language,
                tags=list(contact.tags),
                email=contact.email,
            ),
            "letter": MergeFields(
                "letter",
                title=revision.title,
                url=f"{site}/letters/{self.letter.slug}{lang}",
                signatories=len(self.signatories),
            ),
            "meeting": self.meeting,
            "coalition": MergeFields("coalition", name=self.settings.name),
        }

    def render(self, contact: Contact) -> Personalised:
        """The message for ``contact``; a ``TemplateError`` says what in the templates failed."""
        language = self.language_for(contact.language)
        revision = self.revisions.get(language)
        if revision is None:
            raise TemplateError("the letter has no published text to send")
        context = self._context(contact, language, revision)
        subject = personalise(self.subject, context)
        if has_line_break(subject):
            # A header cannot carry one (it could add headers): refused, not folded away.
            raise TemplateError("the subject has a line break for this recipient (from a merge field?)")
        subject = " ".join(subject.split())
        if not subject:
            raise TemplateError("the subject is empty for this recipient")
        intro_text = personalise(self.intro_text, context).strip()
        intro_html = Markup(paragraphs_html(personalise(self.intro_html, context)))  # noqa: S704 - escaped above
        shared = {
            "coalition": self.settings,
            "letter": self.letter,
            "revision": revision,
            "language": language,
            "direction": "rtl" if language in RTL_LANGUAGES else "ltr",
            "signatories": self.signatory_lines,
            "letter_url": context["letter"].url,  # type: ignore[attr-defined]
        }
        html = render_template("email/mailing.html", introduction=intro_html, **shared)
        letter_text = self.letter_texts.get(revision.id)
        if letter_text is None:
            letter_text = self.letter_texts[revision.id] = plain_text(revision.body_html)
        text = render_template("email/mailing.txt", introduction=intro_text, letter_text=letter_text, **shared)
        return Personalised(subject=subject, text=text, html=html, language=language, revision=revision)

    def document(self, language: str, revision: Revision) -> MailingDocument:
        """The mailing's PDF in ``language``, loaded (or rendered) once per renderer."""
        if language not in self.documents:
            self.documents[language] = document(self.mailing, language, revision)
        return self.documents[language]


@dataclass(frozen=True)
class Failure:
    contact_id: int
    email: str
    error: str


def check(mailing: Mailing, contacts: Iterable[Contact]) -> list[Failure]:
    """Render every recipient; each one that fails, with the reason (empty when all render)."""
    try:
        renderer = Renderer(mailing)
    except TemplateError as exc:
        return [Failure(0, "", f"the templates do not compile: {exc}")]
    failures = []
    for contact in contacts:
        try:
            renderer.render(contact)
        except TemplateError as exc:
            failures.append(Failure(contact.id, contact.email, str(exc)))
    return failures


def document(mailing: Mailing, language: str, revision: Revision) -> MailingDocument:
    """The letter's PDF in ``language`` for this mailing, rendered the first time it is needed.

    The caller commits.  Two workers needing it at once both render; the unique
    constraint keeps one, and the loser reads it.
    """
    found = stored_document(mailing.id, language)
    if found is not None:
        return found
    return store_document(mailing, language, revision, render_document(mailing, revision))


def stored_document(mailing_id: int, language: str) -> MailingDocument | None:
    return db.session.scalar(
        sa.select(MailingDocument).where(MailingDocument.mailing_id == mailing_id, MailingDocument.language == language)
    )


def render_document(mailing: Mailing, revision: Revision) -> bytes:
    """The letter's PDF in ``revision``, signed by the mailing's signatories (frozen at approval)."""
    signatories: Sequence[tuple[str, ...]] = [tuple(row) for row in signatories_of(mailing)]
    return pdf.render_letter_pdf(mailing.letter, revision, get_settings(), signatories)


def store_document(mailing: Mailing, language: str, revision: Revision, content: bytes) -> MailingDocument:
    """Keep ``content`` as the mailing's PDF in ``language``, or the one stored first meanwhile."""
    row = MailingDocument(
        mailing_id=mailing.id,
        language=language,
        revision_id=revision.id,
        filename=f"{mailing.letter.slug}-{language}.pdf",
        content=content,
    )
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except sa.exc.IntegrityError:
        # The other one is committed: it is there.
        return db.session.scalars(sa.select(MailingDocument).filter_by(mailing_id=mailing.id, language=language)).one()
    return row
