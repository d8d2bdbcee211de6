"""Alembic environment: runs on the connection handed in by ``db.migrate.upgrade``."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table="exportflow_alembic_version")
with context.begin_transaction():
    context.run_migrations()
