"""Alembic environment of the registry service (one migration history per service)."""

from common.migrations import run_env
from registry.models import metadata

run_env(metadata)
