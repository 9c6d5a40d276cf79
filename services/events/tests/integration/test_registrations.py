"""Registration: capacity under a storm, idempotency, waitlist offers and expiry, withdrawal, cancellation fan-out,
consent, check-in and attendance."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from services.events.tests.integration.helpers import (
    OFFICE,
    events_service,
    feed_institutions,
    member,
    new_id,
    open_activity,
)
from tests.support.harness import auth, read_topic, wait_until

pytestmark = pytest.mark.integration


def payloads(records, *, key: str | None = None, activity_id: str | None = None) -> list[tuple[str, dict]]:
    """(event name, data) of registration records, filtered by registration or activity."""
    out = []
    for r in records:
        ev = orjson.loads(r.value)
        if (key and r.key != key.encode()) or (activity_id and ev["data"]["activity_id"] != activity_id):
            continue
        out.append((ev["type"].rsplit(".", 1)[1], ev["data"]))
    return out


async def test_a_storm_at_the_capacity_boundary_never_overbooks_and_the_same_person_gets_one_registration(broker):
    org = new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海第二工业大学"))
        act = await open_activity(svc, org, capacity=7)
        url = f"/activities/{act['id']}/registrations"
        people = [member(sub=f"storm-{i}") for i in range(40)]
        responses = await asyncio.gather(*(svc.http.post(url, json={}, headers=h) for h in people))
        assert all(r.status_code == 201 for r in responses), [r.text for r in responses if r.status_code != 201]
        statuses = [r.json()["status"] for r in responses]
        assert statuses.count("confirmed") == 7 and statuses.count("waitlisted") == 33
        positions = sorted(r.json()["queue_position"] for r in responses if r.json()["status"] == "waitlisted")
        assert positions == list(range(1, 34))

        same = member(sub="eager-person")
        again = await asyncio.gather(*(svc.http.post(url, json={}, headers=same) for _ in range(8)))
        assert len({r.json()["id"] for r in again}) == 1
        assert sorted(r.status_code for r in again) == [200] * 7 + [201]

        listing = (await svc.http.get(url, headers=OFFICE)).json()["items"]
        assert sum(r["status"] == "confirmed" for r in listing) == 7
        assert len(listing) == 41


async def test_a_freed_seat_is_offered_the_offer_expires_and_moves_on_then_is_accepted(broker):
    org = new_id()
    async with events_service(broker, offer_ttl_seconds=3600) as svc:
        await feed_institutions(svc, broker, (org, "上海电机学院"))
        act = await open_activity(svc, org, capacity=1)
        url = f"/activities/{act['id']}/registrations"
        a, b, c = member(sub="alice"), member(sub="bob"), member(sub="carol")
        ra = (await svc.http.post(url, json={}, headers=a)).json()
        rb = (await svc.http.post(url, json={}, headers=b)).json()
        rc = (await svc.http.post(url, json={}, headers=c)).json()
        assert (ra["status"], rb["status"], rc["status"]) == ("confirmed", "waitlisted", "waitlisted")
        assert (rb["queue_position"], rc["queue_position"]) == (1, 2)
        assert (await svc.http.get(f"/registrations/{rc['id']}", headers=c)).json()["queue_position"] == 2

        w = await svc.http.post(f"/registrations/{ra['id']}/withdraw", headers=a)
        assert w.status_code == 200 and w.json()["status"] == "withdrawn"
        offered = (await svc.http.get(f"/registrations/{rb['id']}", headers=b)).json()
        assert offered["status"] == "offered" and offered["offer_expires_at"] is not None
        assert (await svc.http.get(f"/registrations/{rc['id']}", headers=c)).json()["queue_position"] == 1
        again = await svc.http.post(f"/registrations/{ra['id']}/withdraw", headers=a)
        assert again.status_code == 200 and again.json()["status"] == "withdrawn"  # a repeat: no second event below
        assert again.json()["version"] == w.json()["version"]

        svc.app.state.clock.advance(3601)

        async def bob_expired():
            return (await svc.http.get(f"/registrations/{rb['id']}", headers=b)).json()["status"] == "expired"

        await wait_until(bob_expired, what="the background sweep to expire bob's offer")
        assert (await svc.http.get(f"/registrations/{rc['id']}", headers=c)).json()["status"] == "offered"
        late = await svc.http.post(f"/registrations/{rb['id']}/accept", headers=b)
        assert late.status_code == 409
        assert (await svc.http.post(f"/registrations/{rc['id']}/accept", headers=b)).status_code == 404
        ok = await svc.http.post(f"/registrations/{rc['id']}/accept", headers=c)
        assert ok.status_code == 200 and ok.json()["status"] == "confirmed"

        # bob comes back: same registration, back of the queue
        back = await svc.http.post(url, json={}, headers=b)
        assert back.status_code == 201 and back.json()["id"] == rb["id"] and back.json()["status"] == "waitlisted"

        records = await read_topic(broker.bootstrap, "events.registration.v1",
                                   until=lambda rs: len(payloads(rs, activity_id=act["id"])) >= 9)
        story = {reg["id"]: [n for n, _ in payloads(records, key=reg["id"])] for reg in (ra, rb, rc)}
        assert story == {  # ordered per registration (the Kafka key); partitions interleave them
            ra["id"]: ["confirmed", "withdrawn"],
            rb["id"]: ["waitlisted", "offer_made", "offer_expired", "waitlisted"],
            rc["id"]: ["waitlisted", "offer_made", "promoted"],
        }
        made = payloads(records, key=rb["id"])
        assert made[0][1]["queue_position"] == 1 and made[0][1]["activity_title"] == act["title_zh"]
        assert payloads(records, key=rc["id"])[0][1]["queue_position"] == 2  # the event carries the real place in line
        assert payloads(records, key=ra["id"])[0][1]["queue_position"] is None
        assert payloads(records, key=ra["id"])[0][1]["activity_title"] == act["title_zh"]


async def test_raising_capacity_offers_seats_and_a_session_has_its_own_pool(broker):
    org = new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海城建职业学院"))
        act = await open_activity(svc, org, capacity=1)
        s = await svc.http.post(f"/activities/{act['id']}/sessions", headers=OFFICE, json={
            "title_zh": "专场：智能制造", "starts_at": "2027-05-20T10:00:00", "ends_at": "2027-05-20T11:00:00",
            "capacity": 1})
        assert s.status_code == 201, s.text
        sid = s.json()["id"]
        url = f"/activities/{act['id']}/registrations"
        x, y = member(sub="x"), member(sub="y")
        assert (await svc.http.post(url, json={}, headers=x)).json()["status"] == "confirmed"
        assert (await svc.http.post(url, json={"session_id": sid}, headers=x)).json()["status"] == "confirmed"
        wy = (await svc.http.post(url, json={"session_id": sid}, headers=y)).json()
        assert wy["status"] == "waitlisted"
        sessions = (await svc.http.get(f"/activities/{act['id']}/sessions")).json()["items"]
        assert (sessions[0]["confirmed"], sessions[0]["waitlisted"]) == (1, 1)
        r = await svc.http.put(f"/activities/{act['id']}/sessions/{sid}/capacity", json={"capacity": 2},
                               headers=OFFICE)
        assert r.status_code == 200
        assert (await svc.http.get(f"/registrations/{wy['id']}", headers=y)).json()["status"] == "offered"
        shrink = await svc.http.put(f"/activities/{act['id']}/capacity", json={"capacity": None}, headers=OFFICE)
        assert shrink.status_code == 200 and shrink.json()["capacity"] is None


async def test_cancelling_an_activity_ends_every_registration_and_names_every_registrant(broker):
    org = new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海健康医学院"))
        act = await open_activity(svc, org, capacity=2)
        url = f"/activities/{act['id']}/registrations"
        subs = ["p1", "p2", "p3"]
        for s in subs:
            await svc.http.post(url, json={}, headers=member(sub=s))
        admin = auth("institution_admin", institution=org)
        inst = await svc.http.post(url, json={"participant_kind": "institution", "institution_id": org},
                                   headers=admin)
        assert inst.status_code == 201 and inst.json()["status"] == "waitlisted"
        r = await svc.http.post(f"/activities/{act['id']}/transitions",
                                json={"status": "cancelled", "reason": "台风预警"}, headers=OFFICE)
        assert r.status_code == 200 and r.json()["cancel_reason"] == "台风预警"
        regs = (await svc.http.get(url, headers=OFFICE)).json()["items"]
        assert {x["status"] for x in regs} == {"cancelled"}
        late = await svc.http.post(url, json={}, headers=member(sub="p9"))
        assert late.status_code == 409

        records = await read_topic(
            broker.bootstrap, "events.activity.v1",
            until=lambda rs: any(r.key == act["id"].encode() and b".cancelled" in r.value for r in rs))
        [cancelled] = [orjson.loads(r.value) for r in records if r.key == act["id"].encode()
                       and b".cancelled" in r.value]
        assert cancelled["data"]["status"] == "cancelled"
        assert sorted(cancelled["data"]["registrant_ids"]) == sorted([*subs, admin_sub(admin)])


def admin_sub(headers) -> str:
    """The sub inside a bearer token."""
    import jwt

    return jwt.decode(headers["Authorization"].split()[1], options={"verify_signature": False})["sub"]


async def test_check_in_by_token_on_several_lists_counts_attendance_and_respects_consent(broker):
    org = new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海出版印刷高等专科学校"))
        act = await open_activity(svc, org, capacity=10)
        url = f"/activities/{act['id']}/registrations"
        shy = member(sub="shy", name="沈一")
        open_ = member(sub="open", name="王二", institution=org)
        r_shy = (await svc.http.post(url, json={"contact_phone": "13900000000"}, headers=shy)).json()
        r_open = (await svc.http.post(url, json={"public_consent": True, "contact_email": "w@example.cn"},
                                      headers=open_)).json()
        assert r_shy["checkin_token"] and r_shy["contact_phone"] == "13900000000"

        public = (await svc.http.get(f"/activities/{act['id']}/participants")).json()["items"]
        assert public == [{"display_name": "王二", "participant_kind": "individual",
                           "institution_name": "上海出版印刷高等专科学校"}]
        consent = await svc.http.put(f"/registrations/{r_shy['id']}/consent", json={"public_consent": True},
                                     headers=shy)
        assert consent.status_code == 200
        assert len((await svc.http.get(f"/activities/{act['id']}/participants")).json()["items"]) == 2
        nosy = await svc.http.get(f"/registrations/{r_shy['id']}", headers=open_)
        assert nosy.status_code == 404, "another member cannot read someone's registration"
        admin = auth("institution_admin", institution=org)
        as_admin = (await svc.http.get(url, headers=admin)).json()["items"]
        assert all(x["checkin_token"] is None for x in as_admin), ("tokens are for the registrant", as_admin)
        assert {x["contact_phone"] for x in as_admin} == {"13900000000", None}

        gate = (await svc.http.post(f"/activities/{act['id']}/checkin-lists", json={"name": "主入口"},
                                    headers=admin)).json()
        lunch = (await svc.http.post(f"/activities/{act['id']}/checkin-lists", json={"name": "午餐"},
                                     headers=admin)).json()
        scan = f"/checkin-lists/{gate['id']}/checkins"
        first = await svc.http.post(scan, json={"token": r_shy["checkin_token"]}, headers=admin)
        assert first.status_code == 200 and first.json()["already"] is False
        second = await svc.http.post(scan, json={"token": r_shy["checkin_token"]}, headers=admin)
        assert second.json()["already"] is True
        await svc.http.post(f"/checkin-lists/{lunch['id']}/checkins", json={"token": r_shy["checkin_token"]},
                            headers=admin)
        bogus = await svc.http.post(scan, json={"token": "not-a-real-token"}, headers=admin)
        assert bogus.status_code == 404
        assert (await svc.http.post(scan, json={"token": r_open["checkin_token"]},
                                    headers=member())).status_code == 403

        att = (await svc.http.get(f"/activities/{act['id']}/attendance", headers=admin)).json()
        assert (att["confirmed"], att["checked_in_any"], att["attendance_rate"]) == (2, 1, 0.5)
        assert {x["name"]: x["checked_in"] for x in att["lists"]} == {"主入口": 1, "午餐": 1}
        mine = (await svc.http.get("/me/registrations", headers=shy)).json()["items"]
        assert mine[0]["checked_in"] is True

        records = await read_topic(broker.bootstrap, "events.registration.v1",
                                   until=lambda rs: len([n for n, _ in payloads(rs, key=r_shy["id"])
                                                         if n == "checked_in"]) >= 2)
        ins = [d for n, d in payloads(records, key=r_shy["id"]) if n == "checked_in"]
        assert {d["checkin_list_id"] for d in ins} == {gate["id"], lunch["id"]}
        assert all("contact_phone" not in d for _, d in payloads(records, key=r_shy["id"])), "no personal data"


async def test_accepting_a_lapsed_offer_is_refused_and_the_seat_moves_on_even_before_the_sweep(broker):
    org = new_id()
    async with events_service(broker, offer_sweep_seconds=3600) as svc:
        await feed_institutions(svc, broker, (org, "上海震旦职业学院"))
        act = await open_activity(svc, org, capacity=1, offer_ttl_seconds=600)
        url = f"/activities/{act['id']}/registrations"
        a, b, c = member(sub="a1"), member(sub="b1"), member(sub="c1")
        ra = (await svc.http.post(url, json={}, headers=a)).json()
        rb = (await svc.http.post(url, json={}, headers=b)).json()
        rc = (await svc.http.post(url, json={}, headers=c)).json()
        await svc.http.post(f"/registrations/{ra['id']}/withdraw", headers=OFFICE)
        offered = (await svc.http.get(f"/registrations/{rb['id']}", headers=b)).json()
        assert offered["status"] == "offered"
        assert (await svc.http.get(f"/registrations/{ra['id']}", headers=a)).json()["status"] == "withdrawn"

        svc.app.state.clock.advance(601)  # the activity's own 10-minute offer time, not the service default
        late = await svc.http.post(f"/registrations/{rb['id']}/accept", headers=b)
        assert late.status_code == 409 and "lapsed" in late.json()["detail"]
        assert (await svc.http.get(f"/registrations/{rb['id']}", headers=b)).json()["status"] == "expired"
        assert (await svc.http.get(f"/registrations/{rc['id']}", headers=c)).json()["status"] == "offered"
        declined = await svc.http.post(f"/registrations/{rc['id']}/withdraw", headers=c)
        assert declined.status_code == 200 and declined.json()["status"] == "withdrawn"
        att = (await svc.http.get(f"/activities/{act['id']}/attendance", headers=OFFICE)).json()
        assert (att["confirmed"], att["waitlisted"]) == (0, 0)


async def test_no_registration_survives_a_cancellation_that_races_with_a_storm(broker):
    org = new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海农林职业技术学院"))
        act = await open_activity(svc, org)
        url = f"/activities/{act['id']}/registrations"
        people = [member(sub=f"race-{i}") for i in range(30)]

        async def cancel_midway():
            await asyncio.sleep(0.02)
            return await svc.http.post(f"/activities/{act['id']}/transitions", json={"status": "cancelled"},
                                       headers=OFFICE)

        *regs, cancelled = await asyncio.gather(*(svc.http.post(url, json={}, headers=h) for h in people),
                                                cancel_midway())
        assert cancelled.status_code == 200
        assert {r.status_code for r in regs} <= {201, 409}
        listing = (await svc.http.get(url, headers=OFFICE)).json()["items"]
        assert {x["status"] for x in listing} <= {"cancelled"}, "a registration slipped in after the cancellation"
        assert len(listing) == sum(r.status_code == 201 for r in regs)


async def test_a_member_registers_under_their_own_institution_only(broker):
    org, school_a, school_b = new_id(), new_id(), new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海会展中心"))
        act = await open_activity(svc, org, capacity=None)
        url = f"/activities/{act['id']}/registrations"
        student = auth("member", institution=school_b, sub="student-of-b")
        r = await svc.http.post(url, json={"institution_id": school_a}, headers=student)
        assert r.status_code == 403 and school_a in r.json()["detail"]  # never listed as someone else's
        own = await svc.http.post(url, json={"institution_id": school_b}, headers=student)
        assert own.status_code == 201 and own.json()["institution_id"] == school_b
        implied = await svc.http.post(url, json={}, headers=auth("member", institution=school_a, sub="student-of-a"))
        assert implied.status_code == 201 and implied.json()["institution_id"] == school_a
