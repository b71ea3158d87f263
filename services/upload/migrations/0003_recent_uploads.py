"""Rate limits across instances: the uploads of the last minute, one row per file and scope.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # A file counts once per scope (the primary key): a client's retry of the same file is not a second upload.
    op.execute("""
        CREATE TABLE recent_uploads (
            scope text NOT NULL,
            file_digest text NOT NULL,  -- sha256 of the file id, like the scope
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (scope, file_digest)
        )""")
    op.execute("CREATE INDEX recent_uploads_scope_at ON recent_uploads (scope, at)")
    op.execute("CREATE INDEX recent_uploads_at ON recent_uploads (at)")
