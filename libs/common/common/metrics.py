"""Prometheus metrics shared by all services (one process may host several services in tests: label by service)."""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Outbox entries not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge("outbox_oldest_age_seconds", "Age of the oldest unpublished outbox entry", ["service"])
EVENTS_PUBLISHED = Counter("events_published_total", "Events published to Kafka", ["service", "topic"])
EVENTS_PUBLISH_FAILED = Counter("events_publish_failed_total", "Failed publish attempts", ["service", "topic"])
EVENTS_CONSUMED = Counter(
    "events_consumed_total", "Events consumed and applied (or skipped as duplicates)",
    ["service", "consumer", "topic", "outcome"],
)
EVENTS_FAILED = Counter(
    "events_failed_total", "Event processing attempts that failed", ["service", "consumer", "topic"],
)
EVENTS_DEAD_LETTERED = Counter(
    "events_dead_lettered_total", "Messages sent to a dead-letter topic", ["service", "consumer", "topic"],
)
CONSUMER_LAG = Gauge(
    "consumer_lag", "Messages behind the partition's high watermark", ["service", "consumer", "topic", "partition"],
)
EVENTS_DEAD_LETTER_FAILED = Counter(
    "events_dead_letter_failed_total",
    "Records that could not be written to their dead-letter topic in time and were skipped (left in their topic)",
    ["service", "consumer", "topic"],
)
CONSUMER_STALLED_SECONDS = Gauge(
    "consumer_stalled_seconds", "Seconds without progress while records wait (0 while the consumer keeps up)",
    ["service", "consumer"],
)
CONSUMER_STALLED = Gauge(
    "consumer_stalled",
    "1 when the consumer made no progress for longer than its stall limit while records wait (as /readyz says)",
    ["service", "consumer"],
)
# notify's deliveries (email, SMS, webhooks): what happened to each attempt, and how long a due delivery waited for its
# outcome. outcome: sent, delivered, deferred (held by quiet hours when planned), failed (to be retried), dead.
NOTIFY_DELIVERIES = Counter(
    "notify_deliveries_total", "Delivery outcomes by channel", ["service", "channel", "outcome"],
)
NOTIFY_DELIVERY_LATENCY = Histogram(
    "notify_delivery_latency_seconds", "From a delivery falling due to its send's outcome (queueing plus the send)",
    ["service", "channel"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
