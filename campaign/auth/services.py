"""Rules for accounts and organisations. Functions flush; callers commit."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

import pycountry
import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from campaign import audit, queue
from campaign.auth.models import Organisation, Role, User, new_session_token
from campaign.auth.passwords import hash_password, needs_rehash, password_problem, verify_password
from campaign.db import utcnow
from campaign.extensions import db
from campaign.queue import Job


class AccountError(ValueError):
    """A request about accounts that breaks a rule; the message is for the user."""


# --- organisations -----------------------------------------------------------

#: Legal forms dropped from the END of a name, in the coalition's languages, as they read once
#: folded ("e. V." is "ev", "a.s.b.l." is "asbl"): words that say what kind of body an
#: organisation is, not which one.  Not here, because they tell organisations apart:
#: "foundation", "fondation", "stiftung", "stichting", "trust" (a foundation is often a body of
#: its own beside the association of the same name), "network", "ag" (also a German working
#: group).  "SA" at the end may mean South Africa; matching "S.A." is worth that risk.
_LEGAL_FORMS = frozenset(
    {
        "association", "inc", "ltd", "limited", "llc", "plc", "cic", "cio", "ngo",  # English
        "asbl", "aisbl", "ong", "sarl", "sas", "sa",  # French (and "sa" for Spanish, Portuguese)
        "ac", "sl",  # Spanish
        "ltda", "lda",  # Portuguese
        "ev", "gev", "gmbh", "ggmbh", "gemeinnutzige", "gemeinnutziger", "gemeinnutziges",  # German
        "onlus", "aps", "odv", "ets",  # Italian
        "vzw", "ivzw", "bv", "nv",  # Dutch
    }
)  # fmt: skip
#: Dropped wherever they stand, as the first version of the rule did.
_ARTICLES = frozenset({"the"})
_APOSTROPHES = re.compile("['\u2018\u2019\u02bc`]")
#: A letter and its dot, joined to the next initial: "a.s.b.l." -> "asbl.", "e. V." -> "ev.";
#: across a space only when that initial has a dot or ends the name ("Plan B. A World" stays).
_INITIALS = re.compile(r"\b(\w)\.(?:\s+(?=\w(?:\.|$)))?(?=\w\b)")
#: Slugs that name admin pages (``/admin/organisations/new``) rather than an organisation.
_RESERVED_SLUGS = {"new"}


def organisation_name_key(name: str) -> str:
    """Fold a name for comparison, so one organisation cannot be listed twice under variants.

    Case and accents are ignored; apostrophes are dropped ("Women's" is "Womens"); other
    punctuation separates words; dotted initials join ("e. V." is "ev", "A.C." is "ac");
    "the" is dropped anywhere; legal forms (``_LEGAL_FORMS``) are dropped only from the end,
    one after another ("gemeinnützige GmbH"), so "SA Human Rights Network" keeps its "SA".
    At least one word is always kept.  The keys are stored: migration ``82ee5fa2813a``
    recomputed them with a copy of this rule, and a change to it needs a migration like it.
    """
    text = unicodedata.normalize("NFKD", name.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _APOSTROPHES.sub("", text)
    text = _INITIALS.sub(r"\1", text)
    words = re.sub(r"[^\w]+", " ", text).split()
    words = [w for w in words if w not in _ARTICLES] or words
    while len(words) > 1 and words[-1] in _LEGAL_FORMS:
        words.pop()
    return " ".join(words)[:200]


def slugify(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "organisation"


def country_name(code: str | None) -> str:
    country = pycountry.countries.get(alpha_2=code) if code else None
    return country.name if country else (code or "")


def country_choices() -> list[tuple[str, str]]:
    return sorted(((c.alpha_2, c.name) for c in pycountry.countries), key=lambda item: item[1])


def get_organisation_by_slug(slug: str) -> Organisation | None:
    return db.session.scalar(sa.select(Organisation).where(Organisation.slug == slug))


@dataclass
class OrganisationData:
    name: str
    country: str
    website: str | None = None
    member: bool = False
    slug: str | None = None


def _check_organisation(data: OrganisationData, existing: Organisation | None = None) -> tuple[str, str]:
    name = " ".join(data.name.split())
    if not name:
        raise AccountError("An organisation needs a name.")
    if pycountry.countries.get(alpha_2=data.country.upper()) is None:
        raise AccountError(f"{data.country!r} is not an ISO 3166 country code.")
    if data.website and urlsplit(data.website).scheme.lower() not in ("http", "https"):
        raise AccountError("The website must be an http:// or https:// address.")
    key = organisation_name_key(name)
    clash = db.session.scalar(sa.select(Organisation).where(Organisation.name_key == key))
    if clash is not None and clash is not existing:
        raise AccountError(f"{clash.name} is already registered.")
    slug = slugify(data.slug or name)
    if slug in _RESERVED_SLUGS:
        if data.slug:
            raise AccountError(f"The address {slug!r} is reserved.")
        slug = _free_slug(slug)
    clash = get_organisation_by_slug(slug)
    if clash is not None and clash is not existing:
        if data.slug:
            raise AccountError(f"The address {slug!r} is taken by {clash.name}.")
        slug = _free_slug(slug)
    return name, slug


def _free_slug(base: str) -> str:
    n = 2
    while get_organisation_by_slug(f"{base[:75]}-{n}") is not None:
        n += 1
    return f"{base[:75]}-{n}"


def create_organisation(data: OrganisationData) -> Organisation:
    name, slug = _check_organisation(data)
    org = Organisation(
        name=name,
        name_key=organisation_name_key(name),
        slug=slug,
        country=data.country.upper(),
        website=data.website or None,
        member=data.member,
    )
    db.session.add(org)
    db.session.flush()
    audit.record("organisation.create", org, f"Created organisation {org.name}", member=org.member)
    return org


def update_organisation(org: Organisation, data: OrganisationData) -> Organisation:
    name, slug = _check_organisation(data, existing=org)
    before = {"name": org.name, "slug": org.slug, "country": org.country, "member": org.member}
    org.name, org.name_key, org.slug = name, organisation_name_key(name), slug
    org.country, org.website, org.member = data.country.upper(), data.website or None, data.member
    db.session.flush()
    audit.record("organisation.update", org, f"Updated organisation {org.name}", before=before)
    return org


# --- users -------------------------------------------------------------------


def normalise_email(email: str) -> str:
    return email.strip().lower()


def get_user_by_email(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == normalise_email(email)))


def _check_role(role: str, organisation: Organisation | None) -> Role:
    try:
        parsed = Role(role)
    except ValueError:
        raise AccountError(f"Unknown role {role!r}; use admin, coordinator or member.") from None
    if parsed is Role.MEMBER and organisation is None:
        raise AccountError("A member user represents an organisation: choose one.")
    return parsed


def create_user(
    email: str,
    name: str,
    role: str,
    organisation: Organisation | None = None,
    password: str | None = None,
) -> User:
    """Create an account; without a password it can only be entered via an invitation link."""
    email = normalise_email(email)
    if "\r" in email or "\n" in email or "@" not in email:
        raise AccountError("Enter a valid email address.")
    parsed = _check_role(role, organisation)
    if get_user_by_email(email) is not None:
        raise AccountError(f"There is already an account for {email}.")
    user = User(
        email=email,
        name=" ".join(name.split()) or email,
        role=parsed.value,
        organisation=organisation if parsed is Role.MEMBER else None,
    )
    if password is not None:
        set_password(user, password)
    db.session.add(user)
    db.session.flush()
    audit.record("user.create", user, f"Created {parsed.value} {email}", role=parsed.value)
    return user


def update_user(user: User, *, name: str, role: str, organisation: Organisation | None, active: bool) -> User:
    parsed = _check_role(role, organisation)
    before = {"role": user.role, "active": user.active, "organisation_id": user.organisation_id}
    losing_an_admin = user.role == Role.ADMIN and user.active and (parsed is not Role.ADMIN or not active)
    if losing_an_admin and _active_admins() <= 1:
        raise AccountError("This is the last active admin: make another admin first.")
    user.name = " ".join(name.split()) or user.email
    user.role = parsed.value
    user.organisation = organisation if parsed is Role.MEMBER else None
    if (user.active and not active) or before["role"] != parsed.value:
        # A new role signs in again: a promoted member must set up two-factor sign-in first.
        user.session_token = new_session_token()
    user.active = active
    if parsed not in (Role.ADMIN, Role.COORDINATOR) and user.totp_secret:
        from campaign.auth import twofactor

        twofactor.disable(user)
    db.session.flush()
    audit.record("user.update", user, f"Updated {user.email}", before=before)
    return user


def _active_admins() -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(User).where(User.role == Role.ADMIN.value, User.active.is_(True))
    )


def set_password(user: User, password: str) -> None:
    problem = password_problem(password)
    if problem:
        raise AccountError(problem)
    user.password_hash = hash_password(password)
    user.session_token = new_session_token()


def authenticate(email: str, password: str) -> User | None:
    """The active user with these credentials, or None (the same cost either way)."""
    user = get_user_by_email(email) if "@" in email else None
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.active:
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def record_login(user: User) -> None:
    user.last_login_at = utcnow()
    if user.role in (Role.ADMIN, Role.COORDINATOR):
        audit.record("user.login", user, f"{user.email} signed in", actor=user)


# --- password links ----------------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="password-link")


_LINK_MAX_AGE = {"reset": "PASSWORD_RESET_MAX_AGE", "invite": "INVITATION_MAX_AGE"}


def password_token(user: User, kind: str = "reset") -> str:
    """A link token that dies when the password (hence the session token) changes.

    ``kind`` is ``reset`` (valid an hour by default) or ``invite`` (a week).
    """
    return _serializer().dumps({"u": user.id, "s": user.session_token, "k": kind})


def user_from_password_token(token: str) -> User | None:
    try:
        data = _serializer().loads(token)
        if not isinstance(data, dict) or data.get("k") not in _LINK_MAX_AGE:
            return None
        _serializer().loads(token, max_age=current_app.config[_LINK_MAX_AGE[data["k"]]])
    except (SignatureExpired, BadSignature):
        return None
    user = db.session.get(User, data.get("u"))
    if user is None or not user.active or user.session_token != data.get("s"):
        return None
    return user


PASSWORD_LINK_JOB = "auth.password_link"  # noqa: S105 - a job kind, not a password


def request_password_link(email: str) -> Job:
    """Schedule the job that mails a reset link if ``email`` has an active account; the caller commits.

    The request does the same work for every address, known or not, and never runs
    the job itself (see ``dispatch_password_link``): neither its answer nor its timing
    tells whether an account exists.
    """
    email = normalise_email(email)
    return queue.schedule(
        PASSWORD_LINK_JOB, {"email": email}, description=f"Password link for {email} (sent if it has an account)"
    )


def dispatch_password_link(row: Job) -> None:
    """Hand the committed job to Redis; in inline mode the polling ``flask worker`` runs it, not the request."""
    if queue.mode() == "redis":
        queue.dispatch(row)


def send_invitation(user: User) -> None:
    """Email ``user`` a link to choose a password (valid ``INVITATION_MAX_AGE``); commits."""
    from campaign.mailings.notices import external_url, send_template

    link = external_url("auth.reset_password", token=password_token(user, "invite"))
    send_template(user.email, "Your Demarche account", "invitation", user=user, link=link)
