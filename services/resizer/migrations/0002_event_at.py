"""Rows folded from events remember their event's time, so a redelivered older event cannot move them
back: account settings.

Revision ID: 0002
Revises: 0001
"""

from shared.adapters.migrations.tables import add_event_at_v2

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    add_event_at_v2("account_settings")
