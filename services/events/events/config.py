"""Settings of the events service: the only place it reads the environment (prefix EVENTS_)."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from common.config import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class Settings(ServiceSettings):
    """Events settings; e.g. EVENTS_DATABASE_URL, EVENTS_PORT, and the shared KAFKA_BOOTSTRAP_SERVERS."""

    model_config = SettingsConfigDict(env_prefix="EVENTS_", extra="ignore", populate_by_name=True)

    service_name: str = "events"
    port: int = 8003

    offer_ttl_seconds: int = 48 * 3600
    offer_sweep_seconds: float = 5.0
    display_timezone: str = "Asia/Shanghai"
