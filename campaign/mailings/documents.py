"""The letter's PDFs a mailing attaches: one per language, rendered from what approval froze.

Approving a mailing queues ``mailing.documents``, which renders them at once: coordinators
can read, before anything is sent, exactly the PDFs that will be attached, and the sending
starts without waiting for WeasyPrint.  An edit that withdraws the approval deletes them
(``forget``), so a later approval renders them again from what it freezes.  The dispatch
renders any still missing (``prepare``), and a chunk renders what it needs if that failed too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlalchemy as sa

from campaign.contacts.models import Contact
from campaign.db import begin_write
from campaign.extensions import db
from campaign.mailings import personalise
from campaign.mailings.models import Mailing, MailingDocument

log = logging.getLogger(__name__)


def prepare(mailing: Mailing, languages: Iterable[str]) -> None:
    """Render the PDFs that recipients speaking ``languages`` need and that are not stored yet,
    in this transaction (the caller commits).  A failure is logged: the chunks render what is
    missing, and record any failure on the deliveries."""
    try:
        renderer = personalise.Renderer(mailing)
        for language in _documents_for(renderer, languages):
            renderer.document(language, renderer.revisions[language])  # loaded when stored already
    except Exception:
        log.exception("mailing %s: the PDFs could not be prepared", mailing.id)


def render_approved(mailing_id: int, version: int) -> int:
    """Render the PDFs of the mailing approved as ``version`` for the languages of its audience;
    commits, and returns how many it stored.  Nothing is kept when that approval was withdrawn
    meanwhile.  The PDFs are rendered outside any write transaction, then stored together."""
    mailing = db.session.get(Mailing, mailing_id)
    if mailing is None or not mailing.is_approved or mailing.approved_version != version:
        return 0
    renderer = personalise.Renderer(mailing)
    stored = set(db.session.scalars(sa.select(MailingDocument.language).filter_by(mailing_id=mailing_id)))
    contents = {
        language: personalise.render_document(mailing, renderer.revisions[language])
        for language in _documents_for(renderer, audience_languages(mailing))
        if language not in stored
    }
    db.session.commit()
    begin_write(db.session)
    # Under the mailing's lock: an edit that withdrew the approval has deleted the mailing's
    # PDFs, or waits for this transaction and then deletes these.
    current = db.session.scalar(sa.select(Mailing.approved_version).where(Mailing.id == mailing_id).with_for_update())
    if current != version:
        db.session.rollback()
        log.info("mailing %s: approval of version %s withdrawn, its PDFs are not kept", mailing_id, version)
        return 0
    for language, content in contents.items():
        personalise.store_document(mailing, language, renderer.revisions[language], content)
    db.session.commit()
    return len(contents)


def forget(mailing_id: int) -> None:
    """Delete the mailing's PDFs (its approval is withdrawn); in the caller's transaction."""
    db.session.execute(
        sa.delete(MailingDocument)
        .where(MailingDocument.mailing_id == mailing_id)
        .execution_options(synchronize_session=False)
    )


def listed(mailing_id: int) -> list[sa.Row]:
    """The mailing's stored PDFs, without their content: language, filename, size, created_at."""
    return list(
        db.session.execute(
            sa.select(
                MailingDocument.language,
                MailingDocument.filename,
                sa.func.length(MailingDocument.content).label("size"),
                MailingDocument.created_at,
            )
            .where(MailingDocument.mailing_id == mailing_id)
            .order_by(MailingDocument.language)
        )
    )


def audience_languages(mailing: Mailing) -> list[str]:
    """The languages of the audience's deliverable contacts."""
    from campaign.mailings.services import recipients_query

    query = recipients_query(mailing).where(Contact.suppression.is_(None)).order_by(None)
    return list(db.session.scalars(query.with_only_columns(Contact.language).distinct()))


def _documents_for(renderer: personalise.Renderer, languages: Iterable[str]) -> list[str]:
    """The languages of the PDFs recipients speaking ``languages`` get (the letter's own
    language for those it has no translation in)."""
    return sorted({renderer.language_for(language) for language in languages} & renderer.revisions.keys())
