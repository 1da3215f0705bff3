"""Alembic's entry point for the case store's migrations; run through :func:`lesionlens.cases.db.migrate`,
which passes an open connection (no alembic.ini: the database URL is the store's)."""

from alembic import context

from lesionlens.cases.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
