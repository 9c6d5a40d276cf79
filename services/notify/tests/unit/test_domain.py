"""Pure rules of notify: preference layers, critical categories, quiet hours, retries, signatures, masking."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time

import pytest

from notify.domain import (
    CATEGORIES,
    RULES,
    SHANGHAI,
    Channel,
    Outcome,
    PreferenceRefused,
    Status,
    after_attempt,
    channel_enabled,
    channels_for,
    check_preference,
    delayed_by_quiet_hours,
    mask_address,
    matches,
    quiet_release,
    registration_is_active,
    retry_delay,
    sign,
    verify,
    webhook_retryable,
)

pytestmark = pytest.mark.unit

MATCH = CATEGORIES["match"]
CANCEL = CATEGORIES["cancellation"]


def test_every_rule_names_a_known_category():
    assert all(r.category in CATEGORIES for r in RULES.values())
    assert RULES["events.activity.cancelled"].category == "cancellation"
    assert RULES["events.registration.offer_made"].category == "offer"
    assert RULES["registry.certification.applied"].category == "progress"


def test_defaults_apply_when_the_recipient_said_nothing():
    assert channels_for(MATCH, {}) == {Channel.INBOX, Channel.EMAIL}
    assert channels_for(CANCEL, {}) == {Channel.INBOX, Channel.EMAIL, Channel.SMS}


def test_a_category_choice_overrides_the_recipients_channel_wide_choice():
    prefs = {("*", "email"): False, ("match", "email"): True}
    assert channel_enabled(MATCH, Channel.EMAIL, prefs) == (True, "category")
    assert channel_enabled(CATEGORIES["registration"], Channel.EMAIL, prefs) == (False, "recipient")


def test_a_recipient_may_opt_in_to_sms_for_a_normal_category():
    assert Channel.SMS in channels_for(MATCH, {("match", "sms"): True})


def test_critical_categories_ignore_mutes_on_their_channels():
    prefs = {("*", "email"): False, ("cancellation", "sms"): False}
    assert channel_enabled(CANCEL, Channel.EMAIL, prefs) == (True, "critical")
    assert channels_for(CANCEL, prefs) == {Channel.INBOX, Channel.EMAIL, Channel.SMS}


def test_muting_a_critical_category_is_refused_with_the_reason():
    with pytest.raises(PreferenceRefused, match="critical"):
        check_preference("cancellation", "email", False)
    check_preference("cancellation", "email", True)
    check_preference("*", "email", False)
    with pytest.raises(PreferenceRefused, match="unknown category"):
        check_preference("nope", "email", False)
    with pytest.raises(PreferenceRefused, match="unknown channel"):
        check_preference("match", "pigeon", False)


def shanghai(h: int, m: int = 0, day: int = 10) -> datetime:
    """A UTC instant given as Shanghai wall-clock time in May 2026."""
    return datetime(2026, 5, day, h, m, tzinfo=SHANGHAI).astimezone(UTC)


def test_quiet_hours_over_midnight_release_at_the_end_in_shanghai():
    start, end = time(22), time(8)
    late = shanghai(23, 30)
    assert quiet_release(late, start, end) == shanghai(8, 0, day=11)
    early = shanghai(6, 15)
    assert quiet_release(early, start, end) == shanghai(8, 0)
    assert quiet_release(shanghai(12), start, end) is None
    assert quiet_release(shanghai(8), start, end) is None


def test_quiet_hours_within_a_day_and_disabled_windows():
    assert quiet_release(shanghai(13, 30), time(12), time(14)) == shanghai(14)
    assert quiet_release(shanghai(13), time(0), time(0)) is None


def test_quiet_hours_hold_only_non_critical_email_and_sms():
    assert delayed_by_quiet_hours(MATCH, Channel.EMAIL) and delayed_by_quiet_hours(MATCH, Channel.SMS)
    assert not delayed_by_quiet_hours(CANCEL, Channel.EMAIL)
    assert not delayed_by_quiet_hours(MATCH, Channel.WEBHOOK)


def test_retry_delays_grow_exponentially_with_jitter_and_a_cap():
    rng = random.Random(7)
    delays = [retry_delay(n, base=1, cap=30, rng=rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(30, 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert len({round(retry_delay(3, base=1, cap=30, rng=rng), 6) for _ in range(20)}) > 1, "jitter varies"


def test_failures_retry_until_the_last_attempt_then_die():
    fail = Outcome(False, reason="503")
    assert after_attempt(fail, attempts=1, max_attempts=3) is Status.FAILED
    assert after_attempt(fail, attempts=3, max_attempts=3) is Status.DEAD
    assert after_attempt(Outcome(False, reason="410", permanent=True), attempts=1, max_attempts=3) is Status.DEAD
    assert after_attempt(Outcome(True, status=Status.DELIVERED), attempts=2, max_attempts=3) is Status.DELIVERED


def test_webhook_signatures_verify_and_reject_tampering_and_stale_stamps():
    body = b'{"id":"e1"}'
    sig = sign("s3cret-s3cret-s3cret", 1_700_000_000, body)
    assert sig.startswith("v1=") and len(sig) == 3 + 64
    ok = dict(timestamp="1700000000", body=body, signature=sig, now=1_700_000_010)
    assert verify("s3cret-s3cret-s3cret", **ok)
    assert not verify("another-secret-xxxx", **ok)
    assert not verify("s3cret-s3cret-s3cret", **{**ok, "body": b'{"id":"e2"}'})
    assert not verify("s3cret-s3cret-s3cret", **{**ok, "timestamp": "1700000001"})
    assert not verify("s3cret-s3cret-s3cret", **{**ok, "now": 1_700_001_000})


def test_which_webhook_answers_are_retried():
    assert webhook_retryable(503) and webhook_retryable(429) and webhook_retryable(408)
    assert not webhook_retryable(400) and not webhook_retryable(410)


def test_subscription_patterns_select_event_names():
    assert matches(["registry.certification.*"], "registry.certification.revoked")
    assert not matches(["registry.certification.*"], "events.activity.cancelled")
    assert matches(["events.activity.cancelled", "matching.*"], "matching.match.agreed")


def test_personal_addresses_are_masked():
    assert mask_address("wang@example.cn") == "w***@example.cn"
    assert mask_address("13800001234") == "138****1234"


def test_withdrawn_and_expired_registrants_do_not_hear_of_a_cancellation():
    assert registration_is_active("confirmed") and registration_is_active("waitlisted")
    assert not registration_is_active("withdrawn") and not registration_is_active("offer_expired")
