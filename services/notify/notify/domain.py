"""Pure rules of notify: categories and rules, channel choice by preference layers, quiet hours, retries, signatures."""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
ALL_CATEGORIES = "*"


class Channel(StrEnum):
    """Where a notification goes."""

    INBOX = "inbox"
    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"
    DIGEST = "digest"  # a preference only: whether a category's inbox items are batched into a periodic digest


PREFERENCE_CHANNELS = (Channel.INBOX, Channel.EMAIL, Channel.SMS)


class Priority(StrEnum):
    """Critical ones cannot be muted and ignore quiet hours; low ones are batched into email digests."""

    CRITICAL = "critical"
    NORMAL = "normal"
    LOW = "low"


class Status(StrEnum):
    """A delivery's status; `sending` is the claim taken just before a send (never published)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"


REPLAYABLE = (Status.FAILED, Status.DEAD)


@dataclass(frozen=True)
class Category:
    """A kind of notification with its priority and the channels it uses unless a recipient says otherwise."""

    name: str
    priority: Priority
    default_channels: frozenset[Channel]
    label_zh: str
    label_en: str
    inbox_digest: bool = False  # low-value chatter: inbox items batched into one digest message per window

    @property
    def critical(self) -> bool:
        """Critical categories cannot be muted on their default channels and ignore quiet hours."""
        return self.priority is Priority.CRITICAL

    @property
    def digested(self) -> bool:
        """Low-priority email is batched into a digest per recipient."""
        return self.priority is Priority.LOW


_IE = frozenset({Channel.INBOX, Channel.EMAIL})
CATEGORIES: dict[str, Category] = {c.name: c for c in [
    Category("cancellation", Priority.CRITICAL, frozenset(Channel), "活动取消", "Cancellations"),
    Category("offer", Priority.CRITICAL, frozenset({Channel.INBOX, Channel.EMAIL, Channel.SMS}), "候补递补名额",
             "Seat offers"),
    Category("registration", Priority.NORMAL, _IE, "活动报名", "Registrations"),
    Category("match", Priority.NORMAL, _IE, "供需对接", "Matches"),
    Category("certification", Priority.NORMAL, _IE, "产教融合型企业认定", "Certification"),
    Category("placement", Priority.NORMAL, _IE, "实习岗位分配", "Placements"),
    Category("competition", Priority.NORMAL, _IE, "竞赛结果", "Competition results"),
    Category("progress", Priority.LOW, _IE, "进展动态", "Progress updates"),
    Category("registry", Priority.LOW, frozenset({Channel.INBOX}), "机构登记", "Registry", inbox_digest=True),
]}


@dataclass(frozen=True)
class Rule:
    """Which category (and template) an event type produces; recipients are resolved by the handler.

    `by_status` overrides the category for some values of the event's `data.status`: one event type may carry
    news of different weight (a certification review that passed is progress; one that was rejected is not)."""

    event: str
    category: str
    by_status: tuple[tuple[str, str], ...] = ()

    def category_for(self, data: Mapping | None) -> str:
        """The category of this event given its data."""
        status = (data or {}).get("status")
        return next((cat for s, cat in self.by_status if s == status), self.category)


def _rules(category: str, *events: str) -> list[Rule]:
    return [Rule(e, category) for e in events]


RULES: dict[str, Rule] = {r.event: r for r in [
    *_rules("registration", "events.registration.confirmed", "events.registration.waitlisted",
            "events.registration.promoted", "events.registration.offer_expired", "events.registration.withdrawn"),
    *_rules("offer", "events.registration.offer_made"),
    *_rules("cancellation", "events.activity.cancelled"),
    *_rules("match", "matching.match.proposed", "matching.match.accepted", "matching.match.declined",
            "matching.match.expired", "matching.match.agreed", "matching.match.cancelled"),
    *_rules("progress", "matching.match.started", "matching.match.completed",
            "registry.certification.applied", "registry.certification.objection_raised",
            "registry.certification.evaluated"),
    Rule("registry.certification.reviewed", "progress", by_status=(("rejected", "certification"),)),
    *_rules("certification", "registry.certification.announced", "registry.certification.certified",
            "registry.certification.rectification_required", "registry.certification.withdrawn",
            "registry.certification.revoked"),
    *_rules("placement", "matching.placement.assigned", "matching.placement.unplaced"),
    *_rules("competition", "events.competition.results_published"),
    *_rules("registry", "registry.institution.registered", "registry.institution.status_changed"),
]}

PUBLIC_CERTIFICATION_EVENTS = frozenset({
    "registry.certification.announced", "registry.certification.certified", "registry.certification.revoked",
})
INACTIVE_REGISTRATION = frozenset({"withdrawn", "offer_expired", "expired", "cancelled", "rejected"})


def registration_is_active(status: str) -> bool:
    """Whether a registrant still holds (or waits for) a place and must hear of a cancellation."""
    return status not in INACTIVE_REGISTRATION


# --- preferences -----------------------------------------------------------------------------------------------

class PreferenceRefused(ValueError):
    """A preference that the rules do not allow (muting a critical category, an unknown category or channel)."""


def check_preference(category: str, channel: str, enabled: bool) -> None:
    """Refuse preferences that name unknown things or would mute a critical category on one of its channels."""
    if category != ALL_CATEGORIES and category not in CATEGORIES:
        raise PreferenceRefused(f"unknown category {category!r}; known: {', '.join(sorted(CATEGORIES))} or '*'")
    if channel == Channel.DIGEST:
        return  # batching or not is always the recipient's choice
    if channel not in {c.value for c in PREFERENCE_CHANNELS}:
        raise PreferenceRefused(f"unknown channel {channel!r}; preferences apply to inbox, email and sms (and "
                                "'digest': whether a category's inbox items are batched)")
    if not enabled and category != ALL_CATEGORIES:
        cat = CATEGORIES[category]
        if cat.critical and Channel(channel) in cat.default_channels:
            raise PreferenceRefused(f"category {category!r} is critical and cannot be muted on {channel}")


def channel_enabled(category: Category, channel: Channel, prefs: Mapping[tuple[str, str], bool]) -> tuple[bool, str]:
    """Layered decision for one channel: system default < recipient's channel-wide choice < per-category choice.

    Returns (enabled, source) where source is 'default', 'recipient', 'category' or 'critical'.
    """
    enabled, source = channel in category.default_channels, "default"
    if (ALL_CATEGORIES, channel.value) in prefs:
        enabled, source = prefs[(ALL_CATEGORIES, channel.value)], "recipient"
    if (category.name, channel.value) in prefs:
        enabled, source = prefs[(category.name, channel.value)], "category"
    if category.critical and channel in category.default_channels and not enabled:
        return True, "critical"
    return enabled, source


def inbox_digested(category: Category, prefs: Mapping[tuple[str, str], bool]) -> tuple[bool, str]:
    """Whether a recipient's inbox items of this category are batched into a digest, and which layer decided it:
    the category's default (platform chatter is), the recipient's choice for all categories, or for this one."""
    batched, source = category.inbox_digest, "default"
    if (ALL_CATEGORIES, Channel.DIGEST.value) in prefs:
        batched, source = prefs[(ALL_CATEGORIES, Channel.DIGEST.value)], "recipient"
    if (category.name, Channel.DIGEST.value) in prefs:
        batched, source = prefs[(category.name, Channel.DIGEST.value)], "category"
    if category.critical:
        return False, "critical"
    return batched, source


def channels_for(category: Category, prefs: Mapping[tuple[str, str], bool]) -> set[Channel]:
    """The person-facing channels (inbox, email, SMS) one recipient gets for one category."""
    return {ch for ch in PREFERENCE_CHANNELS if channel_enabled(category, ch, prefs)[0]}


# --- quiet hours -----------------------------------------------------------------------------------------------

def parse_hhmm(value: str) -> time:
    """'22:00' -> time(22, 0); raises ValueError on anything else."""
    hh, _, mm = value.partition(":")
    if not (hh.isdigit() and mm.isdigit() and len(mm) == 2):
        raise ValueError(f"expected HH:MM, got {value!r}")
    return time(int(hh), int(mm))


def quiet_release(now: datetime, start: time, end: time) -> datetime | None:
    """If `now` falls inside quiet hours [start, end) in Asia/Shanghai, the UTC instant they end; else None."""
    if start == end:
        return None
    local = now.astimezone(SHANGHAI)
    t = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= t < end
        end_day = local.date()
    else:  # over midnight, e.g. 22:00-08:00
        inside = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    release = datetime.combine(end_day, end, tzinfo=SHANGHAI)
    return release.astimezone(now.tzinfo)


def delayed_by_quiet_hours(category: Category, channel: Channel) -> bool:
    """Quiet hours hold back non-critical email and SMS only (the inbox is silent, webhooks are machines)."""
    return not category.critical and channel in (Channel.EMAIL, Channel.SMS)


# --- retries ---------------------------------------------------------------------------------------------------

def retry_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half of min(cap, base*2^(n-1)) plus a random share of the other half."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Outcome:
    """The result of one send attempt."""

    ok: bool
    status: Status = Status.SENT
    reason: str | None = None
    permanent: bool = False
    provider_id: str | None = None


def after_attempt(outcome: Outcome, *, attempts: int, max_attempts: int) -> Status:
    """The status a delivery takes after an attempt: success as given; a failure retries until it is dead."""
    if outcome.ok:
        return outcome.status
    if outcome.permanent or attempts >= max_attempts:
        return Status.DEAD
    return Status.FAILED


# --- webhooks --------------------------------------------------------------------------------------------------

SIGNATURE_HEADER = "Webhook-Signature"
TIMESTAMP_HEADER = "Webhook-Timestamp"
ID_HEADER = "Webhook-Id"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """'v1=' + hex HMAC-SHA256 over f'{timestamp}.' + body with the subscription's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify(secret: str, *, timestamp: str, body: bytes, signature: str, now: int, tolerance: int = 300) -> bool:
    """What a receiver does: recompute the signature (any of space-separated v1= values) and reject stale stamps."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    expected = sign(secret, int(timestamp), body)
    return any(hmac.compare_digest(expected, s) for s in signature.split())


def matches(patterns: Iterable[str], event_name: str) -> bool:
    """Whether a subscription's patterns (contract names, '*' wildcards) select an event name."""
    return any(fnmatchcase(event_name, p) for p in patterns)


def unknown_event_patterns(patterns: Iterable[str]) -> list[str]:
    """The webhook patterns that select no event notify acts on (a misspelt name would never fire)."""
    return [p for p in patterns if not any(fnmatchcase(name, p) for name in RULES)]


def webhook_retryable(status_code: int) -> bool:
    """Server errors, timeouts and rate limits are retried; other client errors will not get better."""
    return status_code >= 500 or status_code in (408, 409, 425, 429)


# --- personal data ---------------------------------------------------------------------------------------------

def mask_address(address: str | None) -> str | None:
    """Hide most of an email address or phone number (for callers who may not see personal data)."""
    if not address:
        return address
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    if address.startswith(("http://", "https://")):
        return address
    digits = address
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 8 else "****"
