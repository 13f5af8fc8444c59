"""tracker at scale: claim index by carrier and priority, carrier pacing, carrier events, stale mark

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_DUE = sa.text('next_poll_at IS NOT NULL')


def upgrade() -> None:
    with op.batch_alter_table('shipments') as batch:
        batch.add_column(sa.Column('poll_priority', sa.SmallInteger(), server_default=sa.text('1'), nullable=False))
        batch.add_column(sa.Column('history_wanted', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column('stale_at', sa.DateTime(timezone=True), nullable=True))
    # Shipments already waiting where delivery is near go first, as new ones will.
    op.execute("UPDATE shipments SET poll_priority = 0 WHERE status IN ('attempted_delivery', 'ready_for_pickup')")
    op.drop_index('ix_shipments_due', table_name='shipments', postgresql_where=_DUE, sqlite_where=_DUE)
    op.create_index('ix_shipments_due_by_carrier', 'shipments', ['carrier', 'poll_priority', 'next_poll_at'],
                    unique=False, postgresql_where=_DUE, sqlite_where=_DUE)
    op.create_table('carrier_pacing',
    sa.Column('carrier', sa.String(length=64), nullable=False),
    sa.Column('tat', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failures', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('day', sa.Date(), nullable=True),
    sa.Column('day_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.PrimaryKeyConstraint('carrier', name=op.f('pk_carrier_pacing'))
    )
    op.create_table('carrier_events',
    sa.Column('shipment_id', sa.String(length=64), nullable=False),
    sa.Column('event_key', sa.String(length=64), nullable=False),
    sa.Column('carrier_status', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('location', sa.Text(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipments.id'], name=op.f('fk_carrier_events_shipment_id_shipments')),
    sa.PrimaryKeyConstraint('shipment_id', 'event_key', name=op.f('pk_carrier_events'))
    )


def downgrade() -> None:
    op.drop_table('carrier_events')
    op.drop_table('carrier_pacing')
    op.drop_index('ix_shipments_due_by_carrier', table_name='shipments', postgresql_where=_DUE, sqlite_where=_DUE)
    op.create_index('ix_shipments_due', 'shipments', ['next_poll_at'], unique=False,
                    postgresql_where=_DUE, sqlite_where=_DUE)
    with op.batch_alter_table('shipments') as batch:
        batch.drop_column('stale_at')
        batch.drop_column('history_wanted')
        batch.drop_column('poll_priority')
