"""Activities: lifecycle over HTTP, every invalid transition, access, events on the wire, iCalendar."""

from __future__ import annotations

import pytest
from cloudevents.v1.conversion import from_json as ce_from_json
from cloudevents.v1.http import CloudEvent as SdkCloudEvent
from icalendar import Calendar

from events.domain import ActivityStatus
from services.events.tests.integration.helpers import (
    OFFICE,
    activity_body,
    events_service,
    feed_institutions,
    institution_event,
    member,
    new_id,
)
from tests.support.harness import auth, produce, read_topic, wait_until

pytestmark = pytest.mark.integration

CHAIN = ["published", "registration_open", "registration_closed", "ongoing", "finished", "archived"]


async def test_an_organiser_runs_an_activity_through_its_lifecycle_and_each_step_is_published(broker):
    org = new_id()
    admin = auth("institution_admin", institution=org)
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海电机学院"))
        r = await svc.http.post("/activities", json=activity_body(org), headers=admin)
        assert r.status_code == 201, r.text
        act = r.json()
        assert act["status"] == "draft" and act["organiser_name"] == "上海电机学院"
        assert act["starts_at"] == "2027-05-20T09:00:00+08:00", "naive times are Shanghai wall-clock times"
        assert act["allowed_transitions"] == ["published", "cancelled"]
        assert (await svc.http.get(f"/activities/{act['id']}")).status_code == 404, "drafts are not public"

        for target in CHAIN:
            t = await svc.http.post(f"/activities/{act['id']}/transitions", json={"status": target}, headers=admin)
            assert t.status_code == 200, t.text
            assert t.json()["status"] == target
        assert t.json()["version"] == 1 + len(CHAIN)
        public = (await svc.http.get(f"/activities/{act['id']}")).json()
        assert public["status"] == "archived" and public["allowed_transitions"] == []

        records = await read_topic(broker.bootstrap, "events.activity.v1",
                                   until=lambda rs: sum(r.key == act["id"].encode() for r in rs) >= 7)
        mine = [ce_from_json(SdkCloudEvent, r.value) for r in records if r.key == act["id"].encode()]
        assert [e["type"].rsplit(".", 1)[1] for e in mine] == [
            "created", "published", "registration_opened", "registration_closed", "started", "finished", "archived"]
        assert [e.data["version"] for e in mine] == list(range(1, 8))
        assert all(e["subject"] == act["id"] for e in mine)


async def test_every_invalid_transition_is_refused_with_409_naming_the_allowed_ones(broker):
    org = new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海工程技术大学"))
        for depth, status in enumerate([s.value for s in ActivityStatus]):
            act = (await svc.http.post("/activities", json=activity_body(org), headers=OFFICE)).json()
            path = ["cancelled"] if status == "cancelled" else CHAIN[:depth]
            for step in path:
                assert (await svc.http.post(f"/activities/{act['id']}/transitions", json={"status": step},
                                            headers=OFFICE)).status_code == 200
            allowed = (await svc.http.get(f"/activities/{act['id']}", headers=OFFICE)).json()["allowed_transitions"]
            for target in ActivityStatus:
                if target.value in allowed:
                    continue
                r = await svc.http.post(f"/activities/{act['id']}/transitions", json={"status": target.value},
                                        headers=OFFICE)
                assert r.status_code == 409, (status, target, r.text)
                problem = r.json()
                assert r.headers["content-type"].startswith("application/problem+json")
                assert problem["allowed"] == allowed and problem["current"] == status
                assert f"from {status} to {target.value}" in problem["detail"]


async def test_only_the_organisers_and_the_office_manage_an_activity(broker):
    org, other, co = new_id(), new_id(), new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海海事大学"), (other, "上海海洋大学"), (co, "临港集团"))
        foreign = auth("institution_admin", institution=other)
        r = await svc.http.post("/activities", json=activity_body(org), headers=foreign)
        assert r.status_code == 403
        assert (await svc.http.post("/activities", json=activity_body(org), headers=member())).status_code == 403
        unknown = await svc.http.post("/activities", json=activity_body(new_id()), headers=OFFICE)
        assert unknown.status_code == 422 and "not registered" in unknown.json()["detail"]

        act = (await svc.http.post("/activities", json=activity_body(org, co_organiser_ids=[co]),
                                   headers=OFFICE)).json()
        move = {"status": "published"}
        assert (await svc.http.post(f"/activities/{act['id']}/transitions", json=move,
                                    headers=foreign)).status_code == 404, "a foreign admin cannot see the draft"
        co_admin = auth("institution_admin", institution=co)
        stale = await svc.http.post(f"/activities/{act['id']}/transitions", json=move,
                                    headers={**co_admin, "If-Match": '"7"'})
        assert stale.status_code == 412
        assert (await svc.http.post(f"/activities/{act['id']}/transitions", json=move,
                                    headers={**co_admin, "If-Match": '"1"'})).status_code == 200
        assert (await svc.http.post(f"/activities/{act['id']}/transitions", json={"status": "registration_open"},
                                    headers=foreign)).status_code == 403


async def test_activities_export_to_icalendar_one_by_one_and_as_a_feed(broker):
    org = new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海电子信息职业技术学院"))
        ids = []
        for title in ("集成电路技能大赛", "智能制造招聘会"):
            act = (await svc.http.post("/activities", json=activity_body(org, title_zh=title), headers=OFFICE)).json()
            await svc.http.post(f"/activities/{act['id']}/transitions", json={"status": "published"}, headers=OFFICE)
            ids.append(act["id"])
        draft = (await svc.http.post("/activities", json=activity_body(org, title_zh="草稿活动"),
                                     headers=OFFICE)).json()
        await svc.http.post(f"/activities/{ids[1]}/transitions", json={"status": "cancelled"}, headers=OFFICE)

        public_ids = {a["id"] for a in (await svc.http.get("/activities")).json()["items"]}
        assert set(ids) <= public_ids and draft["id"] not in public_ids
        own = auth("institution_admin", institution=org)
        assert draft["id"] in {a["id"] for a in (await svc.http.get("/activities", headers=own)).json()["items"]}
        stranger = auth("institution_admin", institution=new_id())
        assert draft["id"] not in {a["id"] for a in (await svc.http.get("/activities", headers=stranger))
                                   .json()["items"]}

        one = await svc.http.get(f"/activities/{ids[0]}/calendar.ics")
        assert one.status_code == 200 and one.headers["content-type"].startswith("text/calendar")
        cal = Calendar.from_ical(one.content)
        [ev] = cal.walk("VEVENT")
        assert str(ev["summary"]) == "集成电路技能大赛"
        assert ev.decoded("dtstart").isoformat() == "2027-05-20T09:00:00+08:00"
        assert ev["dtstart"].params["TZID"] == "Asia/Shanghai"
        assert cal.walk("VTIMEZONE"), "the feed carries its time zone definition"
        assert str(ev["location"]) == "临港会议中心"

        feed = Calendar.from_ical((await svc.http.get("/calendar.ics")).content)
        by_uid = {str(e["uid"]).split("@")[0]: e for e in feed.walk("VEVENT")}
        assert set(ids) <= set(by_uid) and draft["id"] not in by_uid
        assert str(by_uid[ids[1]]["status"]) == "CANCELLED"


async def test_the_registry_projection_follows_updates_ignores_stale_versions_and_dead_letters_garbage(broker):
    org = new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海应用技术学院"))
        act = (await svc.http.post("/activities", json=activity_body(org), headers=OFFICE)).json()
        await produce(broker.bootstrap, "registry.institution.v1", [
            institution_event(org, "上海应用技术大学", version=3, type_="updated"),
            institution_event(org, "旧名称", version=2, type_="status_changed"),
        ], key=org.encode())
        await produce(broker.bootstrap, "registry.institution.v1", [institution_event(org, "x")[:-20]],
                      key=b"garbage")

        async def renamed():
            r = await svc.http.get(f"/activities/{act['id']}", headers=OFFICE)
            return r.json()["organiser_name"] == "上海应用技术大学"

        await wait_until(renamed, what="the updated name")
        await svc.idle()
        assert (await svc.http.get(f"/activities/{act['id']}", headers=OFFICE)).json()["organiser_name"] == \
            "上海应用技术大学", "version 2 arrived after version 3 and must not win"
        dlq = await read_topic(broker.bootstrap, "registry.institution.v1.dlq",
                               until=lambda rs: any(r.key == b"garbage" for r in rs))
        [dead] = [r for r in dlq if r.key == b"garbage"]
        assert dict(dead.headers)["dlq.consumer"]

        # an institution the registry marks inactive cannot organise new activities
        await produce(broker.bootstrap, "registry.institution.v1", [
            institution_event(org, "上海应用技术大学", version=4, status="inactive", type_="status_changed")],
            key=org.encode())
        await svc.idle()
        refused = await svc.http.post("/activities", json=activity_body(org), headers=OFFICE)
        assert refused.status_code == 422 and "not active" in refused.json()["detail"]


async def test_activities_and_the_calendar_feed_page_by_cursor_and_sessions_are_their_own_vevents(broker):
    org = new_id()
    async with events_service(broker) as svc:
        await feed_institutions(svc, broker, (org, "上海电子信息职业技术学院"))
        ids = []
        for day in range(20, 25):
            act = (await svc.http.post("/activities", json=activity_body(
                org, title_zh=f"分页活动{day}", starts_at=f"2027-06-{day}T09:00:00",
                ends_at=f"2027-06-{day}T17:00:00"), headers=OFFICE)).json()
            await svc.http.post(f"/activities/{act['id']}/transitions", json={"status": "published"}, headers=OFFICE)
            ids.append(act["id"])
        forum = ids[0]
        for title, start, end, venue in (("人工智能分论坛", "10:00", "12:00", "A 厅"),
                                         ("集成电路分论坛", "14:00", "16:00", None)):
            r = await svc.http.post(f"/activities/{forum}/sessions", headers=OFFICE, json={
                "title_zh": title, "starts_at": f"2027-06-20T{start}:00", "ends_at": f"2027-06-20T{end}:00",
                "venue": venue})
            assert r.status_code == 201, r.text

        # GET /activities: every published activity once, in start order, two at a time
        seen, cursor = [], None
        while True:
            page = (await svc.http.get("/activities", params={"limit": 2, **({"cursor": cursor} if cursor else {})}))
            body = page.json()
            assert len(body["items"]) <= 2
            seen += [a["id"] for a in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert [i for i in seen if i in ids] == ids and len(seen) == len(set(seen))
        bad = await svc.http.get("/activities", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")

        # the feed: bounded documents linked by rel="next"; each session its own VEVENT related to its activity
        uids, url, documents = [], "/calendar.ics?limit=2", 0
        while url:
            r = await svc.http.get(url)
            assert r.status_code == 200
            documents += 1
            uids += [str(e["uid"]).split("@")[0] for e in Calendar.from_ical(r.content).walk("VEVENT")]
            link = r.headers.get("link")
            url = link[link.index("<") + 1:link.index(">")].removeprefix("http://events") if link else None
        assert documents >= 3 and set(ids) <= set(uids) and len(uids) == len(set(uids))

        cal = Calendar.from_ical((await svc.http.get(f"/activities/{forum}/calendar.ics")).content)
        events = cal.walk("VEVENT")
        assert len(events) == 3, "the activity and its two sessions"
        sessions = [e for e in events if "related-to" in e]
        assert sorted(str(e["summary"]) for e in sessions) == ["分页活动20 · 人工智能分论坛",
                                                               "分页活动20 · 集成电路分论坛"]
        ai = next(e for e in sessions if "人工智能" in str(e["summary"]))
        assert ai.decoded("dtstart").isoformat() == "2027-06-20T10:00:00+08:00"
        assert str(ai["location"]) == "A 厅" and str(ai["related-to"]).startswith(forum)
        other = next(e for e in sessions if "集成电路" in str(e["summary"]))
        assert str(other["location"]) == "临港会议中心", "a session without a venue is at the activity's"
