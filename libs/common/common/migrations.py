"""Alembic glue: each service keeps its own migration history; this runs it, on start and in tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.ext.asyncio import create_async_engine

from common.db import async_url


def alembic_config(script_location: Path, database_url: str) -> Config:
    """An Alembic config pointing at a service's migrations folder and database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(script_location: Path, database_url: str, revision: str = "head") -> None:
    """Bring a service database up to `revision` (blocking; call from a thread inside an event loop)."""
    command.upgrade(alembic_config(script_location, database_url), revision)


async def upgrade_async(script_location: Path, database_url: str) -> None:
    """Run `upgrade` without blocking the event loop."""
    await asyncio.to_thread(upgrade, script_location, database_url)


def run_env(metadata: MetaData) -> None:
    """The body of a service's migrations/env.py: run migrations online with an async engine."""
    cfg = context.config
    url = cfg.attributes.get("database_url") or cfg.get_main_option("sqlalchemy.url")
    url = async_url(url)

    def do_run(connection):
        context.configure(
            connection=connection, target_metadata=metadata, compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run():
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(run())
