"""Request and response models of the notify API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, UrlConstraints

from common.contact import EmailAddress, PhoneNumber

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of results and the cursor of the next one."""

    items: list[T]
    next_cursor: str | None = None


class InboxMessagePublic(BaseModel):
    """A notification as its recipient sees it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    recipient: str
    category: str
    priority: str
    title: str
    body: str
    event_id: str
    event_type: str
    subject: str | None
    data: dict
    created_at: datetime
    read_at: datetime | None
    archived_at: datetime | None


class Inbox(BaseModel):
    """The caller's notifications, newest first, with the unread count and the next page's cursor."""

    unread: int
    items: list[InboxMessagePublic]
    next_cursor: str | None = None


class UnreadCount(BaseModel):
    """How many unread, unarchived notifications the caller has."""

    unread: int


class Marked(BaseModel):
    """How many messages an inbox action changed."""

    changed: int


class PreferenceUpdate(BaseModel):
    """Turn one category ('*' for all) on or off on one channel."""

    enabled: bool


class EffectivePreference(BaseModel):
    """What a recipient gets for one category on one channel, and which layer decided it."""

    category: str
    channel: str
    enabled: bool
    source: Literal["default", "recipient", "category", "critical"]
    locked: bool = Field(description="critical categories cannot be muted on this channel")


class Preferences(BaseModel):
    """A recipient's effective preferences, per category and channel."""

    recipient: str
    items: list[EffectivePreference]


class ProfileUpdate(BaseModel):
    """A recipient's own addresses, language and quiet hours (Asia/Shanghai local time, HH:MM)."""

    email: EmailAddress | None = Field(default=None, max_length=254)
    phone: PhoneNumber | None = Field(default=None, max_length=32)
    locale: Literal["zh-CN", "en"] = "zh-CN"
    quiet_enabled: bool = True
    quiet_start: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_end: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class ProfilePublic(ProfileUpdate):
    """A recipient's profile as stored (addresses masked for callers who may not see them)."""

    model_config = ConfigDict(from_attributes=True)

    recipient: str
    email: str | None = None
    phone: str | None = None


class WebhookCreate(BaseModel):
    """Subscribe a system to signed CloudEvents: `events` are contract names, '*' wildcards allowed."""

    name: str = Field(min_length=1, max_length=200)
    url: Annotated[HttpUrl, UrlConstraints(max_length=499, allowed_schemes=["http", "https"])]
    events: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=50, examples=[["registry.certification.*"]],
    )
    secret: str | None = Field(default=None, min_length=16, max_length=200,
                               description="shared HMAC secret; generated (and shown once) when omitted")


class WebhookPublic(BaseModel):
    """A webhook subscription (its secret is shown only when created)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    url: str
    events: list[str]
    active: bool
    created_at: datetime
    secret: str | None = None


class DeliveryPublic(BaseModel):
    """One delivery and its honest status (address masked unless the caller is the office)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    notification_id: str | None
    event_id: str
    recipient: str
    channel: str
    category: str
    address: str | None
    subject: str
    status: str
    reason: str | None
    attempts: int
    replays: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    version: int


class SmsReceipt(BaseModel):
    """A delivery receipt from the SMS provider."""

    biz_id: str = Field(min_length=1, max_length=200)
    success: bool
    err_code: str | None = Field(default=None, max_length=100)


class TemplatePreview(BaseModel):
    """Preview a stored template (event, locale) or a draft (title/body), with sample or given data."""

    event: str = Field(max_length=200, examples=["events.activity.cancelled"])
    locale: Literal["zh-CN", "en"] = "zh-CN"
    title: str | None = Field(default=None, max_length=1000)
    body: str | None = Field(default=None, max_length=10000)
    data: dict[str, Any] | None = None


class TemplateUpdate(BaseModel):
    """An administrator's template for one event name and locale."""

    title: str = Field(min_length=1, max_length=1000)
    body: str = Field(min_length=1, max_length=10000)


class TemplatePublic(BaseModel):
    """A template as used now: an override or the built-in one."""

    event: str
    locale: str
    title: str
    body: str
    source: Literal["builtin", "override"]


class Rendered(BaseModel):
    """A rendered template."""

    title: str
    body: str
