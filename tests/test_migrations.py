"""The migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from campaign import create_app
from campaign.extensions import db
from tests.conftest import reset_schema, settings_for_tests


def _differences(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_migrations_match_models_on_sqlite(tmp_path):
    app = create_app(settings_for_tests(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}"))
    reset_schema(app)  # `flask db upgrade` on an empty database
    try:
        assert _differences(app) == []
    finally:
        with app.app_context():
            db.engine.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgresql"), reason="DATABASE_URL is not PostgreSQL"
)
def test_migrations_match_models_on_postgresql(app):
    # The session's app fixture dropped everything and upgraded from nothing.
    assert _differences(app) == []
    with app.app_context():
        assert db.engine.dialect.name == "postgresql"


def test_downgrade_to_base_and_back(tmp_path):
    import flask_migrate

    app = create_app(settings_for_tests(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'cycle.db'}"))
    reset_schema(app)
    try:
        with app.app_context():
            flask_migrate.downgrade(revision="base")
            assert db.inspect(db.engine).get_table_names() == ["alembic_version"]
            flask_migrate.upgrade()
        assert _differences(app) == []
    finally:
        with app.app_context():
            db.engine.dispose()
