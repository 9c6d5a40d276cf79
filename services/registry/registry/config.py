"""Settings of the registry service: the only place it reads the environment (prefix REGISTRY_)."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from common.config import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class Settings(ServiceSettings):
    """Registry settings; e.g. REGISTRY_DATABASE_URL, REGISTRY_PORT, and the shared KAFKA_BOOTSTRAP_SERVERS."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore", populate_by_name=True)

    service_name: str = "registry"
    port: int = 8001
