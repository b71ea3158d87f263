"""Retention's state: account settings (retention), the file index with expiry times, receipts,
forget requests.

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.adapters.migrations.tables import create_account_settings_v1

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_account_settings_v1()
    # One row per stored file, from file.uploaded; the expiry sweep is an indexed range scan.
    op.execute("""
        CREATE TABLE files (
            file_id text PRIMARY KEY,
            account_id text NOT NULL,
            consumer_id text NOT NULL,
            conversation_id text NOT NULL,
            size_bytes bigint NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        )""")
    op.execute("CREATE INDEX files_by_expiry ON files (expires_at)")
    op.execute("CREATE INDEX files_by_consumer ON files (account_id, consumer_id)")
    # One receipt per deleted file, ever: the primary key (also across instances).
    op.execute("""
        CREATE TABLE receipts (
            file_id text PRIMARY KEY,
            account_id text NOT NULL,
            reason text NOT NULL,
            request_id text,
            deleted_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute("""
        CREATE TABLE forget_requests (
            request_id text NOT NULL,
            account_id text NOT NULL,
            consumer_id text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            done_at timestamptz,
            PRIMARY KEY (request_id, account_id, consumer_id)
        )""")
    op.execute("CREATE INDEX forget_requests_by_consumer ON forget_requests (account_id, consumer_id, received_at)")
