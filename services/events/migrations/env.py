"""Alembic environment of the events service (one migration history per service)."""

from common.migrations import run_env
from events.models import metadata

run_env(metadata)
