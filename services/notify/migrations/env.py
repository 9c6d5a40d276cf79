"""Alembic environment of the notify service (one migration history per service)."""

from common.migrations import run_env
from notify.models import metadata

run_env(metadata)
