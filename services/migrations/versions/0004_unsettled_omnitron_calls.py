"""unsettled Omnitron calls: the newest relay kept per shipment, and when its unanswered calls have settled

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 18:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_UNSETTLED = sa.text('unsettled_until IS NOT NULL')


def upgrade() -> None:
    with op.batch_alter_table('omnitron_cursor') as batch:
        batch.add_column(sa.Column('last_relay', sa.Text(), nullable=True))
        batch.add_column(sa.Column('unsettled_sequence', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('unsettled_until', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_omnitron_cursor_unsettled', 'omnitron_cursor', ['unsettled_until'], unique=False,
                    postgresql_where=_UNSETTLED, sqlite_where=_UNSETTLED)


def downgrade() -> None:
    op.drop_index('ix_omnitron_cursor_unsettled', table_name='omnitron_cursor',
                  postgresql_where=_UNSETTLED, sqlite_where=_UNSETTLED)
    with op.batch_alter_table('omnitron_cursor') as batch:
        batch.drop_column('unsettled_until')
        batch.drop_column('unsettled_sequence')
        batch.drop_column('last_relay')
