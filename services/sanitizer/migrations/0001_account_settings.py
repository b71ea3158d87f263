"""The account settings this service follows (resize target).

Revision ID: 0001
Revises:
"""
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE account_settings (
            account_id text PRIMARY KEY,
            document jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )""")
