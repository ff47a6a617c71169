"""Automatic alerts: a letter opens for signatures, a mailing of it has been delivered, a
meeting the coalition writes for is near.  They are sent without a human step.

Each automatic alert has a ``trigger_key`` (``letter_opened:12``, ``mailing_delivered:7``,
``meeting_soon:3``), unique in the database, so a trigger that fires twice (a letter closed
and opened again, a job run twice, two workers sweeping at once) makes one alert.

Nothing here may make the action that fires it fail: a letter opened in a request adds, once
the move is committed, a job that builds and sends the alert; a finished mailing does the same
after its own commit.  Sweeps of the workers' maintenance loop find the rest: letters opened
elsewhere (an import) or whose job could not be added, and meetings ``ALERT_MEETING_DAYS``
before they start.  ``ALERTS_AUTOMATIC`` set to false turns all of it off.

The texts are built from what the public can read: the letter's title and public link in its
own language and in each published translation's, after a short sentence in that language.
A letter under embargo is announced when the embargo ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import after_this_request, current_app, has_request_context

from campaign import audit, queue
from campaign.alerts import services
from campaign.alerts.models import Alert, AlertKind, AlertStatus, Topic
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.letters.models import UN_LANGUAGES, Letter, LetterStatus, Meeting
from campaign.mailings.models import Delivery, DeliveryStatus, Mailing, MailingStatus
from campaign.queue import Job, job

log = logging.getLogger(__name__)

TRIGGER_JOB = "alerts.trigger"
#: How long after a letter opened (or its embargo ended) the workers' sweep still alerts it.
RECENT = timedelta(days=1)

#: The sentence each kind of automatic alert opens with, in every UN language.
SENTENCES: dict[str, dict[str, str]] = {
    AlertKind.LETTER_OPENED: {
        "ar": "رسالة مفتوحة جديدة مفتوحة الآن للتوقيع",
        "zh": "一封新的公开信现已开放联署",
        "en": "A new open letter is open for signatures",
        "fr": "Une nouvelle lettre ouverte est ouverte aux signatures",
        "ru": "Новое открытое письмо открыто для подписания",
        "es": "Una nueva carta abierta está abierta a firmas",
    },
    AlertKind.MAILING_DELIVERED: {
        "ar": "تم تسليم رسالتنا المفتوحة إلى المرسل إليهم",
        "zh": "我们的公开信已送达收件人",
        "en": "Our open letter has been delivered to its addressees",
        "fr": "Notre lettre ouverte a été remise à ses destinataires",
        "ru": "Наше открытое письмо доставлено адресатам",
        "es": "Nuestra carta abierta ha sido entregada a sus destinatarios",
    },
    AlertKind.MEETING_SOON: {
        "ar": "يقترب موعد اجتماع كتبنا من أجله",
        "zh": "我们为之致信的会议即将召开",
        "en": "A meeting we wrote to is coming up",
        "fr": "Une réunion à laquelle nous avons écrit approche",
        "ru": "Скоро состоится встреча, к которой мы обратились с письмом",  # noqa: RUF001 - Cyrillic
        "es": "Se acerca una reunión a la que escribimos",
    },
}
#: The label of the link to a letter, in every UN language.
READ_THE_LETTER = {
    "ar": "اقرأ الرسالة",
    "zh": "阅读公开信",
    "en": "Read the letter",
    "fr": "Lire la lettre",
    "ru": "Прочитать письмо",
    "es": "Leer la carta",
}
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+-.!|>~"} | {"<": "&lt;", "&": "&amp;"})


def enabled() -> bool:
    return bool(current_app.config["ALERTS_AUTOMATIC"])


def _escape(text: str) -> str:
    """``text`` as literal Markdown, on one line, unable to open a personalisation tag."""
    return " ".join(text.replace("[%", "[ %").split()).translate(_MARKDOWN_SPECIAL)


def _subject(kind: str, language: str, title: str) -> str:
    subject = f"{SENTENCES[kind][language]}: {' '.join(title.replace('[%', '[ %').split())}"
    return subject[: services.MAX_SUBJECT - 1] + "…" if len(subject) > services.MAX_SUBJECT else subject


# --- hooks: what fires a trigger ------------------------------------------------------------


def on_letter_opened(letter: Letter) -> None:
    """Called by ``letters.services.transition`` when a letter opens, inside its transaction.

    Within a request, the job that alerts subscribers (due when any embargo ends) is added
    once the response is ready, after the caller's commit, and only if the letter is then
    open: a move that was rolled back alerts no one, and nothing here can undo the move.
    Elsewhere (``flask letters import``), or if that step fails, the workers' sweep
    ``letters_opened`` finds the letter.  Reopening a closed letter alerts no one again.
    """
    if not enabled() or not has_request_context():
        return
    letter_id = letter.id

    @after_this_request
    def schedule(response: Any) -> Any:
        if response.status_code >= 500:
            return response
        try:
            db.session.rollback()  # what the view left uncommitted is discarded anyway
            found = db.session.get(Letter, letter_id)
            if found is not None and found.status == LetterStatus.OPEN and not _exists(_letter_key(letter_id)):
                row = _schedule(AlertKind.LETTER_OPENED, letter_id, _public_from(found))
                db.session.commit()
                queue.dispatch(row)
        except Exception:
            db.session.rollback()
            log.exception("letter %s opened: the alert to subscribers is left to the workers' sweep", letter_id)
        return response


def on_mailing_finished(mailing_id: int) -> None:
    """Called once a mailing is marked finished (after that commit): schedule its alert."""
    if not enabled():
        return
    try:
        row = _schedule(AlertKind.MAILING_DELIVERED, mailing_id)
        db.session.commit()
        queue.dispatch(row)
    except Exception:
        db.session.rollback()
        log.exception("mailing %s finished: the alert to subscribers could not be scheduled", mailing_id)


def _schedule(kind: AlertKind, object_id: int, due_at: datetime | None = None) -> Job:
    """The job that makes the alert of ``kind`` for a letter or mailing; the caller commits."""
    return queue.schedule(TRIGGER_JOB, {"kind": kind.value, "id": object_id}, due_at=due_at,
                          description=f"Alert: {kind.value} {object_id}")  # fmt: skip


@job(TRIGGER_JOB, queue="default", max_attempts=5)
def run_trigger(row: Job, kind: str, id: int) -> None:
    """Build and send the automatic alert of ``kind`` for the letter or mailing ``id``; running
    it twice makes one alert."""
    if kind == AlertKind.LETTER_OPENED:
        letter = db.session.get(Letter, id)
        alert = letter_opened(letter) if letter is not None else None
    elif kind == AlertKind.MAILING_DELIVERED:
        mailing = db.session.get(Mailing, id)
        alert = mailing_delivered(mailing) if mailing is not None else None
    else:
        raise queue.PermanentJobError(f"unknown trigger {kind!r}")
    row.message = f"alert {alert.id}" if alert is not None else "no alert"


# --- the alerts ------------------------------------------------------------------------------


def _letter_key(letter_id: int) -> str:
    return f"{AlertKind.LETTER_OPENED}:{letter_id}"


def _exists(key: str) -> bool:
    return db.session.scalar(sa.select(Alert.id).where(Alert.trigger_key == key)) is not None


def _public_from(letter: Letter) -> datetime:
    now = utcnow()
    return letter.embargo_until if letter.embargo_until and letter.embargo_until > now else now


def _topic_ids(*keys: str) -> list[int]:
    return list(db.session.scalars(sa.select(Topic.id).where(Topic.key.in_(keys), Topic.active.is_(True))))


def _letter_links(letter: Letter) -> dict[str, tuple[str, str]]:
    """The letter's public title and link in each language the public can read it in."""
    from campaign.signatures.services import external_url

    links = {}
    for language in [letter.language, *(t.language for t in letters.published_translations(letter))]:
        revision = letters.public_revision(letter, language)
        if revision is None or language not in UN_LANGUAGES:
            continue
        lang = None if language == letter.language else language
        links[language] = (revision.title, external_url("public.letter", slug=letter.slug, lang=lang))
    return links


def _letter_texts(kind: str, letter: Letter) -> list[services.AlertTextData]:
    texts = []
    for language, (title, url) in _letter_links(letter).items():
        body = f"{SENTENCES[kind][language]}:\n\n**{_escape(title)}**\n\n[{READ_THE_LETTER[language]}]({url})"
        texts.append(services.AlertTextData(language, _subject(kind, language, title), body))
    return texts


def _fire(kind: AlertKind, key: str, texts: list[services.AlertTextData], topic_ids: list[int],
          **links: int) -> Alert | None:  # fmt: skip
    """Make the alert of ``key`` unless it exists, and send it at once: to every confirmed
    subscriber of the topics in every language (in theirs where the letter has it, else in
    the original's).  With no one to send to it is recorded as finished, sent to none (a
    subscriber who arrives later is not alerted of what happened before)."""
    if not texts or not topic_ids or _exists(key):
        return None
    data = services.AlertData(texts[0], topic_ids, texts[1:], list(UN_LANGUAGES))
    try:
        with db.session.begin_nested():
            alert = services.create_alert(data, kind=kind)
            alert.trigger_key = key
            for name, value in links.items():
                setattr(alert, name, value)
            db.session.flush()
    except sa.exc.IntegrityError:
        log.info("alert %s: made meanwhile by another process", key)
        return None
    if not services.audience_count(alert).total:
        now = utcnow()
        alert.status, alert.send_requested_at, alert.due_at, alert.finished_at = (
            AlertStatus.FINISHED.value, now, now, now,
        )  # fmt: skip
        audit.record("alerts.automatic", alert, f"Automatic alert {alert.id} ({kind}): no subscriber to send to")
        db.session.commit()
        return alert
    audit.record("alerts.automatic", alert, f"Automatic alert {alert.id} ({kind}) sent")
    services.request_send(alert, None)  # commits, and hands the sending to the queue
    return alert


def letter_opened(letter: Letter) -> Alert | None:
    """Alert the subscribers of new letters that ``letter`` is open for signatures.

    Nothing when automatic alerts are off, when it was alerted before, or when the letter is
    no longer published; a letter still under embargo is left to a job due when it ends.
    """
    if not enabled() or not letter.is_published:
        return None
    if not letter.is_public():
        row = _schedule(AlertKind.LETTER_OPENED, letter.id, letter.embargo_until)
        db.session.commit()
        queue.dispatch(row)
        return None
    texts = _letter_texts(AlertKind.LETTER_OPENED, letter)
    return _fire(AlertKind.LETTER_OPENED, _letter_key(letter.id), texts, _topic_ids("letters"), letter_id=letter.id)


def mailing_delivered(mailing: Mailing) -> Alert | None:
    """Alert the subscribers of new letters that a mailing of the letter has reached its
    addressees: once the mailing is finished with at least one message sent or delivered."""
    if not enabled() or mailing.letter is None or not mailing.letter.is_published:
        return None
    went = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(Delivery)
        .where(
            Delivery.mailing_id == mailing.id,
            Delivery.status.in_([DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value]),
        )
    )
    if not went or mailing.status != MailingStatus.FINISHED:
        return None
    letter = mailing.letter
    if not letter.is_public():
        row = _schedule(AlertKind.MAILING_DELIVERED, mailing.id, letter.embargo_until)
        db.session.commit()
        queue.dispatch(row)
        return None
    key = f"{AlertKind.MAILING_DELIVERED}:{mailing.id}"
    texts = _letter_texts(AlertKind.MAILING_DELIVERED, letter)
    return _fire(AlertKind.MAILING_DELIVERED, key, texts, _topic_ids("letters"), letter_id=letter.id,
                 mailing_id=mailing.id)  # fmt: skip


def meeting_soon(meeting: Meeting) -> Alert | None:
    """Alert the subscribers of meetings that ``meeting`` starts soon, with the public letters
    written for it; nothing for a meeting that has started or has no public letter."""
    if not enabled() or meeting.starts_at <= utcnow():
        return None
    written = letters.public_letters_for_meeting(meeting.id)
    if not written:
        return None
    kind = AlertKind.MEETING_SOON
    when = f"{meeting.starts_at_local:%Y-%m-%d %H:%M} ({meeting.timezone})"
    where = f", {_escape(meeting.location)}" if meeting.location else ""
    per_language: dict[str, list[str]] = {}
    for letter in written:
        links = _letter_links(letter)
        for language in UN_LANGUAGES:
            title, url = links.get(language) or links[letter.language]
            per_language.setdefault(language, []).append(f"- [{_escape(title)}]({url})")
    first = written[0]
    languages = [first.language, *(code for code in UN_LANGUAGES if code != first.language)]
    read_in = {code for letter in written for code in _letter_links(letter)}
    texts = [
        services.AlertTextData(
            language,
            _subject(kind, language, meeting.title),
            f"{SENTENCES[kind][language]}:\n\n**{_escape(meeting.title)}**, {when}{where}\n\n"
            + "\n".join(per_language[language]),
        )
        for language in languages
        if language in read_in
    ]
    key = f"{kind}:{meeting.id}"
    return _fire(kind, key, texts, _topic_ids("meetings"), meeting_id=meeting.id)


@queue.sweeper
def letters_opened() -> int:
    """Alert the letters that opened (or came out of embargo) within ``RECENT`` and have no alert
    yet: those opened outside a request, or whose job could not be added.  Returns how many
    alerts were made; one query when there is nothing to do."""
    if not enabled():
        return 0
    now, since = utcnow(), utcnow() - RECENT
    key = sa.literal(f"{AlertKind.LETTER_OPENED}:", sa.String) + sa.cast(Letter.id, sa.String)
    public_since = sa.or_(
        sa.and_(Letter.published_at > since, sa.or_(Letter.embargo_until.is_(None), Letter.embargo_until <= now)),
        sa.and_(Letter.embargo_until > since, Letter.embargo_until <= now),
    )
    found = db.session.scalars(
        sa.select(Letter).where(
            Letter.status == LetterStatus.OPEN.value,
            Letter.published_revision_id.is_not(None),
            public_since,
            ~sa.exists(sa.select(Alert.id).where(Alert.trigger_key == key)),
        )
    ).all()
    return _alert_each(found, letter_opened, "letter")


@queue.sweeper
def meetings_due() -> int:
    """Alert the meetings starting within ``ALERT_MEETING_DAYS`` that have not been alerted;
    returns how many alerts were made.  One query when there is nothing to do."""
    if not enabled():
        return 0
    now = utcnow()
    key = sa.literal(f"{AlertKind.MEETING_SOON}:", sa.String) + sa.cast(Meeting.id, sa.String)
    alerted = sa.select(Alert.id).where(Alert.trigger_key == key)
    soon = db.session.scalars(
        sa.select(Meeting)
        .where(
            Meeting.starts_at > now,
            Meeting.starts_at <= now + timedelta(days=current_app.config["ALERT_MEETING_DAYS"]),
            ~sa.exists(alerted),
        )
        .order_by(Meeting.starts_at)
    ).all()
    return _alert_each(soon, meeting_soon, "meeting")


def _alert_each(found: Sequence[Any], make: Callable[[Any], Alert | None], what: str) -> int:
    """``make`` the alert of each of ``found`` (letters, meetings); one that fails is rolled back
    and logged, and the others still get theirs.  Commits; returns how many alerts were made."""
    made = 0
    for item in found:
        try:
            made += make(item) is not None
        except Exception:
            db.session.rollback()
            log.exception("%s %s: the alert to subscribers could not be made", what, item.id)
    db.session.commit()
    return made
