#!/usr/bin/env python3
"""Autogenerate a migration for one service against a scratch SQLite database at head.

    .venv/bin/python scripts/new_migration.py registry "add bases"
"""

import sys
import tempfile
from pathlib import Path

from alembic import command

from common.migrations import alembic_config, upgrade

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Upgrade a scratch database to head, then autogenerate the difference to the models."""
    service, message = sys.argv[1], sys.argv[2]
    rev_id = sys.argv[3] if len(sys.argv) > 3 else None
    script = ROOT / "services" / service / "migrations"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scratch.db"
        upgrade(script, url)
        command.revision(alembic_config(script, url), message=message, autogenerate=True, rev_id=rev_id)


if __name__ == "__main__":
    main()
