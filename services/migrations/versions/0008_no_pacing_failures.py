"""carrier_pacing without the failures column

It was written on every pause and never read: a tracker counts a carrier's failed rounds
in memory (services/tracker/lanes.py), and the pause itself is what replicas share.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 20:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('carrier_pacing') as batch:
        batch.drop_column('failures')


def downgrade() -> None:
    with op.batch_alter_table('carrier_pacing') as batch:
        batch.add_column(sa.Column('failures', sa.Integer(), server_default=sa.text('0'), nullable=False))
