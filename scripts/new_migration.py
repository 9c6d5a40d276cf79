#!/usr/bin/env python3
"""Autogenerate a migration for one service against a scratch PostgreSQL database at head.

The scratch database lives on the checkout's PostgreSQL (scripts/pg.py, started if needed) or on TEST_PG_URL's server,
and is dropped afterwards.

    .venv/bin/python scripts/new_migration.py registry "add bases"
"""

import asyncio
import sys
import uuid
from pathlib import Path

import asyncpg
from alembic import command

from common.migrations import alembic_config, upgrade
from tests.support.harness import ADMIN_PG_URL, ensure_postgres

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Upgrade a scratch database to head, then autogenerate the difference to the models."""
    service, message = sys.argv[1], sys.argv[2]
    rev_id = sys.argv[3] if len(sys.argv) > 3 else None
    script = ROOT / "services" / service / "migrations"
    ensure_postgres()
    name = f"scratch_{service}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        url = ADMIN_PG_URL.rsplit("/", 1)[0] + f"/{name}"
        upgrade(script, url)
        command.revision(alembic_config(script, url), message=message, autogenerate=True, rev_id=rev_id)
    finally:
        asyncio.run(_admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
