"""registrations by pool and status: seat decisions count a pool's registrations by status under its lock (the index
replaces the one on pool_id alone, which it covers: one index fewer to maintain on every registration)

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
    """Add the (pool_id, status) index, drop the pool_id one."""
    op.create_index('ix_registrations_pool_status', 'registrations', ['pool_id', 'status'], unique=False)
    op.drop_index('ix_registrations_pool_id', table_name='registrations')


def downgrade() -> None:
    """Back to the pool_id index."""
    op.create_index('ix_registrations_pool_id', 'registrations', ['pool_id'], unique=False)
    op.drop_index('ix_registrations_pool_status', table_name='registrations')
