"""order item quantities as 64-bit integers

The contract's integers run from 1 to 2^63-1; a 32-bit column refused a valid quantity of
2^31 or more in the database, where it was retried instead of applied.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 17:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('package_items') as batch:
        batch.alter_column('quantity', existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('package_items') as batch:
        batch.alter_column('quantity', existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)
