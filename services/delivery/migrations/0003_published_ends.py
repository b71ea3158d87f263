"""Where delivery's message.published records reached, per partition: how delivery sees that the
broker lost its log (services.delivery.republish).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute("""
        CREATE TABLE published_ends (
            partition integer PRIMARY KEY,
            next_offset bigint NOT NULL
        )""")
