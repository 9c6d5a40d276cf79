"""Settings of the notify service: the only place it reads the environment (prefix NOTIFY_)."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from common.config import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class Settings(ServiceSettings):
    """Notify settings; e.g. NOTIFY_DATABASE_URL, NOTIFY_PORT, and the shared KAFKA_BOOTSTRAP_SERVERS."""

    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore", populate_by_name=True)

    service_name: str = "notify"
    port: int = 8004
    database_url: str = "sqlite+aiosqlite:///./.local/db/notify.db"
