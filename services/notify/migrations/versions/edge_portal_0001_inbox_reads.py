"""per-reader state of shared-inbox messages

Revision ID: edge_portal_0001
Revises: 0001
Create Date: 2026-12-01 16:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import common.db


revision = 'edge_portal_0001'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbox_reads',
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('reader', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('read_at', common.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('archived_at', common.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('message_id', 'reader', name=op.f('pk_inbox_reads'))
    )


def downgrade() -> None:
    op.drop_table('inbox_reads')
