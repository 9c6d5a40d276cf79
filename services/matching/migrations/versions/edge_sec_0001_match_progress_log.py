"""match progress log: every step and note of a match, who and when (long-term tracking, 长效跟踪)

Revision ID: edge_sec_0001
Revises: 0001
Create Date: 2026-12-01 16:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'edge_sec_0001'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add match.progress (existing matches start with an empty log)."""
    op.add_column('match', sa.Column('progress', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    """Drop match.progress."""
    op.drop_column('match', 'progress')
