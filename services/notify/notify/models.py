"""Tables of the notify service (its own metadata): projections, notifications, inbox, deliveries, settings."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, UniqueConstraint, text
from sqlmodel import JSON, Column, Field, SQLModel

from common.db import UTCDateTime, add_platform_tables, new_registry, utcnow

mapper_registry = new_registry()
metadata = mapper_registry.metadata


def new_id() -> str:
    """A new random identifier."""
    return str(uuid.uuid4())


class Table(SQLModel, registry=mapper_registry):
    """Base of the notify service's tables."""


# --- projections fed by other services' events ------------------------------------------------------------------

class InstitutionContact(Table, table=True):
    """registry.contact.v1 projection: where an institution's email and SMS go (personal data)."""

    __tablename__ = "institution_contacts"

    institution_id: str = Field(primary_key=True, max_length=64)
    contact_name: str | None = Field(default=None, max_length=120)
    contact_email: str | None = Field(default=None, max_length=254)
    contact_phone: str | None = Field(default=None, max_length=32)
    version: int = 0


class ActivityView(Table, table=True):
    """events.activity.v1 projection: title, organiser and status of each activity."""

    __tablename__ = "activities"

    id: str = Field(primary_key=True, max_length=64)
    title_zh: str = Field(max_length=300)
    organiser_id: str | None = Field(default=None, max_length=64)
    starts_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(max_length=40)
    version: int = 0


class RegistrationView(Table, table=True):
    """events.registration.v1 projection: who is registered for which activity (for cancellation fan-out)."""

    __tablename__ = "registrations"

    id: str = Field(primary_key=True, max_length=64)
    activity_id: str = Field(max_length=64, index=True)
    participant_id: str = Field(max_length=120)
    institution_id: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=40)
    version: int = 0


# --- notifications and what they fan out to ----------------------------------------------------------------------

class Notification(Table, table=True):
    """A consumed event the dispatcher must still plan (email, SMS, digest or webhook); its inbox rows exist already."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_unplanned", "created_at", postgresql_where=text("planned_at IS NULL")),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    event_id: str = Field(max_length=200, unique=True)
    event_type: str = Field(max_length=300)
    event_name: str = Field(max_length=200)
    category: str = Field(max_length=60)
    subject: str | None = Field(default=None, max_length=200)
    context: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    recipients: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    envelope: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    planned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class InboxMessage(Table, table=True):
    """One in-app notification for one recipient; (event id, recipient) is unique, so an event lands once."""

    __tablename__ = "inbox_messages"
    __table_args__ = (
        UniqueConstraint("event_id", "recipient"),
        Index("ix_inbox_messages_recipient_created", "recipient", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    notification_id: str | None = Field(default=None, max_length=36)
    recipient: str = Field(max_length=120, description="a user id, 'role:office_admin' or 'institution:<id>'")
    category: str = Field(max_length=60)
    priority: str = Field(default="normal", max_length=20)
    title: str = Field(max_length=300)
    body: str = Field(max_length=4000)
    event_id: str = Field(max_length=200)
    event_type: str = Field(max_length=300)
    subject: str | None = Field(default=None, max_length=200)
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class InboxRead(Table, table=True):
    """One reader's state of a message in a shared inbox (the office's, an institution's): each administrator reads
    and archives for themself; a personal inbox keeps its state on the message."""

    __tablename__ = "inbox_reads"

    message_id: str = Field(primary_key=True, max_length=36)
    reader: str = Field(primary_key=True, max_length=120)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Delivery(Table, table=True):
    """One message over email, SMS or webhook to one recipient; (event id, recipient, channel) is unique."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "recipient", "channel"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    notification_id: str | None = Field(default=None, max_length=36, index=True)
    event_id: str = Field(max_length=200)
    recipient: str = Field(max_length=120, index=True)
    channel: str = Field(max_length=20)
    category: str = Field(max_length=60)
    address: str = Field(max_length=500, description="email address, phone number or webhook URL")
    subject: str = Field(default="", max_length=300)
    body: str = Field(default="", max_length=20000)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="queued", max_length=20)
    reason: str | None = Field(default=None, max_length=2000)
    attempts: int = 0
    replays: int = 0
    provider_id: str | None = Field(default=None, max_length=200, index=True)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    version: int = 1


class DigestEntry(Table, table=True):
    """A low-priority notification waiting for a recipient's next digest: an email (channel `email`), or one inbox
    message for a window's platform chatter (channel `inbox`; `digest_delivery_id` is then that message's id)."""

    __tablename__ = "digest_entries"
    __table_args__ = (UniqueConstraint("event_id", "recipient", "channel"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    recipient: str = Field(max_length=120, index=True)
    channel: str = Field(default="email", max_length=20)
    event_id: str = Field(max_length=200)
    category: str = Field(max_length=60)
    title: str = Field(max_length=300)
    body: str = Field(max_length=4000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    digest_delivery_id: str | None = Field(default=None, max_length=36, index=True)


# --- what recipients and administrators configure ----------------------------------------------------------------

class Preference(Table, table=True):
    """A recipient's choice for one category ('*' = all) on one channel."""

    __tablename__ = "preferences"

    recipient: str = Field(primary_key=True, max_length=120)
    category: str = Field(primary_key=True, max_length=60)
    channel: str = Field(primary_key=True, max_length=20)
    enabled: bool
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RecipientProfile(Table, table=True):
    """A recipient's own addresses, locale and quiet hours (personal data)."""

    __tablename__ = "recipient_profiles"

    recipient: str = Field(primary_key=True, max_length=120)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    locale: str = Field(default="zh-CN", max_length=10)
    quiet_start: str | None = Field(default=None, max_length=5)
    quiet_end: str | None = Field(default=None, max_length=5)
    quiet_enabled: bool = True
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookSubscription(Table, table=True):
    """A system (portal, municipal platform) that receives signed CloudEvents for the event names it selects."""

    __tablename__ = "webhook_subscriptions"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=200)
    url: str = Field(max_length=500)
    secret: str = Field(max_length=200)
    events: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    active: bool = True
    created_by: str = Field(max_length=120)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TemplateOverride(Table, table=True):
    """An administrator's replacement for a built-in template (event name x locale)."""

    __tablename__ = "template_overrides"

    event: str = Field(primary_key=True, max_length=200)
    locale: str = Field(primary_key=True, max_length=10)
    title: str = Field(max_length=1000)
    body: str = Field(max_length=10000)
    updated_by: str = Field(max_length=120)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


outbox, processed_events = add_platform_tables(metadata)
