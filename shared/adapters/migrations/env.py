"""Alembic environment shared by every service: the service's schema, its own version table, and
an advisory lock so instances starting together migrate one after another."""

from alembic import context
from sqlalchemy import create_engine, pool, text

config = context.config
schema = config.attributes["schema"]
engine = create_engine(config.attributes["url"], poolclass=pool.NullPool)

with engine.connect() as connection:
    connection.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": f"fileshare-migrate-{schema}"})
    try:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.execute(text(f'SET search_path TO "{schema}"'))
        connection.commit()
        context.configure(connection=connection, version_table_schema=schema, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.rollback()  # a failed migration left its transaction aborted: unlock outside it
        connection.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": f"fileshare-migrate-{schema}"})
        connection.commit()
