"""Public letter pages kept in Redis, so anonymous readers are answered without Flask or the database.

The rule: a kept page is replayed only while rendering it again would give the same response.

- Only anonymous requests are answered or kept: GET or HEAD, no session cookie and no
  remember cookie, so no signed-in user, no flashed message and no CSRF token on the page.
- An entry is the whole response the application gave (status 200, headers as every
  hook left them, body) for one letter slug, language and order (``?lang``, ``?by``),
  offered by the view (``offer``).  It carries the *versions* it was rendered under:
  the letter's and the site's, each a random token in Redis.  A commit that changes
  anything the page shows gives the letter (its signatures, revisions, translations)
  or the whole site (coalition settings, meetings, any bulk statement on those tables)
  a new token (the session hooks below), so older entries stop matching.  A statement
  that changes nothing a page shows says so (``UNSEEN``) and renews nothing: a sign-on
  surge must not empty the cache of the letter being signed.
- The versions are read before the request reaches the application, so before its
  first query; a missing one is minted after rendering and only if nobody set one
  meanwhile.  A page is therefore never kept under a version newer than the data it was
  rendered from, and as tokens are random, a version Redis lost is never reissued.
- An entry expires at the letter's signature deadline (its status and the sign button
  change then, with no commit to announce it) and after ``PAGE_CACHE_SECONDS`` at most.
  That bound covers what no hook sees: a change made outside the application, or a
  commit whose new version was lost because Redis was briefly unreachable.  Embargoes
  need nothing more: an embargoed letter is a 404, never kept, and setting an embargo
  changes the letter.
- Without Redis, with ``PAGE_CACHE_SECONDS = 0`` or when Redis fails, every request is
  rendered.  Versions change whenever Redis is configured, so a process with the cache
  off still keeps the entries of the others honest.

The middleware wraps the whole WSGI application, so a replayed page skips every hook:
it is the response those hooks produced when it was rendered.  Redis holds nothing here
that cannot be rebuilt from the database (DESIGN.md).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, has_app_context, request
from redis import Redis
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from werkzeug.datastructures import MultiDict
from werkzeug.http import remove_entity_headers
from werkzeug.wrappers import Request

log = logging.getLogger(__name__)

PREFIX = "demarche:pagecache:"
SITE_KEY = PREFIX + "site"
#: Versions outlive any entry by far; one that expires is simply minted again.
VERSION_TTL = 7 * 24 * 3600
#: Where the middleware leaves its lookup for the view, and the view its offer.
LOOKUP_KEY = "demarche.pagecache.lookup"
OFFER_KEY = "demarche.pagecache.offer"
#: The public letter page's path: ``/letters/<slug>``, a slug without a slash.
_LETTER_PATH = "/letters/"
_PENDING = "pagecache_pending"
#: Execution option of a bulk statement that changes no page (a sign-on awaiting its email
#: confirmation: the public list shows approved signatures only), so it renews no version.
UNSEEN = "demarche_pagecache_unseen"

StartResponse = Callable[..., Any]


def page_variant(args: MultiDict[str, str]) -> tuple[str | None, str]:
    """``(language, order)`` a letter page request asks for; the view and the cache read it alike."""
    return args.get("lang") or None, "name" if args.get("by") == "name" else "country"


def offer(etag: str, valid_until: float | None) -> None:
    """From the view: the page it is answering may be kept (until ``valid_until``, a Unix time)."""
    if LOOKUP_KEY in request.environ:
        request.environ[OFFER_KEY] = (etag, valid_until)


@dataclass(frozen=True, slots=True)
class Entry:
    """A response as the application gave it: its ETag (for 304s), headers and body."""

    etag: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a lookup found: a replayable entry, else what ``store`` needs to keep the page rendered."""

    slug: str
    page_key: str
    letter_version: bytes | None
    site_version: bytes | None
    hit: Entry | None


def _letter_key(slug: str) -> str:
    return f"{PREFIX}letter:{slug}"


def lookup(redis: Any, slug: str, language: str | None, by: str) -> Lookup:
    """Both versions and the entry in one round trip; the entry counts only if it matches them."""
    page_key = f"{PREFIX}page:{slug}:{language or '-'}:{by}"
    site, letter, raw = redis.mget(SITE_KEY, _letter_key(slug), page_key)
    hit = None
    if raw is not None and letter is not None and site is not None:
        head, _, body = raw.partition(b"\n")
        meta = json.loads(head)
        if meta["l"] == letter.decode() and meta["s"] == site.decode() and meta["u"] > time.time():
            hit = Entry(meta["e"], [tuple(pair) for pair in meta["h"]], body)
    return Lookup(slug, page_key, letter, site, hit)


def store(redis: Any, found: Lookup, entry: Entry, seconds: int, valid_until: float | None) -> bool:
    """Keep a page rendered after ``found`` was looked up, under the versions read then.

    A version that was missing is minted now, only if still missing: if a commit set one
    meanwhile, the page may predate that commit and is not kept.
    """
    until = time.time() + seconds if valid_until is None else min(time.time() + seconds, valid_until)
    if until <= time.time():
        return False
    versions = [found.letter_version, found.site_version]
    missing = [(i, key) for i, key in enumerate((_letter_key(found.slug), SITE_KEY)) if versions[i] is None]
    if missing:
        tokens = [secrets.token_hex(8) for _ in missing]
        pipe = redis.pipeline()
        for (_, key), token in zip(missing, tokens, strict=True):
            pipe.set(key, token, nx=True, ex=VERSION_TTL)
        if not all(pipe.execute()):
            return False
        for (i, _), token in zip(missing, tokens, strict=True):
            versions[i] = token.encode()
    meta = {"l": versions[0].decode(), "s": versions[1].decode(), "e": entry.etag, "u": until, "h": entry.headers}
    redis.set(found.page_key, json.dumps(meta).encode() + b"\n" + entry.body, ex=int(until - time.time()) + 1)
    return True


_last_warning = [float("-inf")]


def _warn(what: str, exc: Exception) -> None:
    """Log a Redis failure at most once a minute per process: every page request would otherwise."""
    if time.monotonic() - _last_warning[0] >= 60:
        _last_warning[0] = time.monotonic()
        log.warning("page cache: %s: %s", what, exc)


class PageCache:
    """WSGI middleware: replays kept letter pages, and keeps those the view offers."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.app = app
        self._local = threading.local()

    def _redis(self) -> Any:
        """This thread's own connection from the application's pool, held for good.

        The shared client takes a connection from its pool and checks it on every
        command, a third of what a replayed page costs; a thread needs only one.
        """
        client = getattr(self._local, "client", None)
        if client is None:
            pool = self.app.extensions["redis"].connection_pool
            client = self._local.client = Redis(connection_pool=pool, single_connection_client=True)
        return client

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        seconds = self.app.config.get("PAGE_CACHE_SECONDS", 0)
        if (
            environ.get("REQUEST_METHOD") not in ("GET", "HEAD")
            or not path.startswith(_LETTER_PATH)
            or "/" in path[len(_LETTER_PATH) :]
            or self.app.extensions.get("redis") is None
            or seconds <= 0
        ):
            return self.wsgi_app(environ, start_response)
        incoming = Request(environ, populate_request=False)
        language, by = page_variant(incoming.args)
        slug = incoming.path[len(_LETTER_PATH) :]
        anonymous = not environ.get("HTTP_COOKIE") or self._anonymous(incoming.cookies)
        if not slug or not anonymous or (language and language not in _languages()):
            return self.wsgi_app(environ, start_response)  # not a page the view would answer with 200
        try:
            redis = self._redis()
            found = lookup(redis, slug, language, by)
        except Exception as exc:  # noqa: BLE001 - Redis down or an unreadable entry: render instead
            _warn("lookup failed, rendering instead", exc)
            return self.wsgi_app(environ, start_response)
        if found.hit is not None:
            return self._replay(found.hit, incoming, start_response)
        environ[LOOKUP_KEY] = found
        return self._render(environ, start_response, found, redis, seconds)

    def _anonymous(self, cookies: Mapping[str, str]) -> bool:
        config = self.app.config
        return config["SESSION_COOKIE_NAME"] not in cookies and (
            config.get("REMEMBER_COOKIE_NAME", "remember_token") not in cookies
        )

    @staticmethod
    def _replay(entry: Entry, incoming: Request, start_response: StartResponse) -> Iterable[bytes]:
        """The kept response; 304 (as the view answers it) when the browser holds its ETag."""
        if entry.etag in incoming.if_none_match:
            headers = list(entry.headers)
            remove_entity_headers(headers)
            start_response("304 NOT MODIFIED", headers)
            return []
        start_response("200 OK", list(entry.headers))
        return [] if incoming.method == "HEAD" else [entry.body]

    def _render(
        self, environ: dict[str, Any], start_response: StartResponse, found: Lookup, redis: Any, seconds: int
    ) -> Iterable[bytes]:
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = [status, headers]
            return start_response(status, headers, exc_info)

        iterable = self.wsgi_app(environ, capture)
        offered = environ.get(OFFER_KEY)
        if offered is None or environ["REQUEST_METHOD"] != "GET":
            return iterable
        try:
            body = b"".join(iterable)
        finally:
            if hasattr(iterable, "close"):
                iterable.close()
        status, headers = captured
        if status.startswith("200 ") and not any(name.lower() == "set-cookie" for name, _ in headers):
            etag, valid_until = offered
            try:
                store(redis, found, Entry(etag, list(headers), body), seconds, valid_until)
            except Exception as exc:  # noqa: BLE001 - the page is answered; keeping it is optional
                _warn(f"could not keep {found.page_key}", exc)
        return [body]


# --- versions: renewed after every commit that touches what the page shows ------------------


def bump(slugs: set[str], site: bool = False) -> None:
    """Give these letters (and the site) new versions: the pages kept under the old ones are dead."""
    redis = current_app.extensions.get("redis") if has_app_context() else None
    if redis is None or not (slugs or site):
        return
    keys = [_letter_key(slug) for slug in slugs] + ([SITE_KEY] if site else [])
    try:
        pipe = redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, secrets.token_hex(8), ex=VERSION_TTL)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - the commit stands; entries expire within PAGE_CACHE_SECONDS
        log.warning("page cache: could not renew versions %s: %s", keys, exc)


@cache
def _languages() -> frozenset[str]:
    from campaign.letters.models import UN_LANGUAGES  # here: the letters package imports the whole app

    return frozenset(UN_LANGUAGES)


@cache
def _watched() -> dict[type, str]:
    """The classes whose rows the page shows, each with what names its letter (its slug; "": every letter)."""
    # Imported when first needed: these packages import much of the application.
    from campaign.admin.models import CoalitionSettings
    from campaign.letters.models import Letter, Meeting, Revision, Translation
    from campaign.signatures.models import Signature

    return {
        Letter: "slug",
        Revision: "letter_id",
        Translation: "letter_id",
        Signature: "letter_id",
        Meeting: "",
        CoalitionSettings: "",
    }


def _pending(session: Session) -> dict[str, Any]:
    return session.info.setdefault(_PENDING, {"slugs": set(), "site": False})


def _after_flush(session: Session, _context: UOWTransaction) -> None:
    """Note the letters (or the site) whose page the flushed rows change."""
    from campaign.letters.models import Letter

    watched = _watched()
    letter_ids: set[int] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        attribute = watched.get(type(obj))
        if attribute is None:
            continue
        pending = _pending(session)
        if not attribute:  # settings and meetings: on every page
            pending["site"] = True
            continue
        state = sa.inspect(obj)
        # A deleted row cannot be loaded: what it does not hold already is unknown, so the whole site.
        known = attribute in state.dict or obj not in session.deleted
        value = getattr(obj, attribute) if known else None
        if value is None:
            pending["site"] = True
        elif isinstance(obj, Letter):
            pending["slugs"].update({value, *state.attrs.slug.history.deleted})
        else:
            letter_ids.add(value)
    slugs = _pending(session)["slugs"] if letter_ids else set()
    for letter_id in list(letter_ids):  # most letters are loaded already: no query for those
        loaded = session.identity_map.get(session.identity_key(Letter, letter_id))
        if loaded is not None and "slug" in sa.inspect(loaded).dict:
            slugs.add(loaded.slug)
            letter_ids.discard(letter_id)
    if letter_ids:
        slugs.update(session.connection().execute(sa.select(Letter.slug).where(Letter.id.in_(letter_ids))).scalars())


def _on_execute(state: ORMExecuteState) -> None:
    """A bulk INSERT, UPDATE or DELETE on those tables: which letters is unknown, so the whole site."""
    if (state.is_insert or state.is_update or state.is_delete) and not state.execution_options.get(UNSEEN):
        mapper = state.bind_mapper
        if mapper is not None and mapper.class_ in _watched():
            _pending(state.session)["site"] = True


def _after_commit(session: Session) -> None:
    if session.get_nested_transaction() is not None:  # a savepoint: the outer transaction may yet roll back
        return
    pending = session.info.pop(_PENDING, None)
    if pending:
        bump(pending["slugs"], pending["site"])


def _after_rollback(session: Session, previous: Any) -> None:
    if previous.parent is None:  # the whole transaction: nothing it flushed happened
        session.info.pop(_PENDING, None)


_HOOKS = (
    ("after_flush", _after_flush),
    ("do_orm_execute", _on_execute),
    ("after_commit", _after_commit),
    ("after_soft_rollback", _after_rollback),
)


def install(app: Flask) -> None:
    """Wrap the WSGI application and hook every session (once per process).

    Wrapped around what ``create_app`` built so far: a replayed page passes none of it,
    being the response it gave.
    """
    app.wsgi_app = PageCache(app.wsgi_app, app)  # type: ignore[method-assign]
    for name, hook in _HOOKS:
        if not sa.event.contains(Session, name, hook):
            sa.event.listen(Session, name, hook)
