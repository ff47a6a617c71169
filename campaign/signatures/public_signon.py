"""The public sign-on: organisations outside the coalition sign, confirm by email, then wait for moderation.

Functions flush; callers commit, and hand mail over only after their commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import email_validator
import pycountry
import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from campaign import pagecache, queue
from campaign.admin.services import consent_wording, get_settings
from campaign.auth.models import Organisation, Role, User
from campaign.auth.services import organisation_name_key
from campaign.db import utcnow
from campaign.extensions import db
from campaign.forms import has_control_characters
from campaign.letters.models import Letter
from campaign.signatures.models import Signature, SignatureEvent, SignatureSource, SignatureStatus
from campaign.signatures.services import SignatureError, SignatureInvalid, record_event, why_not_signable

VERIFY_SALT = "signature-verify"
#: The job that renders and sends a confirmation email (``campaign.signatures.jobs``).
VERIFY_JOB = "signature.verify_email"
VERIFY_MAX_AGE = 7 * 24 * 3600
MEMBERS_ONLY = "This letter is signed by member organisations only."

#: (field, label, maximum length, required)
_FIELDS = (
    ("organisation_name", "The organisation's name", 200, True),
    ("country", "The country", 2, True),
    ("website", "The website", 300, False),
    ("signer_name", "Your name", 200, True),
    ("signer_title", "Your title", 200, True),
    ("signer_email", "Your email address", 254, True),
)


class SignOnInvalid(SignatureInvalid):
    """A field of the sign-on form is wrong; ``field`` names it."""


@dataclass
class PublicSignOn:
    organisation_name: str
    country: str
    website: str
    signer_name: str
    signer_title: str
    signer_email: str
    consent: bool

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> PublicSignOn:
        """The fields as the sign-on form posts them; a ticked box is any value but "" and "false"
        (as WTForms reads it)."""
        return cls(
            **{field: form.get(field, "") for field, *_ in _FIELDS},
            consent=form.get("consent", "") not in ("", "false"),
        )


def consent_text(letter: Letter) -> str:
    """What the signer agrees to, recorded with the signature as it was worded then."""
    name, notice = consent_wording()
    text = (
        f"I sign this letter on behalf of the organisation named above. I agree that {name} "
        "uses the details on this form to check this signature (an email to confirm it, then a review by "
        "the secretariat), to list the organisation's name and country publicly with the letter, and to "
        "write to me about this signature. My name, title and email address are not published; I can ask "
        "for them or have them deleted at any time."
    )
    notice = notice.strip()
    if notice:
        text += f" Privacy notice: {notice}"
    return text


def _clean(data: PublicSignOn) -> dict[str, str]:
    """The fields trimmed and checked, or ``SignOnInvalid`` naming the first wrong one."""
    values: dict[str, str] = {}
    for field, label, limit, required in _FIELDS:
        raw = getattr(data, field) or ""
        # Any control character, CR and LF first: these values reach mail headers and CSV files.
        if has_control_characters(raw):
            raise SignOnInvalid(field, f"{label} must be a single line.")
        value = " ".join(raw.split())
        if required and not value:
            raise SignOnInvalid(field, f"{label} is missing.")
        if len(value) > limit:
            raise SignOnInvalid(field, f"{label} is too long (at most {limit} characters).")
        values[field] = value
    values["country"] = values["country"].upper()
    if pycountry.countries.get(alpha_2=values["country"]) is None:
        raise SignOnInvalid("country", "Choose a country from the list.")
    if values["website"]:
        parts = urlsplit(values["website"])
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise SignOnInvalid("website", "The website must be an address starting with http:// or https://.")
    try:
        checked = email_validator.validate_email(values["signer_email"], check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise SignOnInvalid("signer_email", f"Your email address is not valid: {exc}") from None
    values["signer_email"] = checked.normalized.lower()
    if not data.consent:
        raise SignOnInvalid("consent", "Tick the box to agree to how these details are used.")
    return values


def member_pointer(organisation: Organisation) -> str:
    """Whom a member organisation's would-be public signer should turn to (no email addresses shown)."""
    representatives = db.session.scalars(
        sa.select(User.name)
        .where(User.organisation_id == organisation.id, User.role == Role.MEMBER.value, User.active.is_(True))
        .order_by(User.id)
    ).all()
    if representatives:
        contact = " or ".join(representatives[:2])
    else:
        settings = get_settings()
        address = settings.reply_to or settings.mail_from_address
        contact = f"the secretariat at {address}" if address else "the secretariat"
    return (
        f"{organisation.name} is a member of the coalition: its representative signs from their account "
        f"— contact {contact}."
    )


def _existing(letter: Letter, key: str) -> Signature | None:
    return db.session.scalar(
        sa.select(Signature).where(Signature.letter_id == letter.id, Signature.organisation_key == key)
    )


class SignOn(NamedTuple):
    """A recorded sign-on: what its confirmation link and email are made from."""

    id: int
    signer_email: str
    created_at: datetime


#: Who the name is (an organisation's id and membership) and whether it already has a signature
#: of the letter (its status): one round trip, for the sign-on that is new, as most are.
_LOOKUP = sa.select(
    sa.select(Organisation.id).where(Organisation.name_key == sa.bindparam("key")).scalar_subquery(),
    sa.select(Organisation.member).where(Organisation.name_key == sa.bindparam("key")).scalar_subquery(),
    sa.select(Signature.status)
    .where(Signature.letter_id == sa.bindparam("letter_id"), Signature.organisation_key == sa.bindparam("key"))
    .scalar_subquery(),
)
#: The inserts of a new sign-on: on the tables, without the ORM's bulk machinery, and built
#: once.  No page shows a signature awaiting confirmation (``pagecache.UNSEEN``).
_INSERT = (
    sa.insert(Signature.__table__).returning(Signature.__table__.c.id).execution_options(**{pagecache.UNSEEN: True})
)
_EVENT = sa.insert(SignatureEvent.__table__)


def _insert(letter: Letter, fields: dict[str, Any]) -> int | None:
    """The new signature's id; None when the organisation's signature of the letter exists
    (another sign-on committed it first), after rolling back the transaction, which held
    nothing else.  A plain INSERT, not ``ON CONFLICT``: SQLAlchemy caches its compiled form,
    where it compiles PostgreSQL's ``INSERT … ON CONFLICT`` anew each time."""
    try:
        return db.session.execute(_INSERT, fields).scalar_one()
    except sa.exc.IntegrityError:
        db.session.rollback()
        if _existing(letter, str(fields["organisation_key"])) is None:
            raise
        return None


def start(letter: Letter, data: PublicSignOn, consent: str) -> SignOn:
    """Record a public sign-on awaiting email confirmation, in the caller's transaction.

    Refused when the letter takes no signatures now (or only members'), when the
    name matches a member organisation, or when the organisation has already
    signed or awaits approval.  An unconfirmed attempt for the same organisation
    is replaced (its old link stops working); a rejected or withdrawn one is reused.
    Then ``queue_verification`` in the same transaction.

    A new organisation's sign-on, the common case and the one a surge is made of, is three
    statements (a lookup and two inserts) without loading a row; the rare ones go through
    the ORM.
    """
    refusal = why_not_signable(letter)
    if refusal:
        raise SignatureError(refusal)
    if letter.members_only:
        raise SignatureError(MEMBERS_ONLY)
    values = _clean(data)
    key = organisation_name_key(values["organisation_name"])
    organisation_id, member, status = db.session.execute(_LOOKUP, {"key": key, "letter_id": letter.id}).one()
    if member:
        raise SignOnInvalid("organisation_name", member_pointer(db.session.get(Organisation, organisation_id)))
    if status in (SignatureStatus.PENDING_APPROVAL, SignatureStatus.APPROVED):
        signature = _existing(letter, key)
        message = f"{signature.organisation_name} has already signed this letter"
        if status == SignatureStatus.PENDING_APPROVAL:
            message += "; the signature awaits the secretariat's approval"
        raise SignOnInvalid("organisation_name", message + ".")
    now = utcnow()
    fields = {
        **values,
        "website": values["website"] or None,
        "organisation_key": key,
        "organisation_id": organisation_id,
        "status": SignatureStatus.PENDING_VERIFICATION.value,
        "source": SignatureSource.PUBLIC.value,
        "revision_id": letter.published_revision_id,
        "user_id": None,
        "consent_text": consent,
        "consent_at": now,
        "verified_at": None,
        "decided_at": None,
        "decided_by_id": None,
        "rejection_reason": "",
        "withdrawn_at": None,
        "needs_reconfirmation": False,
        "reconfirmed_at": None,
        "approved_at": None,
        # A new created_at changes the link's fingerprint, so an earlier attempt's link dies.
        "created_at": now,
    }
    if status is None:
        signature_id = _insert(letter, {"letter_id": letter.id, **fields})
        if signature_id is None:  # the same organisation, signing at the same moment
            raise SignOnInvalid("organisation_name", "This organisation is already signing this letter.")
        db.session.execute(_EVENT, {
            "signature_id": signature_id, "kind": "public.started", "actor_email": fields["signer_email"],
            "summary": "Signed on the public form; awaiting email confirmation", "details": {},
        })  # fmt: skip
        return SignOn(signature_id, fields["signer_email"], now)
    signature = _existing(letter, key)
    previous = {"status": signature.status, "email_changed": signature.signer_email != values["signer_email"]}
    for name, value in fields.items():
        setattr(signature, name, value)
    kind = "public.replaced" if previous["status"] == SignatureStatus.PENDING_VERIFICATION else "public.restarted"
    record_event(signature, kind, "Signed again on the public form; awaiting email confirmation", "signer", **previous)
    db.session.flush()
    return SignOn(signature.id, signature.signer_email, signature.created_at)


# --- the confirmation link ----------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=VERIFY_SALT)


def _fingerprint(signature: Signature | SignOn) -> str:
    stamp = signature.created_at.replace(tzinfo=None).isoformat(timespec="seconds")
    return hashlib.sha256(f"{signature.signer_email}\n{stamp}".encode()).hexdigest()[:20]


def verification_token(signature: Signature | SignOn) -> str:
    return _serializer().dumps({"s": signature.id, "h": _fingerprint(signature)})


def signature_for_token(token: str) -> Signature | None:
    """The signature a confirmation link names, if the link is genuine, current and under 7 days old."""
    found = _signature_named(_serializer(), token, VERIFY_MAX_AGE)
    if found is None or found[0].source != SignatureSource.PUBLIC:
        return None
    return found[0]


def _signature_named(serializer: URLSafeTimedSerializer, token: str, max_age: int) -> tuple[Signature, dict] | None:
    """The signature a link's token names and the token's data, if the token is genuine, young
    enough, and of the signature's current sign-on (its fingerprint); else None."""
    try:
        data = serializer.loads(token, max_age=max_age)
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("s"), int):
        return None
    signature = db.session.get(Signature, data["s"])
    if signature is None or data.get("h") != _fingerprint(signature):
        return None
    return signature, data


def queue_verification(signature: Signature | SignOn) -> int:
    """Add the job that emails the confirmation link to this transaction (after ``start``,
    before the commit); its id, for ``queue.dispatch`` after the commit.

    The job row commits with the signature it reports on, in one transaction, so no link
    goes out for an attempt that did not happen.  The worker renders the email
    (``verification_email``): the request writes a small row, not the rendered message.
    """
    return queue.add(VERIFY_JOB, {"signature_id": signature.id, "fingerprint": _fingerprint(signature)},
                     description=f"Email signon_verify to {signature.signer_email}")  # fmt: skip


def verification_email(signature_id: int, fingerprint: str) -> dict[str, Any] | None:
    """The arguments of ``mail.send`` for the confirmation email of the sign-on attempt that
    ``fingerprint`` names; None when that attempt was replaced or confirmed meanwhile (its link
    would no longer work, or is not needed)."""
    from campaign.mailings.notices import render_email
    from campaign.signatures.services import external_url

    signature = db.session.get(Signature, signature_id)
    if (
        signature is None
        or signature.status != SignatureStatus.PENDING_VERIFICATION
        or _fingerprint(signature) != fingerprint
    ):
        return None
    letter = signature.letter
    link = external_url("signatures.confirm", slug=letter.slug, token=verification_token(signature))
    title = letter.published_revision.title if letter.published_revision else letter.title
    return render_email(signature.signer_email, "Confirm your signature", "signon_verify",
                        signature=signature, title=title, link=link)  # fmt: skip


def verify(token: str) -> Signature | None:
    """Confirm the email address: pending verification → pending approval; flushes.

    None for a bad, expired or superseded link.  An already confirmed signature is
    returned unchanged (the page says so).  Refused once the letter stopped taking signatures,
    or takes only members' since the sign-on.
    """
    signature = signature_for_token(token)
    if signature is None or signature.status != SignatureStatus.PENDING_VERIFICATION:
        return signature
    refusal = why_not_signable(signature.letter) or (MEMBERS_ONLY if signature.letter.members_only else None)
    if refusal:
        raise SignatureError(refusal)
    signature.status = SignatureStatus.PENDING_APPROVAL.value
    signature.verified_at = utcnow()
    details: dict[str, Any] = {}
    if text_changed_since_signing(signature):
        # The confirmation page said so and linked the current text: the signer confirms that one.
        signature.revision_id = signature.letter.published_revision_id
        details["revision"] = signature.letter.published_revision.number
    record_event(signature, "public.verified", "Email address confirmed; awaiting approval", "signer", **details)
    db.session.flush()
    return signature


def text_changed_since_signing(signature: Signature) -> bool:
    """Whether the letter's published text is not the revision the signature was given for."""
    return signature.revision_id != signature.letter.published_revision_id


# --- re-confirming after a substantive change ---------------------------------

RECONFIRM_SALT = "signature-reconfirm"
#: The request stands until the next substantive change (which sends a new link) or the deadline.
RECONFIRM_MAX_AGE = 60 * 24 * 3600


def _reconfirm_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=RECONFIRM_SALT)


def reconfirmation_token(signature: Signature) -> str:
    """For the email asking a signer who does not sign in (public, or entered by the secretariat)
    to re-confirm: names the signature, the sign-on it belongs to and the text to re-confirm,
    so that a later change or sign-on makes it stale."""
    payload = {"s": signature.id, "h": _fingerprint(signature), "r": signature.letter.published_revision_id}
    return _reconfirm_serializer().dumps(payload)


def signature_to_reconfirm(token: str) -> Signature | None:
    """The signature a re-confirmation link names, if the link is genuine, under 60 days
    old, and for the letter's current text; else None."""
    found = _signature_named(_reconfirm_serializer(), token, RECONFIRM_MAX_AGE)
    if found is None:
        return None
    signature, data = found
    if signature.source == SignatureSource.MEMBER or data.get("r") != signature.letter.published_revision_id:
        return None  # members re-confirm signed in
    return signature


# --- signers' own data ---------------------------------------------------------

SIGNER_DATA_SALT = "signer-data"
SIGNER_DATA_MAX_AGE = 24 * 3600


def _data_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SIGNER_DATA_SALT)


def signer_data_token(email: str) -> str:
    return _data_serializer().dumps({"e": email.strip().lower()})


def email_for_signer_token(token: str) -> str | None:
    """The address a signer-data link was sent to, if the link is genuine and under a day old."""
    try:
        data = _data_serializer().loads(token, max_age=SIGNER_DATA_MAX_AGE)
    except (SignatureExpired, BadSignature):
        return None
    email = data.get("e") if isinstance(data, dict) else None
    return email if isinstance(email, str) and email else None


def signatures_of(email: str) -> list[Signature]:
    """Every signature given with this address (of any letter, in any state), newest first."""
    email = email.strip().lower()
    return list(
        db.session.scalars(
            sa.select(Signature).where(Signature.signer_email == email).order_by(Signature.created_at.desc())
        )
    )


def send_signer_data_link(email: str) -> bool:
    """Email a link to the signer's data when the address signed anything; True if sent.

    The page asking for it answers the same either way, so nobody learns who signed.
    """
    from campaign.mailings.notices import external_url, send_template

    try:
        email = email_validator.validate_email(email, check_deliverability=False).normalized.lower()
    except email_validator.EmailNotValidError:
        return False
    if not signatures_of(email):
        return False
    link = external_url("signatures.signer_data_page", token=signer_data_token(email))
    send_template(email, "Your signatures and your data", "signon_data", link=link)
    return True


def export(email: str) -> dict[str, object]:
    """All that is held about this signer, as JSON-ready data."""

    def stamp(value: object) -> str | None:
        return value.isoformat() if value is not None else None  # type: ignore[attr-defined]

    return {
        "email": email,
        "signatures": [
            {
                "letter": s.letter.slug,
                "letter_title": s.letter.title,
                "organisation": s.organisation_name,
                "country": s.country,
                "website": s.website,
                "signer_name": s.signer_name,
                "signer_title": s.signer_title,
                "signer_email": s.signer_email,
                "status": s.status,
                "source": s.source,
                "consent_text": s.consent_text,
                "consent_at": stamp(s.consent_at),
                "created_at": stamp(s.created_at),
                "verified_at": stamp(s.verified_at),
                "decided_at": stamp(s.decided_at),
                "rejection_reason": s.rejection_reason,
                "withdrawn_at": stamp(s.withdrawn_at),
                "history": [{"at": stamp(e.created_at), "kind": e.kind, "summary": e.summary} for e in s.events],
            }
            for s in signatures_of(email)
        ],
    }


def erase(email: str) -> int:
    """Delete the signer's personal details from each of their signatures; flushes; returns how many.

    Name and title are emptied and the address replaced by a non-routable one
    (also in the history).  Signatures not yet approved are withdrawn; approved
    ones stay listed, since the organisation's name and country are not personal data.
    """
    found = signatures_of(email)
    now = utcnow()
    for signature in found:
        old = signature.signer_email
        placeholder = f"deleted-{signature.id}@invalid"
        for event in signature.events:
            if event.actor_email == old:
                event.actor_email = placeholder
        signature.signer_name = signature.signer_title = ""
        signature.signer_email = placeholder
        if signature.status in (SignatureStatus.PENDING_VERIFICATION, SignatureStatus.PENDING_APPROVAL):
            signature.status = SignatureStatus.WITHDRAWN.value
            signature.withdrawn_at = now
        record_event(signature, "signer.erased", "The signer deleted their personal details", "signer")
    db.session.flush()
    return len(found)
