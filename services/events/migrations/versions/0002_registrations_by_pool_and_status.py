"""registrations by pool and status: seat decisions count a pool's registrations by status under its lock

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:42:48.852569
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the (pool_id, status) index."""
    with op.batch_alter_table('registrations', schema=None) as batch_op:
        batch_op.create_index('ix_registrations_pool_status', ['pool_id', 'status'], unique=False)


def downgrade() -> None:
    """Drop the (pool_id, status) index."""
    with op.batch_alter_table('registrations', schema=None) as batch_op:
        batch_op.drop_index('ix_registrations_pool_status')
