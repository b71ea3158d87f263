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
