"""Settings of the notify service: the only place it reads the environment (prefix NOTIFY_)."""

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from common.config import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
DEV_SMS_KEY = "dev-sms-key"  # public; development mode only


class Settings(ServiceSettings):
    """Notify settings; e.g. NOTIFY_DATABASE_URL, NOTIFY_SMTP_HOST, and the shared KAFKA_BOOTSTRAP_SERVERS."""

    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore", populate_by_name=True)

    service_name: str = "notify"
    port: int = 8004

    # consumer batches are planned in one transaction (inbox rows included), so bigger ones amortise the commit and
    # the per-batch lookups; NOTIFY_CONSUMER_BATCH_SIZE, else the shared CONSUMER_BATCH_SIZE
    consumer_batch_size: int = Field(2000, validation_alias=AliasChoices("notify_consumer_batch_size",
                                                                         "consumer_batch_size"))

    # the background dispatcher (planning notifications into inbox rows and deliveries, then sending them)
    run_dispatcher: bool = True
    dispatch_interval_seconds: float = 0.5
    housekeeping_interval_seconds: float = 1.0  # digests due and interrupted sends are looked for at most this often
    dispatch_batch_size: int = 200
    dispatch_concurrency: int = 16
    plan_batch_size: int = 100
    max_attempts: int = 6
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 3600.0
    send_lease_seconds: float = 120.0
    send_timeout_seconds: float = 10.0

    # quiet hours (Asia/Shanghai local time) for non-critical email and SMS, unless a recipient sets their own
    quiet_start: str = "22:00"
    quiet_end: str = "08:00"
    digest_window_seconds: float = 3600.0

    # email over SMTP
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "上海市产教融合平台 <noreply@platform.cjrh.sh.cn>"
    message_id_domain: str = "notify.platform.cjrh.sh.cn"

    # SMS through an HTTP provider adapter (sender signature and template codes per category, as Chinese rules need)
    sms_url: str | None = None
    sms_api_key: str = DEV_SMS_KEY
    sms_sign_name: str = "上海产教融合"
    sms_template_codes: dict[str, str] = Field(default_factory=lambda: {
        "cancellation": "SMS_CJRH_0001", "offer": "SMS_CJRH_0002", "registration": "SMS_CJRH_0003",
        "match": "SMS_CJRH_0004", "certification": "SMS_CJRH_0005", "placement": "SMS_CJRH_0006",
        "competition": "SMS_CJRH_0007", "progress": "SMS_CJRH_0008", "registry": "SMS_CJRH_0009",
    })

    # webhooks
    webhook_user_agent: str = "cjrh-notify-webhooks/1"

    # Webhooks and the SMS provider are reached through this HTTP proxy when set (NOTIFY_HTTP_PROXY, e.g.
    # http://egress-proxy.egress:3128): on Kubernetes it is notify's one way out to the internet, where an allow-list
    # of destinations can be kept (docs/operations.md#notify-egress). Unset: directly.
    http_proxy: str | None = None
    # loopback, private and link-local targets are refused (a webhook must not reach into our own network) unless
    # this is set, for development and tests
    webhook_allow_private_networks: bool = False

    def production_problems(self) -> list[str]:
        """The shared checks, plus: an SMS provider is never called with the public development key."""
        problems = super().production_problems()
        if self.sms_url and self.sms_api_key == DEV_SMS_KEY:
            problems.append("NOTIFY_SMS_API_KEY is the public development key while NOTIFY_SMS_URL is set")
        return problems
