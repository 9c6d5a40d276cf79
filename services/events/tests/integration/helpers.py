"""Shared steps for the events service's integration tests: registry events in, activities set up."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import select

import events.main
from common.events import CloudEvent
from events.config import Settings
from events.models import Alliance, Mentor, Organiser
from tests.support.harness import auth, fresh_database, produce, run_service, wait_until

PREFIX = "cn.gov.sh.cjrh"
OFFICE = auth("office_admin", sub="office-1")


@asynccontextmanager
async def events_service(broker, **overrides):
    """The events service on a fresh database, offers swept every 50 ms."""
    overrides.setdefault("offer_sweep_seconds", 0.05)
    async with run_service(events.main.create_app, Settings, broker=broker,
                           db_url=await fresh_database("events"), **overrides) as svc:
        yield svc


def institution_event(inst_id: str, name: str, *, version: int = 1, kind: str = "university",
                      status: str = "active", successor_id: str | None = None, type_: str = "registered") -> bytes:
    """A registry.institution.v1 CloudEvent as the registry would publish it."""
    return CloudEvent(
        id=str(uuid.uuid4()), source="//platform.cjrh.sh.cn/registry", type=f"{PREFIX}.registry.institution.{type_}",
        subject=inst_id, time=datetime.now(UTC),
        data={"id": inst_id, "kind": kind, "name_zh": name, "name_en": None, "uscc": None, "school_code": None,
              "district": "pudong", "industries": [], "keywords": [], "status": status, "successor_id": successor_id,
              "version": version, "updated_at": datetime.now(UTC).isoformat()},
    ).to_bytes()


def alliance_event(alliance_id: str, name: str, members: list[str], *, version: int = 1,
                   type_: str = "formed", status: str = "active") -> bytes:
    """A registry.alliance.v1 CloudEvent."""
    return CloudEvent(
        id=str(uuid.uuid4()), source="//platform.cjrh.sh.cn/registry", type=f"{PREFIX}.registry.alliance.{type_}",
        subject=alliance_id, time=datetime.now(UTC),
        data={"id": alliance_id, "name_zh": name, "kind": "industry_education", "lead_institution_id": members[0],
              "members": [{"institution_id": m, "role": "member"} for m in members], "status": status,
              "version": version},
    ).to_bytes()


def mentor_event(mentor_id: str, institution_id: str, *, version: int = 1, type_: str = "listed") -> bytes:
    """A registry.mentor.v1 CloudEvent (a listed mentor of the faculty pool)."""
    return CloudEvent(
        id=str(uuid.uuid4()), source="//platform.cjrh.sh.cn/registry", type=f"{PREFIX}.registry.mentor.{type_}",
        subject=mentor_id, time=datetime.now(UTC),
        data={"id": mentor_id, "institution_id": institution_id, "title": "教授", "name": "王评委",
              "industries": ["integrated_circuits"], "status": "listed" if type_ != "unlisted" else "unlisted",
              "version": version},
    ).to_bytes()


async def feed_mentor(svc, broker, mentor_id: str, institution_id: str, *, version: int = 1,
                      type_: str = "listed") -> None:
    """Publish a mentor on registry.mentor.v1 and wait until the events service projects that version of it."""
    await produce(broker.bootstrap, "registry.mentor.v1",
                  [mentor_event(mentor_id, institution_id, version=version, type_=type_)], key=mentor_id.encode())

    async def projected():
        async with svc.runtime.sessions() as s:
            row = await s.get(Mentor, mentor_id)
        return row is not None and row.version == version

    await wait_until(projected, what=f"mentor {mentor_id} v{version} projected")


async def feed_institutions(svc, broker, *institutions: tuple[str, str]) -> None:
    """Publish institutions on registry.institution.v1 and wait until the events service projects them."""
    for inst_id, name in institutions:
        await produce(broker.bootstrap, "registry.institution.v1", [institution_event(inst_id, name)],
                      key=inst_id.encode())
    ids = {i for i, _ in institutions}

    async def known():
        async with svc.runtime.sessions() as s:
            rows = (await s.execute(select(Organiser.id).where(Organiser.id.in_(ids)))).scalars().all()
        return set(rows) == ids

    await wait_until(known, what="institutions projected")


async def alliance_members(svc, alliance_id: str) -> list[str] | None:
    """The projected members of an alliance (None if unknown)."""
    async with svc.runtime.sessions() as s:
        row = await s.get(Alliance, alliance_id)
        return row.member_ids if row else None


def new_id() -> str:
    """A fresh institution id."""
    return str(uuid.uuid4())


def activity_body(organiser_id: str, **kw) -> dict:
    """A valid activity creation body."""
    body = {
        "kind": "conference", "title_zh": "临港产教融合论坛", "title_en": "Lingang forum", "organiser_id": organiser_id,
        "venue": "临港会议中心", "starts_at": "2027-05-20T09:00:00", "ends_at": "2027-05-20T17:00:00",
        "audience": ["students", "enterprises"], "industries": ["integrated_circuits"],
    }
    body.update(kw)
    return body


async def open_activity(svc, organiser_id: str, headers=OFFICE, **kw) -> dict:
    """Create an activity and move it to registration_open."""
    r = await svc.http.post("/activities", json=activity_body(organiser_id, **kw), headers=headers)
    assert r.status_code == 201, r.text
    act = r.json()
    for target in ("published", "registration_open"):
        t = await svc.http.post(f"/activities/{act['id']}/transitions", json={"status": target}, headers=headers)
        assert t.status_code == 200, t.text
    return t.json()


def member(sub: str | None = None, institution: str | None = None, name: str | None = None) -> dict:
    """A member's Authorization header."""
    from tests.support.harness import token

    sub = sub or f"m-{uuid.uuid4().hex[:8]}"
    return {"Authorization": f"Bearer {token('member', sub=sub, institution=institution, name=name)}"}
