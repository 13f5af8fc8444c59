"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 12:01:00.379223
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbox',
    sa.Column('consumer', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'event_id', name=op.f('pk_inbox'))
    )
    op.create_table('omnitron_cursor',
    sa.Column('shipment_id', sa.String(length=64), nullable=False),
    sa.Column('last_sequence', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('shipment_id', name=op.f('pk_omnitron_cursor'))
    )
    op.create_table('omnitron_relays',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('shipment_id', sa.String(length=64), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('calls', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('relayed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_omnitron_relays'))
    )
    op.create_index(op.f('ix_omnitron_relays_shipment_id'), 'omnitron_relays', ['shipment_id'], unique=False)
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('routing_key', sa.String(length=255), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    op.create_table('packages',
    sa.Column('package_id', sa.String(length=255), nullable=False),
    sa.Column('order_number', sa.String(length=255), nullable=True),
    sa.Column('carrier', sa.String(length=64), nullable=True),
    sa.Column('delivery_type', sa.String(length=32), nullable=True),
    sa.Column('packed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('packed', sa.JSON(), nullable=True),
    sa.Column('packed_event_id', sa.String(length=255), nullable=True),
    sa.Column('shipped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('shipped_event_id', sa.String(length=255), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('package_id', name=op.f('pk_packages'))
    )
    op.create_table('package_items',
    sa.Column('package_id', sa.String(length=255), nullable=False),
    sa.Column('order_item_id', sa.BigInteger(), nullable=False),
    sa.Column('sku', sa.String(length=255), nullable=False),
    sa.Column('barcode', sa.String(length=255), nullable=True),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('deci', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['package_id'], ['packages.package_id'], name=op.f('fk_package_items_package_id_packages')),
    sa.PrimaryKeyConstraint('package_id', 'order_item_id', name=op.f('pk_package_items'))
    )
    op.create_table('shipments',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('package_id', sa.String(length=255), nullable=False),
    sa.Column('order_number', sa.String(length=255), nullable=False),
    sa.Column('carrier', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('carrier_status', sa.String(length=64), nullable=True),
    sa.Column('tracking_number', sa.String(length=255), nullable=True),
    sa.Column('tracking_url', sa.Text(), nullable=True),
    sa.Column('label_url', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_poll_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=128), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('polls', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_polled_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['package_id'], ['packages.package_id'], name=op.f('fk_shipments_package_id_packages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shipments')),
    sa.UniqueConstraint('package_id', name=op.f('uq_shipments_package_id'))
    )
    op.create_index('ix_shipments_due', 'shipments', ['next_poll_at'], unique=False, postgresql_where=sa.text('next_poll_at IS NOT NULL'), sqlite_where=sa.text('next_poll_at IS NOT NULL'))
    op.create_table('shipment_status_changes',
    sa.Column('shipment_id', sa.String(length=64), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('previous_status', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('carrier_status', sa.String(length=64), nullable=True),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipments.id'], name=op.f('fk_shipment_status_changes_shipment_id_shipments')),
    sa.PrimaryKeyConstraint('shipment_id', 'sequence', name=op.f('pk_shipment_status_changes'))
    )


def downgrade() -> None:
    op.drop_table('shipment_status_changes')
    op.drop_index('ix_shipments_due', table_name='shipments', postgresql_where=sa.text('next_poll_at IS NOT NULL'), sqlite_where=sa.text('next_poll_at IS NOT NULL'))
    op.drop_table('shipments')
    op.drop_table('package_items')
    op.drop_table('packages')
    op.drop_table('outbox')
    op.drop_index(op.f('ix_omnitron_relays_shipment_id'), table_name='omnitron_relays')
    op.drop_table('omnitron_relays')
    op.drop_table('omnitron_cursor')
    op.drop_table('inbox')
