"""Limits that must agree end to end (STYLE 14), each written once here. Standard library only: scripts/broker.py
reads it before any virtualenv exists."""

# The largest Kafka record (one record batch on the wire, its ~70 bytes of batch and record overhead included) that
# anyone may write: the broker's `message.max.bytes` (scripts/broker.py), each topic's `max.message.bytes` (set when
# the services create their topics), every service producer's `max_request_size`, and the record limit documented
# for every topic in docs/asyncapi.yaml and docs/integration-guide.md. A record the broker accepted may still be too
# large to dead-letter byte for byte (the dead-letter headers come on top): it goes to the DLQ as a bounded envelope.
MAX_RECORD_BYTES = 2 * 1024 * 1024

# The largest event (CloudEvent JSON plus key) a service may stage in its outbox: the record limit less room for the
# record's headers (content type, trace context) and the batch overhead. A change whose event would be larger is
# refused when it is made (413, nothing written), so the relay never holds a record the broker would refuse.
MAX_EVENT_BYTES = MAX_RECORD_BYTES - 16 * 1024

# What a bounded dead-letter envelope keeps of the original: the first bytes of the value, each header value and the
# key (longer ones are cut, with their full size and SHA-256 recorded), and at most this many headers.
DEAD_LETTER_HEAD_BYTES = 4096
DEAD_LETTER_FIELD_BYTES = 1024
DEAD_LETTER_MAX_HEADERS = 64
