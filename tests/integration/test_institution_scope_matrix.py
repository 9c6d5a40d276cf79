"""The authorisation matrix's other axis: own institution against another institution, for every scoped write.

Each service's OpenAPI document names its write operations and the roles they admit. Every write that an institution
administrator (or any authenticated caller) may call is scoped to whoever owns the resource, so SCOPES maps each one to
a scenario: a setup that makes a real resource owned by institution A (as the office, or through the broker where the
service learns institutions from registry events) and returns the concrete request. The request is then sent as the
administrator of another institution B (refused: 403, or 404 where the service hides the resource on purpose) and as
the administrator of A (allowed). Writes owned by a person rather than an institution (one's registration, one's inbox)
are tested the same way with two members. A scoped write missing from SCOPES fails the test unless EXEMPT gives a
reason, so a new endpoint cannot escape the matrix.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import events.main
import matching.main
import notify.main
import registry.main
from common.events import CloudEvent
from events.config import Settings as EventsSettings
from events.models import Organiser
from matching.config import Settings as MatchingSettings
from notify.config import Settings as NotifySettings
from registry.config import Settings as RegistrySettings
from services.registry.tests.support import enterprise, school
from tests.support.harness import Broker, Service, auth, fresh_database, produce, run_service, wait_until

pytestmark = pytest.mark.integration

WRITE_METHODS = {"post", "put", "patch", "delete"}
PREFIX = "cn.gov.sh.cjrh."
OFFICE = auth("office_admin", sub="office-scope-matrix")
NAMES = ("上海甲方智造有限公司", "上海乙方电子有限公司", "上海丙方职业技术学院")  # A, B and C


# ---------------------------------------------------------------------------------------------- the table's shape


@dataclass
class Ctx:
    """One running service and the institutions it knows: A owns the resources, B is the stranger, C a third party."""

    svc: Service
    broker: Broker
    a: str
    b: str
    c: str

    async def call(self, method: str, url: str, **kw) -> httpx.Response:
        """A setup request (the office's by default) that must succeed."""
        return await request_ok(self.svc, method, url, **kw)


@dataclass
class Call:
    """The concrete request a scenario's setup prepared against a resource of its owner."""

    url: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    owner: str | None = None  # the owning institution (default: A), or the owning member's user id
    intact: Callable[[], Awaitable[bool]] | None = None  # after the stranger's call: the owner's resource unchanged


@dataclass(frozen=True)
class Scope:
    """How one write is scoped: the rule in words, the setup, who owns the resource and what a stranger gets."""

    rule: str
    setup: Callable[[Ctx], Awaitable[Call]]
    owner: str = "institution_admin"  # or "member": the owner is a person, the stranger another member
    stranger: int = 403  # 404 where the service hides the resource from strangers on purpose (the rule says why)


# ---------------------------------------------------------------------------------------------- shared steps


async def request_ok(svc: Service, method: str, url: str, *, headers: dict[str, str] = OFFICE,
                     **kw) -> httpx.Response:
    """A setup request (the office's by default) that must succeed."""
    r = await svc.http.request(method, url, headers=headers, **kw)
    assert r.status_code in (200, 201), f"setup {method} {url}: {r.status_code} {r.text[:300]}"
    return r


def cloud_event(name: str, data: dict, subject: str) -> bytes:
    """A CloudEvent as another service publishes it (services never import each other)."""
    # The publishing service's source: consumers dead-letter events from anyone but the topic's owner.
    source = f"//platform.cjrh.sh.cn/{name.split('.')[0]}"
    return CloudEvent(id=str(uuid.uuid4()), source=source, type=PREFIX + name,
                      subject=subject, time=datetime.now(UTC), data=data).to_bytes()


def institution_payload(inst_id: str, name_zh: str) -> dict:
    """A registry.institution.v1 payload of an active institution."""
    return {"id": inst_id, "kind": "enterprise", "name_zh": name_zh, "name_en": None, "uscc": None,
            "school_code": None, "district": "pudong", "industries": ["integrated_circuits"], "keywords": ["芯片"],
            "status": "active", "successor_id": None, "version": 1, "updated_at": datetime.now(UTC).isoformat()}


async def teach_institutions(svc: Service, broker: Broker, known: Callable[[Service, str], Awaitable[bool]]
                             ) -> tuple[str, str, str]:
    """Publish three institutions on registry.institution.v1 and wait until the service has projected them."""
    ids = tuple(str(uuid.uuid4()) for _ in range(3))
    for inst_id, name in zip(ids, NAMES, strict=True):
        await produce(broker.bootstrap, "registry.institution.v1",
                      [cloud_event("registry.institution.registered", institution_payload(inst_id, name), inst_id)],
                      key=inst_id.encode())
    for inst_id in ids:
        await wait_until(lambda i=inst_id: known(svc, i), what=f"institution {inst_id} projected")
    return ids


# ---------------------------------------------------------------------------------------------- registry


async def registry_ctx(svc: Service, broker: Broker) -> Ctx:
    """The registry learns institutions by registering them (the office)."""
    ids = []
    for body in (enterprise(NAMES[0]), enterprise(NAMES[1]), school(NAMES[2])):
        ids.append((await request_ok(svc, "POST", "/institutions", json=body)).json()["id"])
    return Ctx(svc, broker, *ids)


async def a_institution(ctx: Ctx) -> Call:
    """A's own record, edited under its current ETag."""
    r = await ctx.call("GET", f"/institutions/{ctx.a}")
    return Call(f"/institutions/{ctx.a}", {"keywords": ["集成电路", "产教融合"]}, {"If-Match": r.headers["ETag"]})


async def a_enters_the_pool(ctx: Ctx) -> Call:
    """A (an active enterprise without a certification file) asks to enter the cultivation pool."""
    return Call("/certifications", {"institution_id": ctx.a})


async def a_pooled_file(ctx: Ctx) -> Call:
    """A fresh enterprise's pooled certification file, applying to an open batch."""
    owner = (await ctx.call("POST", "/institutions", json=enterprise("上海认定申报企业有限公司"))).json()["id"]
    cert = (await ctx.call("POST", "/certifications", json={"institution_id": owner})).json()
    batch = (await ctx.call("POST", "/certification-batches",
                            json={"name": f"2026 第{uuid.uuid4().hex[:6]}批", "year": 2026})).json()
    return Call(f"/certifications/{cert['id']}/steps", {"action": "apply", "batch_id": batch["id"]}, owner=owner)


def base_body(host: str) -> dict:
    """A valid base hosted by `host`."""
    return {"name_zh": "临港智能制造公共实训基地", "base_type": "practice", "category": "public_training_base",
            "host_institution_ids": [host], "capacity": 300, "industries": ["intelligent_manufacturing"]}


async def a_hosts_a_new_base(ctx: Ctx) -> Call:
    """A base to be hosted by A."""
    return Call("/bases", base_body(ctx.a))


async def a_base(ctx: Ctx) -> Call:
    """A base hosted by A, edited under its ETag."""
    r = await ctx.call("POST", "/bases", json=base_body(ctx.a))
    return Call(f"/bases/{r.json()['id']}", {"capacity": 350}, {"If-Match": r.headers["ETag"]})


async def a_base_to_close(ctx: Ctx) -> Call:
    """A base hosted by A, to be closed."""
    base = (await ctx.call("POST", "/bases", json=base_body(ctx.a))).json()
    return Call(f"/bases/{base['id']}/close")


async def alliance_led_by(ctx: Ctx, lead: str, *members: str) -> str:
    """An alliance formed by the office with `lead` at its head; returns its id."""
    body = {"name_zh": "临港集成电路产教融合共同体", "kind": "community", "lead_institution_id": lead,
            "members": [{"institution_id": m} for m in members]}
    return (await ctx.call("POST", "/alliances", json=body)).json()["id"]


async def a_forms_an_alliance(ctx: Ctx) -> Call:
    """An alliance to be led by A."""
    return Call("/alliances", {"name_zh": "临港集成电路产教联盟", "kind": "alliance", "lead_institution_id": ctx.a})


async def a_lead_admits_c(ctx: Ctx) -> Call:
    """An alliance led by A; C is to join it."""
    return Call(f"/alliances/{await alliance_led_by(ctx, ctx.a)}/members", {"institution_id": ctx.c})


async def a_joins_cs_alliance(ctx: Ctx) -> Call:
    """An alliance led by C; A is to join it."""
    return Call(f"/alliances/{await alliance_led_by(ctx, ctx.c)}/members", {"institution_id": ctx.a})


async def a_lead_removes_c(ctx: Ctx) -> Call:
    """An alliance led by A with C as a member; C is to be removed."""
    return Call(f"/alliances/{await alliance_led_by(ctx, ctx.a, ctx.c)}/members/{ctx.c}")


async def a_leaves_cs_alliance(ctx: Ctx) -> Call:
    """An alliance led by C with A as a member; A is to leave."""
    return Call(f"/alliances/{await alliance_led_by(ctx, ctx.c, ctx.a)}/members/{ctx.a}")


async def a_alliance_to_dissolve(ctx: Ctx) -> Call:
    """An alliance led by A, to be dissolved."""
    return Call(f"/alliances/{await alliance_led_by(ctx, ctx.a)}/dissolve")


def mentor_body(institution: str) -> dict:
    """A person proposed for the mentor pool by `institution`."""
    return {"institution_id": institution, "title": "industry_mentor", "name": "王工", "phone": "13900001111",
            "industries": ["integrated_circuits"]}


async def a_proposes_a_mentor(ctx: Ctx) -> Call:
    """A person to be put in the pool by A."""
    return Call("/mentors", mentor_body(ctx.a))


async def a_mentor(ctx: Ctx) -> Call:
    """A's mentor, edited under its ETag."""
    mentor = (await ctx.call("POST", "/mentors", json=mentor_body(ctx.a))).json()
    etag = (await ctx.call("GET", f"/mentors/{mentor['id']}")).headers["ETag"]
    return Call(f"/mentors/{mentor['id']}", {"expertise": "晶圆制造工艺"}, {"If-Match": etag})


async def a_mentor_consents(ctx: Ctx) -> Call:
    """A's unlisted mentor, whose signed consent is to be recorded."""
    mentor = (await ctx.call("POST", "/mentors", json=mentor_body(ctx.a))).json()
    return Call(f"/mentors/{mentor['id']}/consent", {"given": True, "method": "signed_form"})


async def a_asks_for_a_uscc_change(ctx: Ctx) -> Call:
    """A asks the office to change its registered USCC."""
    from services.registry.tests.support import new_uscc

    return Call(f"/institutions/{ctx.a}/uscc-change-requests", {"uscc": new_uscc(), "reason": "换发营业执照"})


async def pending_join(ctx: Ctx, alliance: str, institution: str, *, by: str) -> None:
    """`by`'s administrator asks (or, as the lead, invites) `institution` to join: 202, pending."""
    r = await ctx.svc.http.post(f"/alliances/{alliance}/members", json={"institution_id": institution},
                                headers=auth("institution_admin", institution=by))
    assert r.status_code == 202, f"setup: a pending join: {r.status_code} {r.text[:300]}"


async def c_asks_to_join_as_alliance(ctx: Ctx) -> Call:
    """An alliance led by A that C asked to join; A (the lead) answers."""
    alliance = await alliance_led_by(ctx, ctx.a)
    await pending_join(ctx, alliance, ctx.c, by=ctx.c)
    return Call(f"/alliances/{alliance}/join-requests/{ctx.c}/accept", {"role": "member"})


async def c_invites_a_to_its_alliance(ctx: Ctx) -> Call:
    """An alliance led by C, whose lead invited A; A answers."""
    alliance = await alliance_led_by(ctx, ctx.c)
    await pending_join(ctx, alliance, ctx.a, by=ctx.c)
    return Call(f"/alliances/{alliance}/join-requests/{ctx.a}/accept")


async def a_declines_cs_join_request(ctx: Ctx) -> Call:
    """An alliance led by A that C asked to join; A declines."""
    call = await c_asks_to_join_as_alliance(ctx)
    return Call(call.url.replace("/accept", "/decline"))


async def c_names_a_co_host(ctx: Ctx) -> Call:
    """A base C's admin registered naming A as co-host; A confirms."""
    base = (await ctx.call("POST", "/bases", json={**base_body(ctx.c), "host_institution_ids": [ctx.c, ctx.a]},
                           headers=auth("institution_admin", institution=ctx.c))).json()
    return Call(f"/bases/{base['id']}/cohosts/{ctx.a}/confirm")


async def a_declines_to_co_host(ctx: Ctx) -> Call:
    """A base C's admin registered naming A as co-host; A declines."""
    call = await c_names_a_co_host(ctx)
    return Call(call.url.replace("/confirm", "/decline"))


REGISTRY = {
    ("POST", "/institutions/{institution_id}/uscc-change-requests"): [
        Scope("an institution's administrators ask for its USCC change; others learn nothing (404)",
              a_asks_for_a_uscc_change, stranger=404)],
    ("POST", "/alliances/{alliance_id}/join-requests/{institution_id}/accept"): [
        Scope("the lead approves an institution's request to join", c_asks_to_join_as_alliance),
        Scope("an institution accepts the lead's invitation", c_invites_a_to_its_alliance)],
    ("POST", "/alliances/{alliance_id}/join-requests/{institution_id}/decline"): [
        Scope("the lead (or the asker) declines a pending join", a_declines_cs_join_request)],
    ("POST", "/bases/{base_id}/cohosts/{institution_id}/confirm"): [
        Scope("a named co-host confirms for itself", c_names_a_co_host)],
    ("POST", "/bases/{base_id}/cohosts/{institution_id}/decline"): [
        Scope("a named co-host declines for itself", a_declines_to_co_host)],
    ("PATCH", "/institutions/{institution_id}"): [
        Scope("an institution is edited by its own administrators (and the office)", a_institution)],
    ("POST", "/certifications"): [
        Scope("an enterprise enters the pool by its own administrators", a_enters_the_pool)],
    ("POST", "/certifications/{certification_id}/steps"): [
        Scope("apply and withdraw are the enterprise's own steps; another institution's file is not even confirmed "
              "to exist (404)", a_pooled_file, stranger=404)],
    ("POST", "/bases"): [Scope("a base is registered by an administrator of a host institution", a_hosts_a_new_base)],
    ("PATCH", "/bases/{base_id}"): [Scope("a base is edited by its hosts' administrators", a_base)],
    ("POST", "/bases/{base_id}/close"): [Scope("a base is closed by its hosts' administrators", a_base_to_close)],
    ("POST", "/alliances"): [Scope("an alliance is formed by its lead institution", a_forms_an_alliance)],
    ("POST", "/alliances/{alliance_id}/members"): [
        Scope("the lead admits members", a_lead_admits_c),
        Scope("an institution may join by itself, but nobody else may sign it up", a_joins_cs_alliance)],
    ("DELETE", "/alliances/{alliance_id}/members/{institution_id}"): [
        Scope("the lead removes members", a_lead_removes_c),
        Scope("a member may leave by itself, but nobody else may take it out", a_leaves_cs_alliance)],
    ("POST", "/alliances/{alliance_id}/dissolve"): [
        Scope("only the lead dissolves an alliance", a_alliance_to_dissolve)],
    ("POST", "/mentors"): [Scope("a person joins the pool through their own institution", a_proposes_a_mentor)],
    ("PATCH", "/mentors/{mentor_id}"): [
        Scope("a mentor is edited by their own institution; an unconsented one is hidden from others (404)", a_mentor,
              stranger=404)],
    ("POST", "/mentors/{mentor_id}/consent"): [
        Scope("a mentor's consent is recorded by their own institution; others do not see the person (404)",
              a_mentor_consents, stranger=404)],
}


# ---------------------------------------------------------------------------------------------- matching


async def matching_knows(svc: Service, inst_id: str) -> bool:
    """Whether matching's projection holds the institution."""
    return (await svc.http.get(f"/institutions/{inst_id}")).status_code == 200


async def matching_ctx(svc: Service, broker: Broker) -> Ctx:
    """Matching learns institutions from the registry's events."""
    return Ctx(svc, broker, *await teach_institutions(svc, broker, matching_knows))


def opportunity_body(institution: str, **kw) -> dict:
    """A valid opportunity of `institution`."""
    return {"kind": "internship", "institution_id": institution, "title_zh": "晶圆制造实习岗位",
            "description_zh": "芯片封装测试方向的技术员实习", "skills": ["微电子技术"],
            "industries": ["integrated_circuits"], "district": "lingang", "capacity": 2, **kw}


async def opportunity_of(ctx: Ctx, institution: str, *, open_: bool = False) -> str:
    """An opportunity the office posts for `institution` (a draft unless `open_`); returns its id."""
    return (await ctx.call("POST", "/opportunities", json=opportunity_body(institution, open=open_))).json()["id"]


async def a_posts_an_opportunity(ctx: Ctx) -> Call:
    """An opportunity to be posted for A."""
    return Call("/opportunities", opportunity_body(ctx.a))


async def a_draft_opportunity(ctx: Ctx) -> Call:
    """A's draft opportunity, edited."""
    return Call(f"/opportunities/{await opportunity_of(ctx, ctx.a)}", {"capacity": 3})


async def a_opens_its_draft(ctx: Ctx) -> Call:
    """A's draft opportunity, to be opened."""
    return Call(f"/opportunities/{await opportunity_of(ctx, ctx.a)}/open")


async def a_proposes_to_c(ctx: Ctx) -> Call:
    """C's open opportunity; a proposal is to be made on A's behalf."""
    return Call("/matches", {"opportunity_id": await opportunity_of(ctx, ctx.c, open_=True),
                             "from_institution_id": ctx.a, "message": "我们有微电子专业"})


async def match_between(ctx: Ctx, proposer: str, recipient: str) -> str:
    """A match the office proposes from `proposer` on `recipient`'s open opportunity; returns its id."""
    body = {"opportunity_id": await opportunity_of(ctx, recipient, open_=True), "from_institution_id": proposer}
    return (await ctx.call("POST", "/matches", json=body)).json()["id"]


async def a_accepts_cs_proposal(ctx: Ctx) -> Call:
    """C's proposal on A's opportunity, to be accepted by A."""
    return Call(f"/matches/{await match_between(ctx, ctx.c, ctx.a)}/accept")


async def a_withdraws_its_proposal(ctx: Ctx) -> Call:
    """A's proposal on C's opportunity, to be withdrawn by A."""
    return Call(f"/matches/{await match_between(ctx, ctx.a, ctx.c)}/withdraw")


async def a_notes_progress(ctx: Ctx) -> Call:
    """A's proposal on C's opportunity; A adds a progress note."""
    return Call(f"/matches/{await match_between(ctx, ctx.a, ctx.c)}/notes", {"note": "第一次对接会已召开"})


MATCHING = {
    ("POST", "/opportunities"): [Scope("an opportunity is posted by its own institution", a_posts_an_opportunity)],
    ("PATCH", "/opportunities/{opportunity_id}"): [
        Scope("an opportunity is edited by its own institution", a_draft_opportunity)],
    ("POST", "/opportunities/{opportunity_id}/{action}"): [
        Scope("an opportunity is opened and closed by its own institution", a_opens_its_draft)],
    ("POST", "/matches"): [Scope("a proposal is made by the proposing institution's own administrators",
                                 a_proposes_to_c)],
    ("POST", "/matches/{match_id}/{action}"): [
        Scope("the recipient accepts or declines a proposal; outsiders are told nothing (404, as on GET)",
              a_accepts_cs_proposal, stranger=404),
        Scope("the proposer withdraws its proposal; outsiders are told nothing (404, as on GET)",
              a_withdraws_its_proposal, stranger=404)],
    ("POST", "/matches/{match_id}/notes"): [
        Scope("either side notes progress; outsiders are told nothing (404)", a_notes_progress, stranger=404)],
}


# ---------------------------------------------------------------------------------------------- events


async def events_knows(svc: Service, inst_id: str) -> bool:
    """Whether the events service's organiser projection holds the institution."""
    async with svc.runtime.sessions() as s:
        return await s.get(Organiser, inst_id) is not None


async def events_ctx(svc: Service, broker: Broker) -> Ctx:
    """The events service learns institutions (organisers) from the registry's events."""
    return Ctx(svc, broker, *await teach_institutions(svc, broker, events_knows))


LIFECYCLE = ("published", "registration_open")


def activity_body(organiser: str, **kw) -> dict:
    """A valid activity organised by `organiser`."""
    return {"kind": "conference", "title_zh": "临港产教融合论坛", "organiser_id": organiser, "venue": "临港会议中心",
            "starts_at": "2027-05-20T09:00:00", "ends_at": "2027-05-20T17:00:00", "audience": ["students"], **kw}


async def activity_of(ctx: Ctx, organiser: str, status: str = "published", **kw) -> str:
    """An activity the office creates for `organiser` and moves on to `status`; returns its id."""
    act = (await ctx.call("POST", "/activities", json=activity_body(organiser, **kw))).json()
    if status != "draft":
        for step in LIFECYCLE[:LIFECYCLE.index(status) + 1]:
            await ctx.call("POST", f"/activities/{act['id']}/transitions", json={"status": step})
    return act["id"]


def member(sub: str, institution: str | None = None) -> dict[str, str]:
    """A member's Authorization header."""
    return auth("member", sub=sub, institution=institution)


def new_sub() -> str:
    """A fresh user id."""
    return f"member-{uuid.uuid4().hex[:8]}"


async def registration_of(ctx: Ctx, activity: str, sub: str) -> dict:
    """Member `sub` (of institution A) registers themself for `activity`; returns the registration."""
    return (await ctx.call("POST", f"/activities/{activity}/registrations", json={"display_name": "张同学"},
                           headers=member(sub, ctx.a))).json()


async def institution_registration_of_a(ctx: Ctx) -> str:
    """The office registers institution A for C's open activity; returns the registration id."""
    act = await activity_of(ctx, ctx.c, "registration_open")
    body = {"participant_kind": "institution", "institution_id": ctx.a}
    return (await ctx.call("POST", f"/activities/{act}/registrations", json=body)).json()["id"]


async def a_organises_an_activity(ctx: Ctx) -> Call:
    """An activity to be organised by A."""
    return Call("/activities", activity_body(ctx.a))


async def a_published_activity_opens(ctx: Ctx) -> Call:
    """A's published activity, to open registration."""
    return Call(f"/activities/{await activity_of(ctx, ctx.a)}/transitions", {"status": "registration_open"})


async def a_draft_activity_is_published(ctx: Ctx) -> Call:
    """A's draft activity, to be published."""
    return Call(f"/activities/{await activity_of(ctx, ctx.a, 'draft')}/transitions", {"status": "published"})


async def a_activity_capacity(ctx: Ctx) -> Call:
    """A's published activity, given a capacity."""
    return Call(f"/activities/{await activity_of(ctx, ctx.a)}/capacity", {"capacity": 100})


SESSION = {"title_zh": "上午分论坛", "starts_at": "2027-05-20T09:00:00", "ends_at": "2027-05-20T12:00:00",
           "capacity": 30}


async def a_activity_gets_a_session(ctx: Ctx) -> Call:
    """A's published activity, to get a session."""
    return Call(f"/activities/{await activity_of(ctx, ctx.a)}/sessions", SESSION)


async def a_session_capacity(ctx: Ctx) -> Call:
    """A session of A's published activity, given more seats."""
    act = await activity_of(ctx, ctx.a)
    sess = (await ctx.call("POST", f"/activities/{act}/sessions", json=SESSION)).json()
    return Call(f"/activities/{act}/sessions/{sess['id']}/capacity", {"capacity": 40})


async def a_registers_itself(ctx: Ctx) -> Call:
    """C's open activity; institution A is to be registered."""
    act = await activity_of(ctx, ctx.c, "registration_open")
    return Call(f"/activities/{act}/registrations", {"participant_kind": "institution", "institution_id": ctx.a})


async def member_withdraws(ctx: Ctx) -> Call:
    """A member's own registration for C's open activity, withdrawn by them."""
    sub = new_sub()
    reg = await registration_of(ctx, await activity_of(ctx, ctx.c, "registration_open"), sub)
    return Call(f"/registrations/{reg['id']}/withdraw", owner=sub)


async def a_withdraws_its_registration(ctx: Ctx) -> Call:
    """Institution A's registration, withdrawn by A."""
    return Call(f"/registrations/{await institution_registration_of_a(ctx)}/withdraw")


async def a_organiser_withdraws_a_registrant(ctx: Ctx) -> Call:
    """A member's registration for A's open activity, withdrawn by A as its organiser."""
    reg = await registration_of(ctx, await activity_of(ctx, ctx.a, "registration_open"), new_sub())
    return Call(f"/registrations/{reg['id']}/withdraw")


async def member_accepts_an_offer(ctx: Ctx) -> Call:
    """A member's waitlist place in C's one-seat activity, offered when the seat holder withdraws."""
    act = await activity_of(ctx, ctx.c, "registration_open", capacity=1)
    first, sub = await registration_of(ctx, act, "holder-" + new_sub()), new_sub()
    waiting = await registration_of(ctx, act, sub)
    assert waiting["status"] == "waitlisted", waiting
    await ctx.call("POST", f"/registrations/{first['id']}/withdraw", headers=member(first["participant_id"]))
    return Call(f"/registrations/{waiting['id']}/accept", owner=sub)


async def member_consents(ctx: Ctx) -> Call:
    """A member's own registration for C's open activity; they consent to the public list."""
    sub = new_sub()
    reg = await registration_of(ctx, await activity_of(ctx, ctx.c, "registration_open"), sub)
    return Call(f"/registrations/{reg['id']}/consent", {"public_consent": True}, owner=sub)


async def a_consents_for_its_registration(ctx: Ctx) -> Call:
    """Institution A's registration; A consents to the public list."""
    return Call(f"/registrations/{await institution_registration_of_a(ctx)}/consent", {"public_consent": True})


async def a_activity_gets_a_checkin_list(ctx: Ctx) -> Call:
    """A's published activity, to get a check-in list."""
    return Call(f"/activities/{await activity_of(ctx, ctx.a)}/checkin-lists", {"name": "主入口"})


async def a_checks_in_a_registrant(ctx: Ctx) -> Call:
    """A confirmed registrant of A's open activity, scanned at A's entrance."""
    act = await activity_of(ctx, ctx.a, "registration_open")
    reg = await registration_of(ctx, act, new_sub())
    lst = (await ctx.call("POST", f"/activities/{act}/checkin-lists", json={"name": "主入口"})).json()
    return Call(f"/checkin-lists/{lst['id']}/checkins", {"token": reg["checkin_token"]})


RUBRIC = [{"key": "innovation", "weight": 60, "max_points": 10}, {"key": "craft", "weight": 40, "max_points": 10}]


async def competition_of(ctx: Ctx, organiser: str, status: str = "published") -> tuple[str, str]:
    """A competition the office creates for `organiser` with one track; returns (activity id, track id)."""
    act = await activity_of(ctx, organiser, status, kind="competition", title_zh="临港工匠技能大赛")
    track = (await ctx.call("POST", f"/activities/{act}/tracks",
                            json={"name_zh": "高职组", "team_min": 1, "team_max": 3, "rubric": RUBRIC})).json()
    return act, track["id"]


async def team_of_a(ctx: Ctx, captain: str) -> dict:
    """A team representing A in C's open competition, formed by member `captain` of A."""
    act, track = await competition_of(ctx, ctx.c, "registration_open")
    body = {"track_id": track, "name": f"甲方{uuid.uuid4().hex[:4]}队", "institution_id": ctx.a}
    return (await ctx.call("POST", f"/activities/{act}/teams", json=body, headers=member(captain, ctx.a))).json()


async def a_competition_gets_a_track(ctx: Ctx) -> Call:
    """A's published competition, to get a track."""
    act = await activity_of(ctx, ctx.a, kind="competition", title_zh="临港工匠技能大赛")
    return Call(f"/activities/{act}/tracks", {"name_zh": "中职组", "team_min": 1, "team_max": 3, "rubric": RUBRIC})


async def member_of_a_forms_a_team(ctx: Ctx) -> Call:
    """C's open competition; a member of A forms a team representing A."""
    act, track = await competition_of(ctx, ctx.c, "registration_open")
    sub = new_sub()
    return Call(f"/activities/{act}/teams", {"track_id": track, "name": "甲方一队", "institution_id": ctx.a},
                owner=sub)


async def member_of_a_joins_as_team(ctx: Ctx) -> Call:
    """A team representing A; another member of A joins it with the captain's code."""
    team = await team_of_a(ctx, new_sub())
    return Call("/teams/join", {"join_code": team["join_code"]}, owner=new_sub())


async def captain_submits(ctx: Ctx) -> Call:
    """A team representing A; its captain submits the entry."""
    sub = new_sub()
    team = await team_of_a(ctx, sub)
    return Call(f"/teams/{team['id']}/submission", {"title": "晶圆缺陷检测", "links": ["https://example.cn/demo"]},
                owner=sub)


async def a_assigns_a_judge(ctx: Ctx) -> Call:
    """A track of A's published competition, to get a judge."""
    act, track = await competition_of(ctx, ctx.a)
    return Call(f"/activities/{act}/tracks/{track}/judges", {"judge_id": "judge-wang", "institution_id": ctx.c})


async def a_freezes_its_scoreboard(ctx: Ctx) -> Call:
    """A's published competition, whose scoreboard is to be frozen."""
    act, _ = await competition_of(ctx, ctx.a)
    return Call(f"/activities/{act}/scoreboard/freeze")


async def a_publishes_results(ctx: Ctx) -> Call:
    """A's published competition, whose results are to be published."""
    act, _ = await competition_of(ctx, ctx.a)
    return Call(f"/activities/{act}/results", {"awards": [{"name": "一等奖", "count": 1}]})


HIDDEN_DRAFT = "drafts are visible only to their organisers, so a stranger gets 404"
HIDDEN_REGISTRATION = "a registration is visible only to its registrant and the organisers: a stranger gets 404"
MANAGE = "only the organisers of an activity (and the office) manage it"

EVENTS = {
    ("POST", "/activities"): [Scope("an activity is organised for the caller's own institution",
                                    a_organises_an_activity)],
    ("POST", "/activities/{activity_id}/transitions"): [
        Scope(MANAGE, a_published_activity_opens),
        Scope(f"{MANAGE}; {HIDDEN_DRAFT}", a_draft_activity_is_published, stranger=404)],
    ("PUT", "/activities/{activity_id}/capacity"): [Scope(MANAGE, a_activity_capacity)],
    ("POST", "/activities/{activity_id}/sessions"): [Scope(MANAGE, a_activity_gets_a_session)],
    ("PUT", "/activities/{activity_id}/sessions/{session_id}/capacity"): [Scope(MANAGE, a_session_capacity)],
    ("POST", "/activities/{activity_id}/registrations"): [
        Scope("an institution is registered only by its own administrators; a member always registers themself "
              "(the participant is the token's user, so there is no other person to register)",
              a_registers_itself)],
    ("POST", "/registrations/{registration_id}/withdraw"): [
        Scope(f"member X withdraws X's registration, member Y cannot; {HIDDEN_REGISTRATION}", member_withdraws,
              owner="member", stranger=404),
        Scope(f"an institution's registration is withdrawn by its administrators; {HIDDEN_REGISTRATION}",
              a_withdraws_its_registration, stranger=404),
        Scope(f"the organiser may withdraw a registrant; {HIDDEN_REGISTRATION}", a_organiser_withdraws_a_registrant,
              stranger=404)],
    ("POST", "/registrations/{registration_id}/accept"): [
        Scope(f"only the registrant accepts their offer; {HIDDEN_REGISTRATION}", member_accepts_an_offer,
              owner="member", stranger=404)],
    ("PUT", "/registrations/{registration_id}/consent"): [
        Scope(f"only the registrant gives consent; {HIDDEN_REGISTRATION}", member_consents, owner="member",
              stranger=404),
        Scope(f"an institution's consent is given by its administrators; {HIDDEN_REGISTRATION}",
              a_consents_for_its_registration, stranger=404)],
    ("POST", "/activities/{activity_id}/checkin-lists"): [Scope(MANAGE, a_activity_gets_a_checkin_list)],
    ("POST", "/checkin-lists/{list_id}/checkins"): [
        Scope("only the activity's organisers scan badges at its lists", a_checks_in_a_registrant)],
    ("POST", "/activities/{activity_id}/tracks"): [Scope(MANAGE, a_competition_gets_a_track)],
    ("POST", "/activities/{activity_id}/teams"): [
        Scope("a team represents its captain's own institution: a member of A forms A's team, a member of B cannot",
              member_of_a_forms_a_team, owner="member")],
    ("POST", "/teams/join"): [
        Scope("a team represents one institution: a member of A joins A's team with its code, a member of B "
              "cannot, even with the code", member_of_a_joins_as_team, owner="member")],
    ("PUT", "/teams/{team_id}/submission"): [
        Scope("only a team's members submit its entry; a team is 'not yours' (404) to everyone else",
              captain_submits, owner="member", stranger=404)],
    ("POST", "/activities/{activity_id}/tracks/{track_id}/judges"): [Scope(MANAGE, a_assigns_a_judge)],
    ("POST", "/activities/{activity_id}/scoreboard/freeze"): [Scope(MANAGE, a_freezes_its_scoreboard)],
    ("POST", "/activities/{activity_id}/results"): [Scope(MANAGE, a_publishes_results)],
}


# ---------------------------------------------------------------------------------------------- notify


async def notify_ctx(svc: Service, broker: Broker) -> Ctx:
    """Notify keeps no institution list: an institution's inbox is its id, so any ids will do."""
    return Ctx(svc, broker, *(str(uuid.uuid4()) for _ in range(3)))


async def still_unread(ctx: Ctx, headers: dict[str, str]) -> bool:
    """Whether the caller still has an unread message."""
    return (await ctx.call("GET", "/inbox/unread-count", headers=headers)).json()["unread"] > 0


async def message_in_inbox(ctx: Ctx, headers: dict[str, str], topic: str, name: str, data: dict) -> str:
    """Publish an event whose rule notifies the caller, and wait for the message; returns its id."""
    await produce(ctx.broker.bootstrap, topic, [cloud_event(name, data, data["id"])], key=data["id"].encode())

    async def arrived():
        items = (await ctx.call("GET", "/inbox", headers=headers)).json()["items"]
        return items[0]["id"] if items else None
    return await wait_until(arrived, what=f"{name} in the inbox")


async def message_for_institution(ctx: Ctx) -> tuple[str, str]:
    """A certification notice in a fresh institution's inbox; returns (institution, message id)."""
    inst, cert = str(uuid.uuid4()), str(uuid.uuid4())
    data = {"id": cert, "institution_id": inst, "enterprise_name": "上海甲方智造有限公司", "batch_id": "b-2026-1",
            "batch_name": "2026 年第一批", "year": 2026, "status": "approved", "is_certified": False,
            "evaluation_result": None, "version": 2, "updated_at": datetime.now(UTC).isoformat()}
    msg = await message_in_inbox(ctx, auth("institution_admin", institution=inst), "registry.certification.v1",
                                 "registry.certification.reviewed", data)
    return inst, msg


async def message_for_member(ctx: Ctx) -> tuple[str, str]:
    """A registration confirmation in a fresh member's inbox; returns (user id, message id)."""
    sub, act = new_sub(), str(uuid.uuid4())
    data = {"id": str(uuid.uuid4()), "activity_id": act, "activity_title": "2026 集成电路产教融合专场招聘会",
            "session_id": None, "participant_id": sub, "participant_kind": "individual", "institution_id": None,
            "team_id": None, "status": "confirmed", "queue_position": None, "offer_expires_at": None, "version": 1}
    return sub, await message_in_inbox(ctx, member(sub), "events.registration.v1", "events.registration.confirmed",
                                       data)


async def a_reads_all(ctx: Ctx) -> Call:
    """An institution's unread notice; its administrators mark all read, a stranger's read-all leaves it unread."""
    inst, _ = await message_for_institution(ctx)
    owner = auth("institution_admin", institution=inst)
    return Call("/inbox/read-all", owner=inst, intact=lambda: still_unread(ctx, owner))


async def member_reads_all(ctx: Ctx) -> Call:
    """A member's unread message; they mark all read, another member's read-all leaves it unread."""
    sub, _ = await message_for_member(ctx)
    return Call("/inbox/read-all", owner=sub, intact=lambda: still_unread(ctx, member(sub)))


async def a_reads_its_notice(ctx: Ctx) -> Call:
    """A notice in an institution's inbox, marked read by its administrators."""
    inst, msg = await message_for_institution(ctx)
    return Call(f"/inbox/{msg}/read", owner=inst)


async def member_reads_their_message(ctx: Ctx) -> Call:
    """A message in a member's inbox, marked read by them."""
    sub, msg = await message_for_member(ctx)
    return Call(f"/inbox/{msg}/read", owner=sub)


async def a_sets_its_preference(ctx: Ctx) -> Call:
    """A's inbox settings: email on for every category."""
    return Call(f"/me/preferences/*/email?recipient=institution:{ctx.a}", {"enabled": True})


async def member_sets_their_preference(ctx: Ctx) -> Call:
    """A member's settings, named explicitly: email on for every category."""
    sub = new_sub()
    return Call(f"/me/preferences/*/email?recipient={sub}", {"enabled": True}, owner=sub)


PROFILE = {"email": "contact@example.cn", "locale": "zh-CN", "quiet_start": "22:00", "quiet_end": "07:30"}


async def a_sets_its_profile(ctx: Ctx) -> Call:
    """A's inbox profile: address and quiet hours."""
    return Call(f"/me/profile?recipient=institution:{ctx.a}", PROFILE)


async def member_sets_their_profile(ctx: Ctx) -> Call:
    """A member's profile, named explicitly."""
    sub = new_sub()
    return Call(f"/me/profile?recipient={sub}", PROFILE, owner=sub)


INBOX = "the caller acts on their own inboxes only (and an institution's, as its administrator)"
HIDDEN_MESSAGE = "another inbox's messages are not found (404), never confirmed to exist"
SETTINGS = "settings are managed by their recipient: oneself, or an institution's inbox by its administrators"

NOTIFY = {
    ("POST", "/inbox/read-all"): [
        Scope(f"{INBOX}: a stranger's read-all answers 200 and leaves A's notice unread", a_reads_all, stranger=200),
        Scope(f"{INBOX}: member Y's read-all leaves X's message unread", member_reads_all, owner="member",
              stranger=200)],
    ("POST", "/inbox/{message_id}/{action}"): [
        Scope(f"{INBOX}; {HIDDEN_MESSAGE}", a_reads_its_notice, stranger=404),
        Scope(f"{INBOX}; {HIDDEN_MESSAGE}", member_reads_their_message, owner="member", stranger=404)],
    ("PUT", "/me/preferences/{category}/{channel}"): [
        Scope(SETTINGS, a_sets_its_preference),
        Scope(SETTINGS, member_sets_their_preference, owner="member")],
    ("PUT", "/me/profile"): [
        Scope(SETTINGS, a_sets_its_profile),
        Scope(SETTINGS, member_sets_their_profile, owner="member")],
}


# ---------------------------------------------------------------------------------------------- the matrix

SCOPES: dict[tuple[str, str, str], list[Scope]] = {
    (service, method, path): scopes
    for service, table in (("registry", REGISTRY), ("matching", MATCHING), ("events", EVENTS), ("notify", NOTIFY))
    for (method, path), scopes in table.items()
}
EXEMPT: dict[tuple[str, str, str], str] = {}  # (service, METHOD, path) -> why it has no own/other scenario

SERVICES = [
    ("registry", registry.main.create_app, RegistrySettings, {}, registry_ctx),
    ("matching", matching.main.create_app, MatchingSettings, {}, matching_ctx),
    ("events", events.main.create_app, EventsSettings, {}, events_ctx),
    ("notify", notify.main.create_app, NotifySettings,
     {"dispatch_interval_seconds": 0.05, "quiet_start": "00:00", "quiet_end": "00:00"}, notify_ctx),
]


def scoped_writes(spec: dict) -> list[tuple[str, str]]:
    """The writes an institution administrator (or any authenticated caller) may call: (METHOD, path)."""
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            roles = op.get("x-required-roles") or []
            if method in WRITE_METHODS and op.get("x-authenticated") and (not roles or "institution_admin" in roles):
                out.append((method.upper(), path))
    return out


def actors(ctx: Ctx, scope: Scope, call: Call) -> tuple[dict[str, str], dict[str, str]]:
    """The owner's and the stranger's Authorization headers."""
    if scope.owner == "member":
        return member(call.owner or new_sub(), ctx.a), member(new_sub(), ctx.b)
    return auth("institution_admin", institution=call.owner or ctx.a), auth("institution_admin", institution=ctx.b)


def refusal_problems(r: httpx.Response) -> list[str]:
    """What is wrong with an error response: it must be problem+json with a detail a person can act on."""
    if not r.headers.get("content-type", "").startswith("application/problem+json"):
        return [f"{r.status_code} is not application/problem+json"]
    detail = r.json().get("detail")
    if not isinstance(detail, str) or len(detail.strip()) < 12:
        return [f"{r.status_code} has no useful detail: {detail!r}"]
    return []


async def check(ctx: Ctx, key: tuple[str, str, str], scope: Scope) -> list[str]:
    """Run one scenario: the stranger first (refused, nothing changed), then the owner (allowed)."""
    label = f"{key} [{scope.rule}]"
    try:
        call = await scope.setup(ctx)
    except AssertionError as exc:
        return [f"{label}: setup failed: {exc}"]
    own, other = actors(ctx, scope, call)
    failures = []

    async def send(headers: dict[str, str]) -> httpx.Response:
        return await ctx.svc.http.request(key[1], call.url, json=call.body, headers={**call.headers, **headers})

    r = await send(other)
    who = "another member" if scope.owner == "member" else "another institution's admin"
    if r.status_code != scope.stranger:
        failures.append(f"{label}: {who} got {r.status_code}, expected {scope.stranger}: {r.text[:200]}")
    if r.status_code >= 400:
        failures += [f"{label}: {who}: {p}" for p in refusal_problems(r)]
    if call.intact is not None and not await call.intact():
        failures.append(f"{label}: {who}'s call changed the owner's resource")

    r = await send(own)
    if not 200 <= r.status_code < 300:
        failures.append(f"{label}: the owner got {r.status_code}, expected 2xx: {r.text[:200]}")
        failures += [f"{label}: the owner: {p}" for p in refusal_problems(r)]
    return failures


@pytest.mark.parametrize("name, create_app, settings_cls, overrides, prepare", SERVICES, ids=[s[0] for s in SERVICES])
async def test_every_scoped_write_admits_its_owner_and_refuses_another_institution(
    broker, name, create_app, settings_cls, overrides, prepare,
):
    """Each institution-scoped write: A's admin (or member X) is allowed, B's admin (or member Y) is refused."""
    async with run_service(create_app, settings_cls, broker=broker, db_url=await fresh_database(name),
                           **overrides) as svc:
        spec = (await svc.http.get("/openapi.json")).json()
        ctx = await prepare(svc, broker)
        writes = scoped_writes(spec)
        cases, failures = 0, []
        for method, path in writes:
            key = (name, method, path)
            if key in EXEMPT:
                continue
            if key not in SCOPES:
                failures.append(f"{key}: an institution-scoped write with no own/other scenario: add one to SCOPES "
                                f"(or a reason to EXEMPT)")
                continue
            for scope in SCOPES[key]:
                cases += 2
                failures += await check(ctx, key, scope)
        failures += [f"{key}: in SCOPES but not an institution-scoped write of {name} any more"
                     for key in SCOPES if key[0] == name and key[1:] not in writes]
        print(f"\n{name}: {len(writes)} institution-scoped writes, {cases} own/other cases, {len(failures)} failures")
        assert writes, f"{name} documents no institution-scoped write"
        assert not failures, "\n".join(failures)
