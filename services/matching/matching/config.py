"""Settings of the matching service: the only place it reads the environment (prefix MATCHING_)."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from common.config import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class Settings(ServiceSettings):
    """Matching settings; e.g. MATCHING_DATABASE_URL, MATCHING_PORT, and the shared KAFKA_BOOTSTRAP_SERVERS."""

    model_config = SettingsConfigDict(env_prefix="MATCHING_", extra="ignore", populate_by_name=True)

    service_name: str = "matching"
    port: int = 8002
    match_ttl_days: float = 14.0
    pending_match_cap: int = 10
    expiry_sweep_seconds: float = 60.0
