"""The account settings this service follows (resize target).

Revision ID: 0001
Revises:
"""

from shared.adapters.migrations.tables import create_account_settings_v1

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_account_settings_v1()
