"""Tables that several services keep in their own schema, as their first migrations created them.

Frozen: a later change to one of these tables is a new migration in each service that has it,
never an edit here (these functions are part of migration history)."""

from alembic import op


def create_account_settings_v1() -> None:
    op.execute("""
        CREATE TABLE account_settings (
            account_id text PRIMARY KEY,
            document jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )""")


def create_conversations_v1() -> None:
    op.execute("""
        CREATE TABLE conversations (
            conversation_id text PRIMARY KEY,
            account_id text NOT NULL,
            consumer_id text NOT NULL,
            channel text,
            authenticated boolean NOT NULL DEFAULT false,
            open boolean NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )""")


def add_event_at_v2(*tables: str) -> None:
    """The occurred_at of the event a row was last folded from: an older event delivered again (a
    re-read partition, an at-least-once redelivery) must not move the row back in time."""
    for table in tables:
        op.execute(f"ALTER TABLE {table} ADD COLUMN event_at timestamptz")
