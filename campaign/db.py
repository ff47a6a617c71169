"""Database foundations: the declarative base, naming convention, column types, engine set-up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, request
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry
from werkzeug.routing import IntegerConverter

F = TypeVar("F", bound=Callable[..., Any])

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL stores ``timestamptz``; SQLite keeps no zone, so values are stored
    as naive UTC and come back aware.  Naive values are refused on the way in.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    registry = registry(
        metadata=sa.MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


#: Deeper pages are empty anyway; a larger number would overflow the database's OFFSET.
MAX_PAGE = 100_000


def page_arg() -> int:
    """The ``page`` query argument of a list page, between 1 and ``MAX_PAGE``."""
    return min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)


def configure_engine_options(app: Flask) -> None:
    url = sa.engine.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        options.update(pool_size=5, max_overflow=10, pool_recycle=1800)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", options)


def install_engine_hooks(engine: sa.Engine) -> None:
    """On SQLite: foreign keys on, WAL, and transactions SQLAlchemy controls.

    pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; the
    recipe from SQLAlchemy's SQLite notes hands BEGIN to SQLAlchemy instead, which
    also lets the sending code issue ``BEGIN IMMEDIATE`` when it claims work.
    """
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get(IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


#: Execution option: on SQLite, begin the transaction with ``BEGIN IMMEDIATE`` (take the write lock first).
IMMEDIATE = "demarche_begin_immediate"


def begin_write(session: Any) -> None:
    """Start the session's next transaction as a writer.

    On SQLite, ``BEGIN IMMEDIATE``: a transaction that reads and then writes could
    otherwise fail with "database is locked" when another writer came in between.
    Other databases lock per row and need nothing.  Call it with no transaction open.
    """
    if isinstance(session, sa.orm.scoped_session):
        session = session()
    if session.in_transaction():
        raise RuntimeError("commit or roll back before beginning a write transaction")
    session.connection(execution_options={IMMEDIATE: True})


def writes_on_post(view: F) -> F:
    """For a view whose POST reads, then writes (a public form's, a member's): on SQLite the
    POST's transaction begins as a writer (``become_writer``), so that simultaneous posts wait
    for each other instead of failing with "database is locked"; nothing on other databases."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if request.method == "POST":
            from campaign.extensions import db  # it imports this module

            become_writer(db.session)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def become_writer(session: Any) -> None:
    """On SQLite, end the request's reads so far (the sign-in check's) and ``begin_write``.

    For a request that reads and then writes, such as a public form's POST.  Nothing at all
    on other databases: no statement, no round trip, on paths where both are counted.
    """
    if isinstance(session, sa.orm.scoped_session):
        session = session()
    if session.get_bind().dialect.name != "sqlite":
        return
    session.commit()
    begin_write(session)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write ``UTCDateTime`` columns into migrations as plain ``sa.DateTime(timezone=True)``."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


class IdConverter(IntegerConverter):
    """``<id:name>``: a row id (INTEGER column: 1 to 2**31 - 1); anything else is a 404, not an overflow."""

    def __init__(self, map: Any) -> None:
        super().__init__(map, min=1, max=2**31 - 1)
