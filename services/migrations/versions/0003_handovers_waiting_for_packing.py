"""hand-overs waiting for packing: a partial index for the tracker's horizon check

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 16:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_WAITING = sa.text('packed IS NULL')


def upgrade() -> None:
    op.create_index('ix_packages_waiting_for_packing', 'packages', ['first_seen_at'], unique=False,
                    postgresql_where=_WAITING, sqlite_where=_WAITING)


def downgrade() -> None:
    op.drop_index('ix_packages_waiting_for_packing', table_name='packages',
                  postgresql_where=_WAITING, sqlite_where=_WAITING)
