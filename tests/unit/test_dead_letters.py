"""Dead letters: the original byte for byte while it fits in a record, else a bounded envelope that describes it."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from common.deadletter import ENVELOPE_FORMAT, Original, envelope_for, letter_for
from common.limits import DEAD_LETTER_FIELD_BYTES, DEAD_LETTER_HEAD_BYTES, DEAD_LETTER_MAX_HEADERS, MAX_RECORD_BYTES

pytestmark = pytest.mark.unit


def original(value: bytes | None, *, key: bytes | None = b"k-1", headers=None) -> Original:
    return Original(topic="municipal.talent-demand.v1", partition=2, offset=41, key=key, value=value,
                    headers=headers if headers is not None else [("traceparent", b"00-ab-cd-01")],
                    timestamp=1_780_000_000_000)


def test_a_record_that_fits_is_dead_lettered_byte_for_byte_with_its_headers_and_the_reason():
    letter = letter_for(original(b'{"bad": true}'), reason="payload invalid", consumer="matching.municipal")
    assert not letter.enveloped and letter.value == b'{"bad": true}' and letter.key == b"k-1"
    assert letter.headers[0] == ("traceparent", b"00-ab-cd-01")
    headers = dict(letter.headers)
    assert headers["dlq.reason"] == b"payload invalid" and headers["dlq.original.offset"] == b"41"
    assert headers["dlq.original.partition"] == b"2" and headers["dlq.consumer"] == b"matching.municipal"


def test_a_record_whose_copy_would_pass_the_record_limit_becomes_a_bounded_envelope():
    value = b"x" * (MAX_RECORD_BYTES - 200)  # the broker took it; the dead-letter headers push it over
    letter = letter_for(original(value), reason="title too long " * 1000, consumer="matching.municipal",
                        event_id="ev-1")
    assert letter.enveloped and letter.size < 32 * 1024
    doc = orjson.loads(letter.value)
    assert doc["format"] == ENVELOPE_FORMAT and doc["event_id"] == "ev-1"
    assert "over the" in doc["enveloped_because"] and doc["reason"].startswith("title too long")
    o = doc["original"]
    assert (o["topic"], o["partition"], o["offset"]) == ("municipal.talent-demand.v1", 2, 41)
    assert o["value"]["size"] == len(value) and o["value"]["sha256"] == hashlib.sha256(value).hexdigest()
    assert base64.b64decode(o["value"]["head_base64"]) == value[:DEAD_LETTER_HEAD_BYTES]
    assert o["key"]["size"] == 3 and base64.b64decode(o["key"]["base64"]) == b"k-1"
    assert o["headers"] == [{"key": "traceparent", "size": 11, "sha256": hashlib.sha256(b"00-ab-cd-01").hexdigest(),
                             "base64": base64.b64encode(b"00-ab-cd-01").decode(), "truncated": False}]
    headers = dict(letter.headers)
    assert headers["dlq.envelope"] == b"1" and headers["dlq.original.size"] == str(len(value)).encode()
    assert len(headers["dlq.reason"]) <= 4000


def test_an_envelope_stays_bounded_whatever_the_key_and_headers_hold():
    huge_key = b"k" * 500_000
    many = [(f"h{i}", b"v" * 100_000) for i in range(DEAD_LETTER_MAX_HEADERS * 2)]
    letter = envelope_for(original(b"y" * 1_000_000, key=huge_key, headers=many), reason="r", consumer="c")
    assert letter.size < 200 * 1024
    assert letter.key == b"sha256:" + hashlib.sha256(huge_key).hexdigest().encode()
    o = orjson.loads(letter.value)["original"]
    assert o["key"]["truncated"] and o["key"]["size"] == len(huge_key)
    assert len(base64.b64decode(o["key"]["base64"])) == DEAD_LETTER_FIELD_BYTES
    assert o["headers_count"] == len(many) and len(o["headers"]) == DEAD_LETTER_MAX_HEADERS
    assert all(h["truncated"] and h["size"] == 100_000 for h in o["headers"])


def test_a_tombstone_and_undecodable_bytes_are_described_too():
    letter = envelope_for(original(None, key=None), reason="tombstone", consumer="c")
    o = orjson.loads(letter.value)["original"]
    assert o["value"]["is_null"] and o["value"]["size"] == 0 and o["key"] is None and letter.key is None
    gbk = "名字".encode("gbk")
    text = orjson.loads(envelope_for(original(gbk), reason="r", consumer="c").value)["original"]["value"]
    assert base64.b64decode(text["head_base64"]) == gbk and "\ufffd" in text["head_text"]
