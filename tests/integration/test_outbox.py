"""The transactional outbox: a row and its event commit together, and the relay publishes promptly and in order."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import func, insert, select

from common.events import CloudEvent
from common.outbox import PublishFailed, producer_for
from common.service import ensure_topics
from tests.support.harness import fresh_database, read_topic
from tests.support.scratch import Scratch, WidgetPayload, contract, new_topic, outbox, widgets

pytestmark = pytest.mark.integration


@pytest.fixture
async def scratch(broker):
    topic = new_topic()
    await ensure_topics(broker.bootstrap, [topic], partitions=3, security=broker.admin)
    s = Scratch(await fresh_database("outbox"), broker.bootstrap)
    await s.create()
    await s.producer.start()
    s.topic = topic
    s.bootstrap = broker.bootstrap
    yield s
    await s.close()


async def _make(s: Scratch, name: str, *, fail: bool = False, key: str = "same-key") -> str:
    wid = str(uuid.uuid4())
    async with s.sessions() as session:
        try:
            async with session.begin():
                await session.execute(insert(widgets).values(id=wid, name=name))
                await s.stager.stage(session, contract(s.topic), key=key, payload=WidgetPayload(id=wid, name=name))
                if fail:
                    raise RuntimeError("the use case fails after staging")
        except RuntimeError:
            pass
    return wid


async def test_a_rolled_back_transaction_publishes_nothing(scratch):
    await _make(scratch, "never", fail=True)
    kept = await _make(scratch, "kept")
    async with scratch.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(widgets)) == 1
        assert await session.scalar(select(func.count()).select_from(outbox)) == 1

    await scratch.relay.publish_pending()
    records = await read_topic(scratch.bootstrap, scratch.topic,
                               until=lambda rs: any(CloudEvent.from_bytes(r.value).data["id"] == kept for r in rs))
    ids = [CloudEvent.from_bytes(r.value).data["id"] for r in records]
    assert ids == [kept], "the failed transaction's event must never reach the broker"
    async with scratch.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(outbox)) == 0, "published rows are removed"


async def test_the_relay_wakes_on_commit_instead_of_waiting_for_the_sweep(scratch):
    scratch.relay.sweep_seconds = 30.0
    task = asyncio.create_task(scratch.relay.run())
    try:
        await asyncio.sleep(0.2)  # the relay is now asleep for up to 30 s unless woken
        started = time.monotonic()
        wid = await _make(scratch, "prompt")
        await read_topic(scratch.bootstrap, scratch.topic,
                         until=lambda rs: any(CloudEvent.from_bytes(r.value).data["id"] == wid for r in rs))
        assert time.monotonic() - started < 15.0, "woken by the commit, not by the 30 s sweep (margin for a new reader)"
    finally:
        scratch.relay.stop()
        await asyncio.wait_for(task, 10)


async def test_events_of_one_key_arrive_in_commit_order(scratch):
    made = [await _make(scratch, f"n{i}", key="ordered") for i in range(50)]
    await scratch.relay.publish_pending()
    records = await read_topic(scratch.bootstrap, scratch.topic,
                               until=lambda rs: len(rs) >= 50)
    assert [CloudEvent.from_bytes(r.value).data["id"] for r in records] == made
    assert len({r.partition for r in records}) == 1, "one key, one partition"


async def test_a_worker_process_publishes_what_an_api_process_commits_without_waiting_for_the_sweep(broker):
    import registry.main
    from registry.config import Settings as RegistrySettings
    from tests.support.harness import auth, run_service

    db = await fresh_database("registry")
    async with (
        run_service(registry.main.create_app, RegistrySettings, broker=broker, db_url=db, run_workers=False) as api,
        run_service(registry.main.create_app, RegistrySettings, broker=broker, db_url=db, run_migrations=False,
                    outbox_sweep_seconds=60) as worker,
    ):
        await asyncio.sleep(0.5)  # the worker's relay has swept once and now sleeps for a minute unless notified
        started = time.monotonic()
        r = await api.http.post("/institutions", headers=auth("office_admin"), json={
            "kind": "research_institute", "name_zh": "上海期智研究院", "district": "xuhui"})
        assert r.status_code == 201, r.text
        await read_topic(broker.bootstrap, "registry.institution.v1",
                         until=lambda rs: any(x.key == r.json()["id"].encode() for x in rs))
        assert time.monotonic() - started < 15.0, "woken by the commit, not by the 60 s sweep"
        assert worker.runtime.relay is not api.runtime.relay


def _push_sequence_ahead(s: Scratch) -> None:
    """Make the real broker refuse the producer: its next sequence number for the topic's partitions skips ahead."""
    tps = [tp for tp in s.producer._txn_manager._sequence_numbers if tp.topic == s.topic]
    for tp in tps:
        s.producer._txn_manager.increment_sequence_number(tp, 5)


async def test_events_the_broker_refuses_stay_in_the_outbox_in_order_with_the_attempt_counted(scratch):
    await _make(scratch, "before")
    await scratch.relay.publish_pending()
    _push_sequence_ahead(scratch)
    refused = [await _make(scratch, f"refused {i}") for i in range(3)]
    with pytest.raises(PublishFailed, match="3 outbox events not acknowledged"):
        await scratch.relay.publish_pending()
    async with scratch.sessions() as session:
        rows = (await session.execute(select(outbox).order_by(outbox.c.seq))).all()
    assert [CloudEvent.from_bytes(r.payload).data["id"] for r in rows] == refused
    assert all(r.attempts == 1 and "OutOfOrderSequenceNumber" in r.last_error for r in rows)
    with pytest.raises(PublishFailed):
        await scratch.relay.publish_pending()
    async with scratch.sessions() as session:
        assert await session.scalar(select(func.min(outbox.c.attempts))) == 2


async def test_a_producer_out_of_step_with_the_broker_is_replaced_and_nothing_is_lost(scratch):
    """After a broker restart an idempotent producer's sequence numbers can fall out of step with the broker's, which
    then refuses everything it sends (OutOfOrderSequenceNumber) until it is replaced (aio-libs/aiokafka#1017). Here
    the real broker is made to see that gap: the producer's next sequence number for a partition is pushed ahead."""
    first = await _make(scratch, "before")
    await scratch.relay.publish_pending()
    _push_sequence_ahead(scratch)
    renewed = []

    async def renew():
        scratch.producer = scratch.relay.producer = producer_for(scratch.bootstrap, client_id="scratch-renewed",
                                                                         security=scratch.security)
        await scratch.producer.start()
        renewed.append(scratch.producer)

    scratch.relay.renew_producer = renew
    scratch.relay.sweep_seconds = 0.2
    after = await _make(scratch, "after")
    task = asyncio.create_task(scratch.relay.run())
    try:
        records = await read_topic(scratch.bootstrap, scratch.topic, timeout=30,
                                   until=lambda rs: any(CloudEvent.from_bytes(r.value).data["id"] == after for r in rs))
    finally:
        scratch.relay.stop()
        await asyncio.wait_for(task, 10)
    assert renewed, "the relay replaced the refused producer"
    ids = [CloudEvent.from_bytes(r.value).data["id"] for r in records]
    assert ids.count(first) == 1 and ids.count(after) >= 1  # in doubt means sent again; consumers drop repeats
    async with scratch.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(outbox)) == 0


async def test_a_change_whose_event_would_exceed_the_record_limit_is_refused_and_writes_nothing(scratch):
    from common.errors import PayloadTooLarge
    from common.limits import MAX_EVENT_BYTES

    wid = str(uuid.uuid4())
    async with scratch.sessions() as session:
        with pytest.raises(PayloadTooLarge, match=f"limited to {MAX_EVENT_BYTES:,} bytes"):
            async with session.begin():
                await session.execute(insert(widgets).values(id=wid, name="huge"))
                await scratch.stager.stage(session, contract(scratch.topic), key=wid,
                                           payload=WidgetPayload(id=wid, name="x" * MAX_EVENT_BYTES))
    async with scratch.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(widgets)) == 0
        assert await session.scalar(select(func.count()).select_from(outbox)) == 0


async def test_an_event_the_broker_can_never_take_is_set_aside_and_the_rest_flows_on(scratch):
    """A row too large for any broker (staged before a limit was lowered, or written by hand) must not stall the
    relay: it stays in the outbox, marked, and every other event, later ones of the same key included, goes out."""
    from common.limits import MAX_RECORD_BYTES
    from common.outbox import UNPUBLISHABLE

    before = await _make(scratch, "before", key="k")
    ev, row = scratch.stager.event_row(contract(scratch.topic), key="k",
                                       payload=WidgetPayload(id="big", name="small for now"))
    row["payload"] = b"{" + b" " * (MAX_RECORD_BYTES + 10) + b"}"  # as if staged under a larger limit
    async with scratch.sessions() as session, session.begin():
        await session.execute(insert(outbox).values(**row))
    after = [await _make(scratch, f"after {i}", key=k) for i, k in enumerate(["k", "other", "k"])]

    await scratch.relay.publish_pending()  # no PublishFailed: nothing to retry
    records = await read_topic(scratch.bootstrap, scratch.topic,
                               until=lambda rs: len(rs) >= 4)
    got = [CloudEvent.from_bytes(r.value).data["id"] for r in records]
    assert sorted(got) == sorted([before, *after]), "each other event exactly once"
    assert [i for i in got if i != after[1]] == [before, after[0], after[2]], "key k in order"
    async with scratch.sessions() as session:
        [kept] = (await session.execute(select(outbox))).all()
    assert kept.event_id == ev.id and kept.last_error.startswith(UNPUBLISHABLE)
    assert "MessageSizeTooLarge" in kept.last_error
    await scratch.relay.publish_pending()
    async with scratch.sessions() as session:
        assert await session.scalar(select(outbox.c.attempts)) == 1, "passed by, not retried"
