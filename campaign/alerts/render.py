"""What an alert looks like in a subscriber's mailbox: one message per language, personalised by tags.

An alert is written once per language (``AlertText``) and sent to up to ``MAX_BATCH``
subscribers per request, so the subject, text and HTML are rendered once and hold
substitution tags that the provider replaces for each recipient:

====================================  ==========================================================
``[%name_html%]`` / ``[%name_text%]``  the subscriber's name with the separator the greeting
                                       needs (``" Anna"``), or nothing: "Hello Anna," / "Hello,"
``[%preferences_html%]`` / ``…_text``  the signed link to their preference page
``[%unsubscribe_html%]`` / ``…_text``  the signed link that unsubscribes them
====================================  ==========================================================

Values for the ``_html`` tags are HTML-escaped, values for the ``_text`` tags are plain.
Nothing a coordinator types can become a tag: every ``[%`` in the body, the subject, the
coalition's settings or a subscriber's name is neutralised (``[&#37;`` in HTML, a word
joiner between the two characters in text) before the layout's own tags are put in.

Every message carries ``List-Unsubscribe`` (the subscriber's own https link) and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), the coalition's postal
address and its privacy notice.
"""

from __future__ import annotations

import html as html_lib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from flask import render_template
from markupsafe import Markup

from campaign.admin.services import get_settings
from campaign.alerts import tokens
from campaign.alerts.models import Alert, AlertDelivery, Subscriber
from campaign.letters.models import RTL_LANGUAGES
from campaign.mailings.backends import Batch, BatchRecipient, Message, message_for
from campaign.rendering import plain_text, render

#: The six tags of an alert, by what they hold and the part they go in.
TAGS = {
    ("name", "html"): "[%name_html%]",
    ("name", "text"): "[%name_text%]",
    ("preferences", "html"): "[%preferences_html%]",
    ("preferences", "text"): "[%preferences_text%]",
    ("unsubscribe", "html"): "[%unsubscribe_html%]",
    ("unsubscribe", "text"): "[%unsubscribe_text%]",
}
#: How a tag starts; refused in what coordinators write (``tag_problem``) and neutralised anyway.
TAG_OPENING = "[%"
_WORD_JOINER = "\u2060"
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")

#: The layout's words in each UN language.  ``greeting`` holds ``{name}``, replaced by the name
#: tag; ``separator`` goes before a name inside that tag ("Hello Anna," / "Hello,").
WORDING: dict[str, dict[str, str]] = {
    "en": {
        "greeting": "Hello{name},",
        "separator": " ",
        "why": "You receive this email because you asked for alerts from {coalition}.",
        "preferences": "Manage your alerts",
        "unsubscribe": "Unsubscribe",
        "privacy": "Privacy notice",
    },
    "fr": {
        "greeting": "Bonjour{name},",
        "separator": " ",
        "why": "Vous recevez ce message parce que vous avez demandé les alertes de {coalition}.",
        "preferences": "Gérer vos alertes",
        "unsubscribe": "Se désabonner",
        "privacy": "Politique de confidentialité",
    },
    "es": {
        "greeting": "Hola{name}:",
        "separator": " ",
        "why": "Recibe este mensaje porque pidió recibir las alertas de {coalition}.",
        "preferences": "Gestionar sus alertas",
        "unsubscribe": "Darse de baja",
        "privacy": "Aviso de privacidad",
    },
    "ru": {
        "greeting": "Здравствуйте{name}!",
        "separator": ", ",
        "why": "Вы получили это письмо, потому что подписались на оповещения {coalition}.",
        "preferences": "Настроить оповещения",
        "unsubscribe": "Отписаться",
        "privacy": "Политика конфиденциальности",
    },
    "ar": {
        "greeting": "مرحبا{name}،",
        "separator": " ",
        "why": "تصلك هذه الرسالة لأنك طلبت تلقي تنبيهات {coalition}.",
        "preferences": "إدارة التنبيهات",
        "unsubscribe": "إلغاء الاشتراك",
        "privacy": "إشعار الخصوصية",
    },
    "zh": {
        "greeting": "{name}您好：",  # noqa: RUF001 - Chinese punctuation
        "separator": "",
        "why": "您收到此邮件，是因为您订阅了{coalition}的提醒。",  # noqa: RUF001
        "preferences": "管理提醒设置",
        "unsubscribe": "退订",
        "privacy": "隐私声明",
    },
}
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class Parts:
    """An alert's message in one language, with the tags still in it."""

    subject: str
    text: str
    html: str
    #: The language of the text used (the original's when the one asked for has none).
    language: str


class _Signed(Protocol):
    """What a signed link needs of a subscriber: a ``Subscriber`` or a row carrying the same."""

    id: int
    token_key: str


@dataclass(frozen=True)
class SubscriberRow:
    """The few columns of a subscriber that one recipient of a chunk needs, without the ORM object."""

    id: int
    token_key: str
    name: str


def tag_problem(text: str) -> str | None:
    """Why ``text`` (a subject or body a coordinator wrote) cannot be used as it is, or None."""
    if TAG_OPENING in text:
        return "“[%” is reserved for the personalisation of alerts; write “[ %” instead"
    return None


def _neutral_html(value: str) -> str:
    return value.replace(TAG_OPENING, "[&#37;")


def _neutral_text(value: str) -> str:
    return value.replace(TAG_OPENING, "[" + _WORD_JOINER + "%")


def wording(language: str) -> dict[str, str]:
    return WORDING.get(language, WORDING["en"])


_LINK = re.compile(r'<a\s[^>]*?href="([^"]*)"[^>]*>(.*?)</a>', re.DOTALL)


def _text_of(body_html: str) -> str:
    """The plain text of the sanitised body, each link followed by its address."""

    def spell_out(match: re.Match[str]) -> str:
        href, label = html_lib.unescape(match.group(1)), match.group(2)
        shown = html_lib.unescape(re.sub(r"<[^>]+>", "", label)).strip()
        if not href or href.startswith("#") or shown == href or href == f"mailto:{shown}":
            return label
        return f"{label} ({html_lib.escape(href, quote=False)})"

    return plain_text(_LINK.sub(spell_out, body_html))


def parts(alert: Alert, language: str) -> Parts:
    """The alert in ``language`` (else in its original language), ready for a batch.

    The Markdown body goes through the project's pipeline (``campaign.rendering.render``:
    Python-Markdown, then nh3), into ``templates/email/alert.html`` and ``alert.txt``.
    Raises ``LookupError`` when the alert has no text at all.
    """
    text = alert.text_for(language)
    if text is None:
        raise LookupError(f"alert {alert.id} has no text in {language!r} nor in {alert.language!r}")
    settings = get_settings()
    words = wording(text.language)
    subject = " ".join(_LINE_BREAKS.sub(" ", text.subject).split())
    # Placeholders nobody can type (a fresh nonce each time) stand for the tags while the
    # layout renders; then every "[%" in the result is neutralised and the tags put in.
    nonce = secrets.token_hex(8)
    holders = {key: f"@@{nonce}-{key[0]}-{key[1]}@@" for key in TAGS}
    body_html = render(text.body).html
    context: dict[str, Any] = {
        "coalition": settings,
        "language": text.language,
        "direction": "rtl" if text.language in RTL_LANGUAGES else "ltr",
        "words": words,
        "why": words["why"].format(coalition=settings.name),
        "subject": subject,
    }
    html = render_template(
        "email/alert.html",
        body=Markup(body_html),  # noqa: S704 - sanitised by campaign.rendering
        greeting=words["greeting"].format(name=holders["name", "html"]),
        preferences_url=holders["preferences", "html"],
        unsubscribe_url=holders["unsubscribe", "html"],
        **context,
    )
    plain = render_template(
        "email/alert.txt",
        body=_text_of(body_html),
        greeting=words["greeting"].format(name=holders["name", "text"]),
        preferences_url=holders["preferences", "text"],
        unsubscribe_url=holders["unsubscribe", "text"],
        **context,
    )
    html, plain = _neutral_html(html), _neutral_text(plain)
    for key, holder in holders.items():
        html, plain = html.replace(holder, TAGS[key]), plain.replace(holder, TAGS[key])
    return Parts(subject=_neutral_text(subject), text=plain, html=html, language=text.language)


class Links:
    """The signed links of the recipients of one batch, signed at one time (``tokens.LinkSigner``)."""

    def __init__(self) -> None:
        self.preferences = tokens.LinkSigner("preferences")
        self.unsubscribe = tokens.LinkSigner("unsubscribe")


def substitutions(subscriber: _Signed, name: str, language: str, links: Links | None = None) -> dict[str, str]:
    """The value of each tag for one subscriber, in the wording of ``language``."""
    links = links or Links()
    name = " ".join(name.split())
    named = wording(language)["separator"] + name if name else ""
    preferences = links.preferences.url(subscriber.id, subscriber.token_key)
    unsubscribe = links.unsubscribe.url(subscriber.id, subscriber.token_key)
    return {
        TAGS["name", "html"]: _neutral_html(html_lib.escape(named)),
        TAGS["name", "text"]: _neutral_text(named),
        TAGS["preferences", "html"]: html_lib.escape(preferences),
        TAGS["preferences", "text"]: preferences,
        TAGS["unsubscribe", "html"]: html_lib.escape(unsubscribe),
        TAGS["unsubscribe", "text"]: unsubscribe,
    }


def unsubscribe_headers(unsubscribe_url: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe: the https link, and the POST a mail client makes to it."""
    return {"List-Unsubscribe": f"<{unsubscribe_url}>", "List-Unsubscribe-Post": ONE_CLICK}


def recipient_for(
    email: str,
    subscriber: _Signed,
    name: str,
    language: str,
    custom_args: Mapping[str, str],
    links: Links | None = None,
) -> BatchRecipient:
    """One recipient of a batch written in ``language``: tags, ids for events, RFC 8058 headers.
    A batch's recipients share ``links``."""
    values = substitutions(subscriber, name, language, links)
    return BatchRecipient(
        address=email,
        substitutions=values,
        custom_args=dict(custom_args),
        headers=unsubscribe_headers(values[TAGS["unsubscribe", "text"]]),
    )


def recipient(item: AlertDelivery | Subscriber, language: str | None = None) -> BatchRecipient:
    """The recipient a delivery (or, for previews and tests, a subscriber) is in a batch.

    ``language`` is that of the text the batch carries (``Parts.language``); by default the
    delivery's or subscriber's own.  A delivery's events carry back its id and its alert's.
    """
    if isinstance(item, AlertDelivery):
        subscriber = item.subscriber
        if subscriber is None:
            raise LookupError(f"alert delivery {item.id}: the subscriber was deleted")
        args = {"alert": str(item.alert_id), "alert_delivery": str(item.id)}
        return recipient_for(item.email, subscriber, subscriber.name, language or item.language, args)
    return recipient_for(item.email, item, item.name, language or item.language, {})


def batch(alert: Alert | int, alert_parts: Parts, recipients: list[BatchRecipient]) -> Batch:
    """The request that carries ``alert_parts`` to ``recipients`` (at most ``MAX_BATCH``)."""
    from campaign.mailings.notices import sender_address

    sender, reply_to = sender_address()
    alert_id = alert if isinstance(alert, int) else alert.id
    return Batch(
        subject=alert_parts.subject,
        text=alert_parts.text,
        html=alert_parts.html,
        sender=sender,
        reply_to=reply_to or None,
        recipients=recipients,
        categories=("alert", f"alert-{alert_id}"),
    )


def message_for_subscriber(alert: Alert, subscriber: Subscriber, language: str | None = None) -> Message:
    """The message ``subscriber`` receives (in ``language`` when given): previews and test sends.

    Built as a one-recipient batch and expanded by ``backends.message_for``, so it is exactly
    what each recipient of a real send receives.
    """
    alert_parts = parts(alert, language or subscriber.language)
    one = recipient(subscriber, alert_parts.language)
    return message_for(batch(alert, alert_parts, [one]), one)
