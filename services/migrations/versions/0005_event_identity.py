"""event identity: the inbox keyed on source + id, what each change recorded, order items by package

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows applied before this revision keep an empty source: their sources were never
    # stored. A redelivery of such an old event is judged by content, as every handler is
    # idempotent by content too (a package packed alike, a cursor past the sequence).
    with op.batch_alter_table('inbox') as batch:
        batch.add_column(sa.Column('source', sa.String(length=255), server_default='', nullable=False))
        batch.drop_constraint('pk_inbox', type_='primary')
        batch.create_primary_key('pk_inbox', ['consumer', 'source', 'event_id'])
    with op.batch_alter_table('inbox') as batch:
        batch.alter_column('source', server_default=None)
    # The change as it was published (JSON): what the Omnitron publisher and the shipper
    # act on, whatever a message naming it says. Older rows are rebuilt from their columns.
    with op.batch_alter_table('shipment_status_changes') as batch:
        batch.add_column(sa.Column('data', sa.Text(), nullable=True))
    with op.batch_alter_table('omnitron_relays') as batch:
        batch.add_column(sa.Column('superseded_items', sa.Text(), nullable=True))
    # Which packages hold an order item (Akinon re-packs after "product not found").
    op.create_index('ix_package_items_order_item_id', 'package_items', ['order_item_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_package_items_order_item_id', table_name='package_items')
    with op.batch_alter_table('omnitron_relays') as batch:
        batch.drop_column('superseded_items')
    with op.batch_alter_table('shipment_status_changes') as batch:
        batch.drop_column('data')
    # The same id from two sources was two events; the older key keeps one of them.
    op.execute("DELETE FROM inbox WHERE EXISTS (SELECT 1 FROM inbox AS other "
               "WHERE other.consumer = inbox.consumer AND other.event_id = inbox.event_id "
               "AND other.source < inbox.source)")
    with op.batch_alter_table('inbox') as batch:
        batch.drop_constraint('pk_inbox', type_='primary')
        batch.create_primary_key('pk_inbox', ['consumer', 'event_id'])
        batch.drop_column('source')
