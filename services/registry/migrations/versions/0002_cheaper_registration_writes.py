"""cheaper registration writes: GIN indexes take new entries through their pending list; one redundant index dropped

A registration inserts about forty name grams. With fastupdate off, each went into the GIN index's posting trees on
its own: 0.55 ms of PostgreSQL time and 21 kB of WAL per institution, twelve times a plain insert. With fastupdate on,
new entries are appended to a pending list and merged in bulk, by the insert that fills the list (kept small at 256 kB,
so that neither the merge nor the list a search also reads grows large) or by autovacuum.

The revisions' institution_id index duplicated the leading column of the (institution_id, version) unique key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 03:40:00
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

GIN_INDEXES = ("ix_institutions_name_grams", "ix_institutions_industries")


def upgrade() -> None:
    """Pending lists on for the GIN indexes; drop the redundant revisions index."""
    for index in GIN_INDEXES:
        op.execute(f"ALTER INDEX {index} SET (fastupdate = on, gin_pending_list_limit = 256)")
    op.drop_index('ix_institution_revisions_institution_id', table_name='institution_revisions')


def downgrade() -> None:
    """Back to direct GIN inserts and the separate institution_id index."""
    op.create_index('ix_institution_revisions_institution_id', 'institution_revisions', ['institution_id'], unique=False)
    for index in GIN_INDEXES:
        op.execute(f"ALTER INDEX {index} SET (fastupdate = off)")
        op.execute(f"ALTER INDEX {index} RESET (gin_pending_list_limit)")
