"""Migration 82ee5fa2813a recomputes the stored organisation keys, on SQLite and PostgreSQL.

Keys that become equal are never merged or deleted: the row that keeps its key is the one whose
key does not change, else the older one; the other keeps its key as it was, with a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask

from campaign.auth.models import Organisation
from campaign.extensions import db
from campaign.signatures.models import Signature
from tests.letters.publishing import publish

BEFORE, THIS = "3c1d2e9b7a40", "82ee5fa2813a"

#: Organisations in id order: name, key under the previous rule, key after the migration.
ORGANISATIONS = [
    ("Réseau Océan Propre", "reseau ocean propre", "reseau ocean propre"),
    ("Women's Rights Network e. V.", "women s rights network e v", "womens rights network"),
    ("Association for Peace", "for peace", "association for peace"),
    ("Clean Rivers Ltda", "clean rivers ltda", "clean rivers"),
    # folds like the older "Clean Rivers Ltda": keeps its key
    ("Clean Rivers S.A.", "clean rivers sa", "clean rivers sa"),
    # folds like "Réseau Océan Propre", whose key does not change, though it is younger
    ("Réseau Océan Propre SARL", "reseau ocean propre sarl", "reseau ocean propre sarl"),
    ("Verte SARL", "verte sarl", "verte"),
    ("Association Verte Ltda", "verte ltda", "association verte"),
    # its new key is taken, and so is its old one ("Verte SARL" took it): " #<id>" is added
    ("Association Verte", "verte", "verte #{id}"),
]

#: Signatures of one letter (and the last two of another), the same way.
SIGNATURES = [
    ("Green Future gGmbH", "green future ggmbh", "green future"),
    ("Green Future Limited", "green future limited", "green future limited"),
    ("The Ocean Trust", "ocean trust", "ocean trust"),
    ("Ocean Trust plc", "ocean trust plc", "ocean trust plc"),
]
ELSEWHERE = [
    ("Green Future Limited", "green future limited", "green future"),
    ("Ocean Trust plc", "ocean trust plc", "ocean trust"),
]


def _on_postgresql() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith("postgresql")


@pytest.fixture
def own_app(separate_app: Callable[..., Flask]) -> Iterator[Flask]:
    """An app migrated to head on a database of its own: a SQLite file, or a PostgreSQL schema."""
    if not _on_postgresql():
        yield separate_app()
        return
    url, schema = os.environ["DATABASE_URL"], f"organisation_keys_{os.getpid()}"
    server = sa.create_engine(url)
    with server.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"'))
    try:
        yield separate_app(DATABASE_URL=f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    finally:
        with server.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        server.dispose()


def _add(letter_id: int, rows: list[tuple[str, str, str]]) -> list[int]:
    signatures = [
        Signature(
            letter_id=letter_id,
            organisation_name=name,
            organisation_key=old,
            country="FR",
            signer_name="Signer",
            signer_email=f"signer{n}@example.org",
            status="approved",
            source="coordinator",
        )
        for n, (name, old, _) in enumerate(rows)
    ]
    db.session.add_all(signatures)
    db.session.flush()
    return [signature.id for signature in signatures]


def _keys(model: type[db.Model], column: sa.Column, ids: list[int]) -> list[str]:
    found = dict(db.session.execute(sa.select(model.id, column).where(model.id.in_(ids))).all())
    return [found[id_] for id_ in ids]


def test_keys_are_recomputed_and_collisions_keep_their_key(own_app, caplog):
    first, second = publish(own_app), publish(own_app)
    with own_app.app_context():
        assert db.engine.dialect.name == ("postgresql" if _on_postgresql() else "sqlite")
        flask_migrate.downgrade(revision=BEFORE)
        organisations = [
            Organisation(name=name, name_key=old, slug=f"organisation-{n}", country="FR")
            for n, (name, old, _) in enumerate(ORGANISATIONS)
        ]
        db.session.add_all(organisations)
        db.session.flush()
        org_ids = [org.id for org in organisations]
        signature_ids = _add(first.id, SIGNATURES) + _add(second.id, ELSEWHERE)
        db.session.commit()
        old = (
            _keys(Organisation, Organisation.name_key, org_ids),
            _keys(Signature, Signature.organisation_key, signature_ids),
        )

        db.session.close()  # no transaction, and no snapshot, outlives a migration
        with caplog.at_level(logging.WARNING):
            flask_migrate.upgrade()
        assert _keys(Organisation, Organisation.name_key, org_ids) == [
            new.format(id=id_) for (_, _, new), id_ in zip(ORGANISATIONS, org_ids, strict=True)
        ]
        assert _keys(Signature, Signature.organisation_key, signature_ids) == [
            new for *_, new in SIGNATURES + ELSEWHERE
        ]
        warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
        assert len(warnings) == 5
        assert (
            f"organisation {org_ids[4]} ('Clean Rivers S.A.') now folds to 'clean rivers' like organisation"
            in "".join(warnings)
        )

        db.session.close()
        flask_migrate.downgrade(revision=BEFORE)  # back to the previous rule's keys, exactly
        assert (
            _keys(Organisation, Organisation.name_key, org_ids),
            _keys(Signature, Signature.organisation_key, signature_ids),
        ) == old
        db.session.close()
        flask_migrate.upgrade()
        assert _keys(Organisation, Organisation.name_key, org_ids)[-1] == f"verte #{org_ids[-1]}"
