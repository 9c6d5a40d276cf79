"""mentor affiliations: the projection of the registry's listed mentors, and a judge's mentor-pool entry, so that a
judge's registry institution counts in conflict-of-interest checks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the mentors projection and judge_assignments.mentor_id."""
    op.create_table('mentors',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('institution_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mentors'))
    )
    op.add_column('judge_assignments',
                  sa.Column('mentor_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True))


def downgrade() -> None:
    """Drop both."""
    op.drop_column('judge_assignments', 'mentor_id')
    op.drop_table('mentors')
