"""Delivery's state: conversations, published messages (dedupe and transcripts), deleted files.

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.adapters.migrations.tables import create_conversations_v1

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_conversations_v1()
    # At most one message per file, ever: the primary key, held from before the produce until after
    # the broker's ack (services.delivery.handlers).
    op.execute("""
        CREATE TABLE messages (
            file_id text PRIMARY KEY,
            seq bigserial NOT NULL,
            account_id text NOT NULL,
            conversation_id text NOT NULL,
            consumer_id text NOT NULL,
            content_type text NOT NULL,
            size_bytes bigint NOT NULL,
            message jsonb NOT NULL,
            published_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute("CREATE INDEX messages_by_conversation ON messages (conversation_id, seq)")
    # The receipt of a deleted file: enough to answer 410 to its account and never publish it again.
    op.execute("""
        CREATE TABLE deleted_files (
            file_id text PRIMARY KEY,
            account_id text NOT NULL,
            reason text NOT NULL,
            deleted_at timestamptz NOT NULL DEFAULT now()
        )""")
