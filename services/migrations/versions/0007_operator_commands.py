"""operator commands: hand-given shipment information, carriers registered at, commands waiting for their packing

PackageCancelled, ShipmentInfoUpdated and ShipmentStatusSet (CONTRACT.md §2): a command may
arrive before its package's PackagePacked and waits in ``waiting_commands``; a hand-over
to a carrier without integration brings its tracking information (``packages.handover``);
a shipment keeps its hand-given shipping company, the carriers it was registered at and
the ``updated_at`` of its newest ShipmentInfoUpdated.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 19:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('shipments') as batch:
        batch.add_column(sa.Column('shipping_company', sa.String(255)))
        batch.add_column(sa.Column('registered_carriers', sa.Text()))
        batch.add_column(sa.Column('info_updated_at', sa.DateTime(timezone=True)))
    with op.batch_alter_table('packages') as batch:
        batch.add_column(sa.Column('handover', sa.JSON()))
    op.create_table(
        'waiting_commands',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('source', sa.String(255), nullable=False),
        sa.Column('event_id', sa.String(255), nullable=False),
        sa.Column('package_id', sa.String(255), nullable=False),
        sa.Column('event_type', sa.String(64), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('source', 'event_id', name='uq_waiting_commands_event'),
    )
    op.create_index('ix_waiting_commands_package_id', 'waiting_commands', ['package_id'])


def downgrade() -> None:
    op.drop_index('ix_waiting_commands_package_id', table_name='waiting_commands')
    op.drop_table('waiting_commands')
    with op.batch_alter_table('packages') as batch:
        batch.drop_column('handover')
    with op.batch_alter_table('shipments') as batch:
        batch.drop_column('info_updated_at')
        batch.drop_column('registered_carriers')
        batch.drop_column('shipping_company')
