"""Upload's state: account settings (system of record), conversations, files (status, idempotency
keys as file ids, re-drive).

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.adapters.migrations.tables import create_account_settings_v1, create_conversations_v1

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_account_settings_v1()
    create_conversations_v1()
    # One row per file id: an Idempotency-Key maps to a file id, so the primary key is what makes two
    # requests with one key (on any instance) create one file. A deleted file's row keeps only its
    # receipt columns (file_id, account_id, status, reason, deletion, updated_at).
    op.execute("""
        CREATE TABLE files (
            file_id text PRIMARY KEY,
            account_id text NOT NULL,
            conversation_id text,
            consumer_id text,
            status text NOT NULL,
            reason text,
            detail text,
            content_type text,
            size_bytes bigint,
            width integer,
            height integer,
            caption text,
            sender_id text,
            request_id text,
            history text[] NOT NULL DEFAULT '{}',
            rejection_reason text,
            rejection_detail text,
            deletion text,
            described_by text,
            updated_at timestamptz,
            pending_event jsonb,
            moved_at timestamptz NOT NULL DEFAULT now(),
            redrives integer NOT NULL DEFAULT 0
        )""")
    op.execute("CREATE INDEX files_unfinished ON files (moved_at) WHERE pending_event IS NOT NULL")
