"""organisation keys drop legal forms at the end and apostrophes

Revision ID: 82ee5fa2813a
Revises: 3c1d2e9b7a40
Create Date: 2026-11-27 21:27:42.201518

``organisation_name_key`` now drops legal forms of seven languages from the end of a name only
(no longer anywhere), joins spaced initials ("e. V.") and drops apostrophes.  This recomputes
the stored keys, ``organisations.name_key`` and ``signatures.organisation_key``, from the
names; the downgrade recomputes them with the previous rule.  Both rules are copied here, so
later changes to the app's rule cannot change what this revision does.

Keys are unique (an organisation's; a letter's signatures').  When two rows fold to the same
key, a row whose key does not change keeps it, then the older row (lower id) gets it; the other
row keeps its key as it was (or, if that is taken too, the key with `` #<id>`` appended, which
no name folds to), and a warning names both.  Nothing is deleted or merged: the secretariat
merges such duplicates by hand.
"""
import logging
import re
import unicodedata

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '82ee5fa2813a'
down_revision = '3c1d2e9b7a40'
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

_NEW_LEGAL_FORMS = frozenset({
    "association", "inc", "ltd", "limited", "llc", "plc", "cic", "cio", "ngo",
    "asbl", "aisbl", "ong", "sarl", "sas", "sa",
    "ac", "sl",
    "ltda", "lda",
    "ev", "gev", "gmbh", "ggmbh", "gemeinnutzige", "gemeinnutziger", "gemeinnutziges",
    "onlus", "aps", "odv", "ets",
    "vzw", "ivzw", "bv", "nv",
})
_NEW_ARTICLES = frozenset({"the"})
_NEW_APOSTROPHES = re.compile("['\u2018\u2019\u02bc`]")
_NEW_INITIALS = re.compile(r"\b(\w)\.(?:\s+(?=\w(?:\.|$)))?(?=\w\b)")

_OLD_LEGAL_SUFFIXES = {"inc", "ltd", "llc", "ev", "asbl", "gmbh", "ngo", "association", "the"}


def new_key(name):
    """``campaign.auth.services.organisation_name_key`` as of this revision."""
    text = unicodedata.normalize("NFKD", name.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _NEW_APOSTROPHES.sub("", text)
    text = _NEW_INITIALS.sub(r"\1", text)
    words = re.sub(r"[^\w]+", " ", text).split()
    words = [w for w in words if w not in _NEW_ARTICLES] or words
    while len(words) > 1 and words[-1] in _NEW_LEGAL_FORMS:
        words.pop()
    return " ".join(words)[:200]


def old_key(name):
    """``organisation_name_key`` as of revision 3c1d2e9b7a40."""
    text = unicodedata.normalize("NFKD", name.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"\b(\w)\.(?=\w\b)", r"\1", text)
    words = re.sub(r"[^\w]+", " ", text).split()
    kept = [w for w in words if w not in _OLD_LEGAL_SUFFIXES] or words
    return " ".join(kept)[:200]


organisations = sa.table(
    "organisations", sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("name_key", sa.String)
)
signatures = sa.table(
    "signatures",
    sa.column("id", sa.Integer),
    sa.column("letter_id", sa.Integer),
    sa.column("organisation_name", sa.String),
    sa.column("organisation_key", sa.String),
)


def assign(rows, fold, what):
    """``{id: key}`` for the rows whose key changes; ``rows`` are ``(id, scope, name, key)``.

    Keys stay unique within a scope: unchanged keys first, then the rest by id; a row whose
    new key is taken keeps its own, or its own with `` #<id>``.
    """
    rows = sorted(rows, key=lambda row: row[0])
    wanted = {row[0]: fold(row[2]) for row in rows}
    holder = {(scope, key): id_ for id_, scope, _, key in rows if wanted[id_] == key}
    changes = {}
    for id_, scope, name, key in rows:
        if wanted[id_] == key:
            continue
        final = wanted[id_]
        if (scope, final) in holder:
            other = holder[(scope, final)]
            final = key if (scope, key) not in holder else f"{key[:180]} #{id_}"
            logger.warning(
                "%s %s (%r) now folds to %r like %s %s; it keeps the key %r",
                what, id_, name, wanted[id_], what, other, final,
            )
        holder[(scope, final)] = id_
        if final != key:
            changes[id_] = final
    return changes


def recompute(fold):
    bind = op.get_bind()
    for table, scope, name, key, what in (
        (organisations, None, organisations.c.name, organisations.c.name_key, "organisation"),
        (signatures, signatures.c.letter_id, signatures.c.organisation_name, signatures.c.organisation_key,
         "signature"),
    ):
        columns = [table.c.id, scope if scope is not None else sa.null(), name, key]
        changes = assign(bind.execute(sa.select(*columns)).all(), fold, what)
        if not changes:
            continue
        # Through a placeholder no name folds to, so no row ever holds a key another still has.
        update = sa.update(table).where(table.c.id == sa.bindparam("row_id")).values({key: sa.bindparam("new")})
        bind.execute(update, [{"row_id": id_, "new": f"~{id_}"} for id_ in changes])
        bind.execute(update, [{"row_id": id_, "new": new} for id_, new in changes.items()])


def upgrade():
    recompute(new_key)


def downgrade():
    recompute(old_key)
