"""The trace context of each message's publish (W3C traceparent and tracestate), so a download,
a later request of its own, joins the file's trace (shared.runtime.tracing). NULL when tracing was off or
the message was published before.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute("ALTER TABLE messages ADD COLUMN traceparent text, ADD COLUMN tracestate text")
