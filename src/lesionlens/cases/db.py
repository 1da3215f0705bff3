"""Where the case store lives: a database URL (SQLite by default, PostgreSQL at scale), its engine,
and its migrations.

``--db cases.sqlite`` (a path) is SQLite; ``--db postgresql+psycopg://user@host/name`` is
PostgreSQL; nothing else changes between them. SQLite runs in write-ahead-log mode with
synchronous (fsync'ed) commits, so an acknowledged case survives a crash of the server or of the
machine, and readers (the labelling page) never wait for the writer.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

# Alembic logs "setup plugin ..." and "Context impl SQLiteImpl." at INFO on import and on every
# start; only its warnings matter here (set before the import, which logs).
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import Engine, create_engine, event  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

SQLITE_BUSY_MS = 30_000  # a second process writing (the CLI while the server runs) waits, not fails


class StoreError(RuntimeError):
    """The case store cannot be opened or used as asked; the message says why."""


def database_url(db: str | Path) -> str:
    """A SQLAlchemy URL for ``db``: URLs pass through, anything else is a SQLite file path."""
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def redacted(url: str) -> str:
    """The URL without its password, for logs and manifests."""
    return make_url(url).render_as_string(hide_password=True)


def open_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).parent
            if not folder.is_dir():
                raise StoreError(f"{parsed.database}: its folder {folder} does not exist")
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    raise StoreError(f"{redacted(url)}: the case store supports SQLite (a file path) and PostgreSQL "
                     "(postgresql+psycopg://...) databases")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # fsync the log at each commit: durable, not just crash-safe
    cursor.execute("PRAGMA foreign_keys=ON")  # labels go with their case on erasure
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.close()


def _config(connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("lesionlens.cases") / "migrations"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema (creating it when empty); a no-op when it is there."""
    if current_revision(engine) == head_revision():
        return
    with engine.begin() as connection:
        command.upgrade(_config(connection), "head")


def now() -> datetime:
    """The time stamp of a stored row: UTC."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
