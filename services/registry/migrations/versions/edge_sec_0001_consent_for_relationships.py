"""consent for relationships: alliance join requests and invitations, pending base co-hosts, USCC change requests

Joining an alliance waits for the other side (the lead approves an institution's request; an institution accepts the
lead's invitation); a co-host named by someone who does not act for it waits for its confirmation; an institution
administrator's USCC change waits for the office.

Revision ID: edge_sec_0001
Revises: 0002
Create Date: 2026-12-01 16:00:00
"""
import sqlalchemy as sa

import common.db
from alembic import op
from sqlalchemy.dialects import postgresql

revision = 'edge_sec_0001'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the pending columns and the USCC change requests table."""
    op.add_column('alliances', sa.Column('join_requests', sa.JSON(), nullable=False, server_default='[]'))
    op.add_column('bases', sa.Column(
        'pending_host_ids', postgresql.JSONB(astext_type=sa.Text()),
        nullable=False, server_default='[]'))
    op.create_table(
        'uscc_change_requests',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('institution_id', sa.String(length=36), nullable=False),
        sa.Column('current_uscc', sa.String(length=18), nullable=True),
        sa.Column('requested_uscc', sa.String(length=18), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('requested_by', sa.String(length=200), nullable=False),
        sa.Column('requested_at', common.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('decided_by', sa.String(length=200), nullable=True),
        sa.Column('decided_at', common.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('decision_note', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_uscc_change_requests_institution_status', 'uscc_change_requests',
                    ['institution_id', 'status'], unique=False)


def downgrade() -> None:
    """Drop them again."""
    op.drop_index('ix_uscc_change_requests_institution_status', table_name='uscc_change_requests')
    op.drop_table('uscc_change_requests')
    op.drop_column('bases', 'pending_host_ids')
    op.drop_column('alliances', 'join_requests')
