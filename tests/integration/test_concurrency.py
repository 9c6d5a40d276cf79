"""Every state change holds when it arrives many times at the same instant (issue 13).

The four services run in-process against the real broker and PostgreSQL; each test fires its requests together with
asyncio.gather, checks that they really overlapped (connections held at once), then checks the HTTP statuses, the
rows, the events on Kafka and, where a rule turns the event into a notice, notify's inboxes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from sqlalchemy import event, func, select

import events.main
import matching.main
import notify.main
import registry.main
from events.config import Settings as EventsSettings
from events.models import Organiser, Score, TeamMember
from matching.config import Settings as MatchingSettings
from matching.contracts import MATCH_EVENTS
from notify.config import Settings as NotifySettings
from notify.models import Delivery, Preference
from registry.config import Settings as RegistrySettings
from registry.models import InstitutionRevision
from services.events.tests.integration.helpers import activity_body, institution_event, member
from services.registry.tests.support import enterprise, new_uscc
from tests.support.harness import (
    Service,
    auth,
    fresh_database,
    partitions_of,
    produce,
    run_service,
    tooling_security,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

OFFICE = auth("office_admin", sub="office-concurrency")
TIMES = 10  # identical requests sent at once


@dataclass
class Platform:
    """The four services, started once for this module (tests use distinct data)."""

    registry: Service
    matching: Service
    events: Service
    notify: Service


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(broker) -> AsyncIterator[Platform]:
    """Registry, matching, events and notify in-process, their consumer groups starting at the topics' ends."""
    suffix = {"consumer_group_suffix": f".concurrency{uuid.uuid4().hex[:8]}"}
    async with (
        run_service(registry.main.create_app, RegistrySettings, broker=broker,
                    db_url=await fresh_database("registry"), **suffix) as reg,
        run_service(matching.main.create_app, MatchingSettings, broker=broker,
                    db_url=await fresh_database("matching"), **suffix) as mat,
        run_service(events.main.create_app, EventsSettings, broker=broker,
                    db_url=await fresh_database("events"), offer_sweep_seconds=3600, **suffix) as ev,
        run_service(notify.main.create_app, NotifySettings, broker=broker,
                    db_url=await fresh_database("notify"), **suffix) as ntf,
    ):
        yield Platform(reg, mat, ev, ntf)


# ---------------------------------------------------------------------------------------------- helpers


@asynccontextmanager
async def peak_connections(svc: Service) -> AsyncIterator[list[int]]:
    """The most database connections the service had checked out at once while the block ran."""
    engine = svc.runtime.engine.sync_engine
    peak = [0]

    def on_checkout(*_):
        peak[0] = max(peak[0], engine.pool.checkedout())

    event.listen(engine, "checkout", on_checkout)
    try:
        yield peak
    finally:
        event.remove(engine, "checkout", on_checkout)


async def at_once(svc: Service, calls: list[Awaitable]) -> list:
    """Send the requests together; assert they were in flight at the same time (each held its own connection)."""
    assert svc.runtime.settings.write_rate_per_second == 0, "the write limiter would serialise the requests"
    assert svc.runtime.engine.pool.size() >= len(calls), "the pool must let every request hold a connection"
    async with peak_connections(svc) as peak:
        responses = await asyncio.gather(*calls)
    assert peak[0] >= len(calls) // 2, f"only {peak[0]} of {len(calls)} requests overlapped"
    return list(responses)


def codes(responses) -> list[int]:
    """The HTTP statuses, sorted."""
    return sorted(r.status_code for r in responses)


async def published(svc: Service, broker, topic: str, key: str) -> list[tuple[str, dict]]:
    """(event name, data) of every event published on `topic` for `key` once the service's outbox is empty."""
    await svc.idle()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None,
                                **tooling_security(broker.bootstrap).client_kwargs())
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                found += [m for m in msgs if m.key == key.encode() and m.offset < ends[tp]]
        return [(ev["type"].rsplit(".", 1)[1], ev["data"]) for ev in (orjson.loads(m.value) for m in found)]
    finally:
        await consumer.stop()


async def inbox_notices(p: Platform, headers: dict, event_type: str, subject: str) -> list[dict]:
    """The notices of one event type about one subject in the caller's inboxes, once notify has caught up."""
    async def some():
        r = await p.notify.http.get("/inbox", params={"limit": 200}, headers=headers)
        assert r.status_code == 200, r.text
        return [m for m in r.json()["items"] if m["event_type"].endswith(event_type) and m["subject"] == subject]

    await wait_until(some, what=f"a {event_type} notice about {subject}")
    await p.notify.idle()
    await asyncio.sleep(0.5)  # a second notice, were there one, would have come with the first
    return await some()


async def organiser(p: Platform, broker, name: str, *, kind: str = "university") -> str:
    """An institution as registry would announce it, known to events and matching."""
    inst_id = str(uuid.uuid4())
    await produce(broker.bootstrap, "registry.institution.v1", [institution_event(inst_id, name, kind=kind)],
                  key=inst_id.encode())

    async def known():
        async with p.events.runtime.sessions() as s:
            in_events = await s.get(Organiser, inst_id) is not None
        return in_events and (await p.matching.http.get(f"/institutions/{inst_id}")).status_code == 200

    await wait_until(known, what=f"{name} projected in events and matching")
    return inst_id


async def open_activity(p: Platform, org: str, **kw) -> dict:
    """An activity taking registrations."""
    r = await p.events.http.post("/activities", json=activity_body(org, **kw), headers=OFFICE)
    assert r.status_code == 201, r.text
    act = r.json()
    for target in ("published", "registration_open"):
        r = await p.events.http.post(f"/activities/{act['id']}/transitions", json={"status": target}, headers=OFFICE)
        assert r.status_code == 200, r.text
    return r.json() | {"etag": r.headers["ETag"]}


async def register(p: Platform, act: dict, who: dict) -> dict:
    """A registration of `who` for the activity."""
    r = await p.events.http.post(f"/activities/{act['id']}/registrations", json={}, headers=who)
    assert r.status_code == 201, r.text
    return r.json()


# ---------------------------------------------------------------------------------------------- events: activities


async def test_transitions_of_one_activity_sent_at_once_with_one_if_match_let_one_win_and_the_rest_get_412(
        platform, broker):
    org = await organiser(platform, broker, "并发测试职业学院")
    act = await open_activity(platform, org)
    url = f"/activities/{act['id']}/transitions"
    targets = ["registration_closed", "cancelled"] * 4
    responses = await at_once(platform.events, [platform.events.http.post(
        url, json={"status": t}, headers=OFFICE | {"If-Match": act["etag"]}) for t in targets])
    assert codes(responses) == [200] + [412] * 7, [r.text for r in responses]
    [won] = [r.json() for r in responses if r.status_code == 200]
    assert won["version"] == act["version"] + 1
    now = (await platform.events.http.get(f"/activities/{act['id']}", headers=OFFICE)).json()
    assert (now["status"], now["version"]) == (won["status"], won["version"])
    story = await published(platform.events, broker, "events.activity.v1", act["id"])
    after_open = [(name, data["version"]) for name, data in story if data["version"] > act["version"]]
    assert after_open == [({"registration_closed": "registration_closed", "cancelled": "cancelled"}[won["status"]],
                           won["version"])]


async def test_the_same_transition_of_one_activity_sent_at_once_happens_once_and_the_rest_get_409(platform, broker):
    org = await organiser(platform, broker, "并发关闭报名学院")
    act = await open_activity(platform, org)
    url = f"/activities/{act['id']}/transitions"
    responses = await at_once(platform.events, [platform.events.http.post(
        url, json={"status": "registration_closed"}, headers=OFFICE) for _ in range(8)])
    assert codes(responses) == [200] + [409] * 7, [r.text for r in responses]
    assert all(r.json()["allowed"] == ["ongoing", "cancelled"] for r in responses if r.status_code == 409)
    story = await published(platform.events, broker, "events.activity.v1", act["id"])
    assert [name for name, _ in story].count("registration_closed") == 1


# ---------------------------------------------------------------------------------------------- events: teams


async def test_n_members_joining_a_team_with_room_for_k_at_once_let_exactly_k_in_and_the_rest_get_409(
        platform, broker):
    org = await organiser(platform, broker, "并发组队技师学院")
    act = await open_activity(platform, org, kind="competition", title_zh="并发组队挑战赛")
    track = await platform.events.http.post(f"/activities/{act['id']}/tracks", headers=OFFICE, json={
        "name_zh": "高职组", "team_min": 1, "team_max": 4,
        "rubric": [{"key": "craft", "label_zh": "工艺", "weight": 100, "max_points": 10}]})
    assert track.status_code == 201, track.text
    team = await platform.events.http.post(f"/activities/{act['id']}/teams", headers=member(sub="cap-1"), json={
        "track_id": track.json()["id"], "name": "并发队", "institution_id": org})
    assert team.status_code == 201, team.text
    team = team.json()

    async def members() -> int:
        async with platform.events.runtime.sessions() as s:
            return (await s.execute(select(func.count()).select_from(TeamMember)
                                    .where(TeamMember.team_id == team["id"]))).scalar_one()

    eager = member(sub=f"eager-{uuid.uuid4().hex[:6]}")
    responses = await at_once(platform.events, [platform.events.http.post(
        "/teams/join", json={"join_code": team["join_code"]}, headers=eager) for _ in range(TIMES)])
    assert codes(responses) == [200] * TIMES, [r.text for r in responses]
    assert await members() == 2, "one member joining ten times at once joins once"

    joiners = [member(sub=f"joiner-{uuid.uuid4().hex[:6]}") for _ in range(12)]
    responses = await at_once(platform.events, [platform.events.http.post(
        "/teams/join", json={"join_code": team["join_code"]}, headers=h) for h in joiners])
    assert codes(responses) == [200] * 2 + [409] * 10, [r.text for r in responses]
    assert all("at most 4" in r.json()["detail"] for r in responses if r.status_code == 409)
    assert await members() == 4


async def test_a_judges_score_sent_ten_times_at_once_is_one_score_and_never_a_409(platform, broker):
    org = await organiser(platform, broker, "并发评分技师学院")
    act = await open_activity(platform, org, kind="competition", title_zh="并发评分挑战赛")
    track = (await platform.events.http.post(f"/activities/{act['id']}/tracks", headers=OFFICE, json={
        "name_zh": "中职组", "team_min": 1, "team_max": 2,
        "rubric": [{"key": "craft", "label_zh": "工艺", "weight": 100, "max_points": 10}]})).json()
    captain = member(sub=f"cap-{uuid.uuid4().hex[:6]}")
    team = (await platform.events.http.post(f"/activities/{act['id']}/teams", headers=captain, json={
        "track_id": track["id"], "name": "评分队", "institution_id": org})).json()
    r = await platform.events.http.put(f"/teams/{team['id']}/submission", json={"title": "作品"}, headers=captain)
    assert r.status_code == 200, r.text
    judge = f"judge-{uuid.uuid4().hex[:6]}"
    r = await platform.events.http.post(f"/activities/{act['id']}/tracks/{track['id']}/judges", headers=OFFICE,
                                        json={"judge_id": judge, "institution_id": None})
    assert r.status_code == 201, r.text
    responses = await at_once(platform.events, [platform.events.http.put(
        f"/teams/{team['id']}/scores/me", json={"points": {"craft": 8}}, headers=auth("judge", sub=judge))
        for _ in range(TIMES)])
    assert codes(responses) == [200] * TIMES, [r.text for r in responses]
    async with platform.events.runtime.sessions() as s:
        scores = (await s.execute(select(Score).where(Score.team_id == team["id"]))).scalars().all()
    assert [(x.judge_id, x.points) for x in scores] == [(judge, {"craft": 8})]


# ---------------------------------------------------------------------------------------------- events: registrations


async def test_ten_withdrawals_of_one_registration_at_once_withdraw_it_once_publish_once_and_notify_once(
        platform, broker):
    org = await organiser(platform, broker, "并发退出学院")
    act = await open_activity(platform, org, capacity=5)
    who = member(sub=f"leaver-{uuid.uuid4().hex[:6]}")
    reg = await register(platform, act, who)
    url = f"/registrations/{reg['id']}/withdraw"
    responses = await at_once(platform.events, [platform.events.http.post(url, headers=who) for _ in range(TIMES)])
    assert codes(responses) == [200] * TIMES, [r.text for r in responses]
    assert {(r.json()["status"], r.json()["version"]) for r in responses} == {("withdrawn", reg["version"] + 1)}
    story = await published(platform.events, broker, "events.registration.v1", reg["id"])
    assert [name for name, _ in story] == ["confirmed", "withdrawn"]
    assert len(await inbox_notices(platform, who, "registration.withdrawn", reg["id"])) == 1


async def test_ten_acceptances_of_one_offer_at_once_confirm_it_once_publish_once_and_notify_once(platform, broker):
    org = await organiser(platform, broker, "并发递补学院")
    act = await open_activity(platform, org, capacity=1)
    first, second = member(sub=f"first-{uuid.uuid4().hex[:6]}"), member(sub=f"second-{uuid.uuid4().hex[:6]}")
    seat = await register(platform, act, first)
    waiting = await register(platform, act, second)
    assert (seat["status"], waiting["status"]) == ("confirmed", "waitlisted")
    assert (await platform.events.http.post(f"/registrations/{seat['id']}/withdraw", headers=first)).status_code == 200
    offered = (await platform.events.http.get(f"/registrations/{waiting['id']}", headers=second)).json()
    assert offered["status"] == "offered"
    url = f"/registrations/{waiting['id']}/accept"
    responses = await at_once(platform.events, [platform.events.http.post(url, headers=second) for _ in range(TIMES)])
    assert codes(responses) == [200] * TIMES, [r.text for r in responses]
    assert {(r.json()["status"], r.json()["version"]) for r in responses} == {("confirmed", offered["version"] + 1)}
    story = await published(platform.events, broker, "events.registration.v1", waiting["id"])
    assert [name for name, _ in story] == ["waitlisted", "offer_made", "promoted"]
    assert len(await inbox_notices(platform, second, "registration.promoted", waiting["id"])) == 1


async def test_ten_scans_of_one_badge_at_once_check_it_in_once_and_publish_once(platform, broker):
    org = await organiser(platform, broker, "并发签到学院")
    act = await open_activity(platform, org, capacity=5)
    who = member(sub=f"guest-{uuid.uuid4().hex[:6]}")
    reg = await register(platform, act, who)
    lst = await platform.events.http.post(f"/activities/{act['id']}/checkin-lists", json={"name": "主入口"},
                                          headers=OFFICE)
    assert lst.status_code == 201, lst.text
    url = f"/checkin-lists/{lst.json()['id']}/checkins"
    responses = await at_once(platform.events, [platform.events.http.post(
        url, json={"token": reg["checkin_token"]}, headers=OFFICE) for _ in range(TIMES)])
    assert codes(responses) == [200] * TIMES, [r.text for r in responses]
    assert sorted(r.json()["already"] for r in responses) == [False] + [True] * (TIMES - 1)
    assert len({r.json()["checked_in_at"] for r in responses}) == 1
    figures = (await platform.events.http.get(f"/activities/{act['id']}/attendance", headers=OFFICE)).json()
    assert figures["checked_in_any"] == 1 and figures["lists"][0]["checked_in"] == 1
    story = await published(platform.events, broker, "events.registration.v1", reg["id"])
    assert [name for name, _ in story] == ["confirmed", "checked_in"]


# ---------------------------------------------------------------------------------------------- matching


async def proposed_match(p: Platform, broker, *, capacity: int = 2) -> tuple[dict, dict, dict, dict]:
    """An open opportunity of an enterprise and a school's proposal on it: (opportunity, match, owner, proposer)."""
    owner = await organiser(p, broker, f"并发对接企业{uuid.uuid4().hex[:4]}", kind="enterprise")
    school = await organiser(p, broker, f"并发对接学院{uuid.uuid4().hex[:4]}")
    owner_admin = auth("institution_admin", institution=owner)
    school_admin = auth("institution_admin", institution=school)
    opp = await p.matching.http.post("/opportunities", headers=owner_admin, json={
        "kind": "order_class", "institution_id": owner, "title_zh": "并发订单班", "description_zh": "并发测试",
        "skills": ["测试"], "industries": ["integrated_circuits"], "district": "lingang", "capacity": capacity,
        "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(), "open": True})
    assert opp.status_code == 201, opp.text
    m = await p.matching.http.post("/matches", json={"opportunity_id": opp.json()["id"]}, headers=school_admin)
    assert m.status_code == 201, m.text
    return opp.json(), m.json(), owner_admin, school_admin


async def test_ten_acceptances_of_one_match_at_once_accept_it_once_publish_once_and_notify_each_side_once(
        platform, broker):
    _, m, owner_admin, school_admin = await proposed_match(platform, broker)
    url = f"/matches/{m['id']}/accept"
    responses = await at_once(platform.matching, [platform.matching.http.post(url, headers=owner_admin)
                                                  for _ in range(TIMES)])
    assert codes(responses) == [200] * TIMES, [r.text for r in responses]
    assert {(r.json()["status"], r.json()["version"]) for r in responses} == {("accepted", m["version"] + 1)}
    story = await published(platform.matching, broker, "matching.match.v1", m["id"])
    assert [name for name, _ in story] == ["proposed", "accepted"]
    for side in (owner_admin, school_admin):
        assert len(await inbox_notices(platform, side, "match.accepted", m["id"])) == 1


async def test_a_decline_and_a_withdrawal_of_one_match_sent_at_once_let_exactly_one_win(platform, broker):
    _, m, owner_admin, school_admin = await proposed_match(platform, broker)
    calls = [platform.matching.http.post(f"/matches/{m['id']}/decline", headers=owner_admin) for _ in range(5)]
    calls += [platform.matching.http.post(f"/matches/{m['id']}/withdraw", headers=school_admin) for _ in range(5)]
    responses = await at_once(platform.matching, calls)
    final = (await platform.matching.http.get(f"/matches/{m['id']}", headers=OFFICE)).json()
    assert final["status"] in ("declined", "withdrawn") and final["version"] == m["version"] + 1
    winner = slice(0, 5) if final["status"] == "declined" else slice(5, 10)
    loser = slice(5, 10) if final["status"] == "declined" else slice(0, 5)
    assert [r.status_code for r in responses[winner]] == [200] * 5, "the winning action's repeats see it done"
    assert [r.status_code for r in responses[loser]] == [409] * 5, [r.text for r in responses]
    story = await published(platform.matching, broker, "matching.match.v1", m["id"])
    won_event = MATCH_EVENTS[final["status"]].name.rsplit(".", 1)[1]  # a withdrawal is published as `cancelled`
    assert [(name, data["status"]) for name, data in story] == [("proposed", "proposed"), (won_event, final["status"])]


async def test_closes_of_one_opportunity_sent_at_once_let_one_win_and_publish_one_event(platform, broker):
    opp, _, owner_admin, _ = await proposed_match(platform, broker)
    responses = await at_once(platform.matching, [platform.matching.http.post(
        f"/opportunities/{opp['id']}/close", headers=owner_admin) for _ in range(8)])
    assert codes(responses) == [200] + [409] * 7, [r.text for r in responses]
    now = (await platform.matching.http.get(f"/opportunities/{opp['id']}")).json()
    assert (now["status"], now["version"]) == ("closed", opp["version"] + 1)
    story = await published(platform.matching, broker, "matching.opportunity.v1", opp["id"])
    assert [name for name, _ in story] == ["opened", "closed"]


async def test_the_last_seats_of_an_opportunity_taken_at_once_mark_it_matched_once(platform, broker):
    opp, first, owner_admin, _ = await proposed_match(platform, broker, capacity=2)
    other = await organiser(platform, broker, f"并发第二学院{uuid.uuid4().hex[:4]}")
    second = await platform.matching.http.post("/matches", json={"opportunity_id": opp["id"]},
                                               headers=auth("institution_admin", institution=other))
    assert second.status_code == 201, second.text
    responses = await at_once(platform.matching, [platform.matching.http.post(
        f"/matches/{mid}/accept", headers=owner_admin) for mid in (first["id"], second.json()["id"]) * 3])
    assert codes(responses) == [200] * 6, [r.text for r in responses]
    now = (await platform.matching.http.get(f"/opportunities/{opp['id']}")).json()
    assert now["status"] == "matched" and now["version"] == opp["version"] + 1
    story = await published(platform.matching, broker, "matching.opportunity.v1", opp["id"])
    assert [name for name, _ in story] == ["opened", "matched"]


async def test_runs_of_one_placement_round_sent_at_once_publish_it_once(platform, broker):
    body = {"name": "并发实习分配", "kind": "internship", "seed": 7,
            "positions": [{"id": "fab", "title": "晶圆厂实习", "capacity": 1},
                          {"id": "lab", "title": "联合实验室", "capacity": 1}],
            "participants": [{"id": f"p{i}", "preferences": ["fab", "lab"]} for i in range(3)]}
    rnd = await platform.matching.http.post("/placement-rounds", json=body, headers=OFFICE)
    assert rnd.status_code == 201, rnd.text
    rnd = rnd.json()
    responses = await at_once(platform.matching, [platform.matching.http.post(
        f"/placement-rounds/{rnd['id']}/run", headers=OFFICE) for _ in range(8)])
    assert codes(responses) == [200] + [409] * 7, [r.text for r in responses]
    assert (await platform.matching.http.get(f"/placement-rounds/{rnd['id']}")).json()["version"] == rnd["version"] + 1
    story = await published(platform.matching, broker, "matching.placement.v1", rnd["id"])
    assert [name for name, _ in story] == ["round_published"]
    for i in range(3):
        one = await published(platform.matching, broker, "matching.placement.v1", f"{rnd['id']}:p{i}")
        assert len(one) == 1, f"p{i} was told {len(one)} times"


# ---------------------------------------------------------------------------------------------- registry


async def test_conflicting_steps_of_one_certification_file_sent_at_once_let_exactly_one_win(platform, broker):
    reg = platform.registry
    batch = await reg.http.post("/certification-batches", headers=OFFICE, json={
        "name": f"并发批次{uuid.uuid4().hex[:6]}", "year": 2026, "objection_window_days": 7})
    inst = await reg.http.post("/institutions", json=enterprise("上海并发认定有限公司"), headers=OFFICE)
    cert = await reg.http.post("/certifications", json={"institution_id": inst.json()["id"]}, headers=OFFICE)
    assert cert.status_code == 201, cert.text
    cert = cert.json()
    url = f"/certifications/{cert['id']}/steps"
    for action, extra in (("apply", {"batch_id": batch.json()["id"]}), ("approve", {})):
        r = await reg.http.post(url, json={"action": action, **extra}, headers=OFFICE)
        assert r.status_code == 200, r.text
    before = r.json()
    responses = await at_once(reg, [reg.http.post(url, json={"action": a}, headers=OFFICE)
                                    for a in ["certify", "reject"] * 4])
    assert codes(responses) == [200] + [409] * 7, [r.text for r in responses]
    [won] = [r.json() for r in responses if r.status_code == 200]
    assert won["version"] == before["version"] + 1
    story = await published(reg, broker, "registry.certification.v1", cert["id"])
    assert [data["status"] for _, data in story if data["version"] > before["version"]] == [won["status"]]


async def test_patches_of_an_institution_sent_at_once_with_one_if_match_answer_one_200_and_412_to_every_other(
        platform, broker):
    reg = platform.registry
    created = await reg.http.post("/institutions", json=enterprise("上海并发编辑有限公司"), headers=OFFICE)
    assert created.status_code == 201, created.text
    inst = created.json()
    uscc = new_uscc()  # every request also claims the same new identifier: its unique index must not answer 409
    responses = await at_once(reg, [reg.http.patch(
        f"/institutions/{inst['id']}", json={"name_zh": f"上海并发编辑{i}号有限公司", "uscc": uscc},
        headers=OFFICE | {"If-Match": created.headers["ETag"]}) for i in range(8)])
    assert codes(responses) == [200] + [412] * 7, [r.text for r in responses]
    [won] = [r.json() for r in responses if r.status_code == 200]
    assert won["version"] == 2 and won["uscc"] == uscc
    async with reg.runtime.sessions() as s:
        versions = (await s.execute(select(InstitutionRevision.version)
                                    .where(InstitutionRevision.institution_id == inst["id"]))).scalars().all()
    assert sorted(versions) == [1, 2]
    story = await published(reg, broker, "registry.institution.v1", inst["id"])
    assert [name for name, _ in story] == ["registered", "updated"]


async def test_two_institutions_merged_into_each_other_at_once_end_with_one_merge_never_a_cycle(platform, broker):
    reg = platform.registry
    pairs = []
    for n in range(3):
        a = (await reg.http.post("/institutions", json=enterprise(f"上海并发合并{n}甲有限公司"), headers=OFFICE)).json()
        b = (await reg.http.post("/institutions", json=enterprise(f"上海并发合并{n}乙有限公司"), headers=OFFICE)).json()
        pairs.append((a, b))
    calls = [(x, y) for a, b in pairs for x, y in ((a, b), (b, a)) * 2]
    responses = await at_once(reg, [reg.http.post(f"/institutions/{x['id']}/merge", json={"successor_id": y["id"]},
                                                  headers=OFFICE) for x, y in calls])
    for n, (a, b) in enumerate(pairs):
        mine = responses[4 * n:4 * n + 4]
        assert codes(mine) == [200, 409, 409, 409], [r.text for r in mine]
        now = {i["id"]: (await reg.http.get(f"/institutions/{i['id']}", headers=OFFICE)).json() for i in (a, b)}
        withdrawn = [i for i in now.values() if i["status"] == "withdrawn"]
        assert len(withdrawn) == 1, "exactly one record of the pair is merged away"
        assert now[withdrawn[0]["successor_id"]]["status"] == "active"
        story = await published(reg, broker, "registry.institution.v1", withdrawn[0]["id"])
        assert [name for name, _ in story] == ["registered", "merged"]


# ---------------------------------------------------------------------------------------------- notify


async def test_the_same_preference_saved_ten_times_at_once_is_one_row_and_never_a_409(platform):
    who = f"pref-{uuid.uuid4().hex[:6]}"
    headers = auth("member", sub=who)
    responses = await at_once(platform.notify, [platform.notify.http.put(
        "/me/preferences/progress/email", json={"enabled": False}, headers=headers) for _ in range(TIMES)])
    assert codes(responses) == [200] * TIMES, [r.text for r in responses]
    async with platform.notify.runtime.sessions() as s:
        rows = (await s.execute(select(Preference).where(Preference.recipient == who))).scalars().all()
    assert [(p.category, p.channel, p.enabled) for p in rows] == [("progress", "email", False)]


async def test_the_same_sms_receipt_ten_times_at_once_is_applied_once_and_published_once(platform, broker):
    biz_id = f"biz-{uuid.uuid4().hex[:8]}"
    async with platform.notify.runtime.sessions() as s, s.begin():
        sent = Delivery(event_id=str(uuid.uuid4()), recipient="someone", channel="sms", category="offer",
                        address="13800000000", status="sent", provider_id=biz_id, attempts=1)
        s.add(sent)
    responses = await at_once(platform.notify, [platform.notify.http.post(
        "/deliveries/sms-receipts", json={"biz_id": biz_id, "success": True}, headers=auth("integration"))
        for _ in range(TIMES)])
    assert codes(responses) == [200] * TIMES, [r.text for r in responses]
    assert {(r.json()["status"], r.json()["version"]) for r in responses} == {("delivered", sent.version + 1)}
    story = await published(platform.notify, broker, "notify.delivery.v1", sent.id)
    assert [name for name, _ in story] == ["delivered"]
