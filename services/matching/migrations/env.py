"""Alembic environment of the matching service (one migration history per service)."""

from common.migrations import run_env
from matching.models import metadata

run_env(metadata)
