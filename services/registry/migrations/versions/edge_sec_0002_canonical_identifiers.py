"""canonical identifiers: school codes and USCCs stored before NFKC normalisation are brought to their ASCII form

Until now a school code or USCC typed in full-width (or Arabic-Indic) digits was stored as typed, so the same code in
ASCII was not recognised as a duplicate. Each stored code is rewritten in the form the API now validates and compares:
NFKC, digits of any script as 0-9, upper case. A code whose canonical form another institution already holds is left
as it is and reported in the log: those two records are duplicates for the office to merge.

Revision ID: edge_sec_0002
Revises: edge_sec_0001
Create Date: 2026-12-01 16:30:00
"""
import logging
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = 'edge_sec_0002'
down_revision = 'edge_sec_0001'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def canonical(code: str) -> str:
    """NFKC, any script's decimal digits as 0-9, surrounding spaces removed, upper case."""
    text = unicodedata.normalize("NFKC", code).strip().upper()
    return "".join(str(unicodedata.digit(ch)) if ch.isdigit() and not "0" <= ch <= "9" else ch for ch in text)


def upgrade() -> None:
    """Rewrite non-canonical codes in place (collisions are left and logged)."""
    conn = op.get_bind()
    institutions = sa.table("institutions", sa.column("id"), sa.column("uscc"), sa.column("school_code"))
    for column in ("uscc", "school_code"):
        col = institutions.c[column]
        rows = conn.execute(sa.select(institutions.c.id, col).where(col.is_not(None))).all()
        held = {value for _, value in rows}
        for inst_id, value in rows:
            fixed = canonical(value)
            if fixed == value:
                continue
            if fixed in held:
                log.warning("%s %r of institution %s is the same code as another record's %r: merge them",
                            column, value, inst_id, fixed)
                continue
            conn.execute(sa.update(institutions).where(institutions.c.id == inst_id).values({column: fixed}))
            held.add(fixed)


def downgrade() -> None:
    """Nothing to undo: the canonical codes are the same codes."""
