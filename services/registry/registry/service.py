"""Institution use cases: keyword-only, each writes its rows, its history and its events in one transaction."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Text, and_, bindparam, func, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.db import ON_ITS_OWN, utcnow
from common.errors import Conflict, Forbidden, NotFound, Unprocessable
from common.events import EventContract
from common.outbox import EventStager
from registry.contracts import (
    ContactPayload,
    ContactUpdated,
    InstitutionMerged,
    InstitutionPayload,
    InstitutionRegistered,
    InstitutionStatusChanged,
    InstitutionUpdated,
)
from registry.domain import (
    PERSONAL_FIELDS,
    SCHOOL_KINDS,
    InstitutionStatus,
    check_if_match,
    diff,
    name_grams,
    query_grams,
    redact_changes,
)
from registry.models import Institution, InstitutionRevision, new_id
from registry.schemas import InstitutionCreate, InstitutionUpdate

SNAPSHOT_FIELDS = (
    "kind", "name_zh", "name_en", "uscc", "school_code", "district", "address", "industries", "keywords", "website",
    "contact_name", "contact_phone", "contact_email", "status", "successor_id", "certification_status",
)


def actor_label(actor: Principal | str) -> str:
    """How an actor is written into the change history."""
    if isinstance(actor, str):
        return actor
    return f"{actor.sub} ({', '.join(sorted(actor.roles)) or 'no role'})"


def institution_payload(inst: Institution) -> InstitutionPayload:
    """The public event payload for an institution (no personal data)."""
    return InstitutionPayload.model_validate(inst, from_attributes=True)


def snapshot(inst: Institution) -> dict[str, Any]:
    """The recorded state of an institution (JSON-ready), kept in each revision for as-of reads."""
    out = {f: getattr(inst, f) for f in SNAPSHOT_FIELDS}
    out.update(id=inst.id, version=inst.version, created_at=inst.created_at.isoformat(),
               updated_at=inst.updated_at.isoformat())
    return out


async def _record(
    session: AsyncSession, inst: Institution, *, change: str, actor: str, changes: dict[str, Any],
) -> None:
    session.add(InstitutionRevision(
        institution_id=inst.id, version=inst.version, change=change, actor=actor, changed_at=inst.updated_at,
        changes=changes, snapshot=snapshot(inst),
    ))


async def _stage(session: AsyncSession, stager: EventStager, contract: EventContract, inst: Institution) -> None:
    await stager.stage(session, contract, key=inst.id, payload=institution_payload(inst))


async def _stage_contact(session: AsyncSession, stager: EventStager, inst: Institution) -> None:
    await stager.stage(session, ContactUpdated, key=inst.id, payload=ContactPayload(
        institution_id=inst.id, contact_name=inst.contact_name, contact_email=inst.contact_email,
        contact_phone=inst.contact_phone, version=inst.version,
    ))


async def find_duplicate(
    session: AsyncSession, *, uscc: str | None, school_code: str | None, exclude_id: str | None = None,
) -> tuple[Institution, str] | None:
    """The record that already holds this USCC or school code, and which field clashed."""
    clauses = []
    if uscc:
        clauses.append(Institution.uscc == uscc)
    if school_code:
        clauses.append(Institution.school_code == school_code)
    if not clauses:
        return None
    stmt = select(Institution).where(or_(*clauses))
    if exclude_id:
        stmt = stmt.where(Institution.id != exclude_id)
    existing = (await session.execute(stmt)).scalars().first()
    if existing is None:
        return None
    return existing, ("uscc" if uscc and existing.uscc == uscc else "school_code")


def duplicate_conflict(existing: Institution, field: str) -> Conflict:
    """The 409 that names the record already holding an identifier."""
    return Conflict(
        f"an institution with this {field} is already registered: {existing.name_zh} ({existing.id})",
        existing_id=existing.id, existing_name=existing.name_zh, field=field,
    )


def new_institution_row(data: InstitutionCreate, *, status: InstitutionStatus) -> dict[str, Any]:
    """The full row of a new institution (version 1), ready to insert."""
    now = utcnow()
    row = data.model_dump(mode="json")
    row.update(id=new_id(), status=status.value, successor_id=None, certification_status=None, version=1,
               created_at=now, updated_at=now, name_grams=name_grams(data.name_zh, data.name_en))
    return row


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _snapshot_of_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {f: row[f] for f in SNAPSHOT_FIELDS}
    out.update(id=row["id"], version=row["version"], created_at=row["created_at"].isoformat(),
               updated_at=row["updated_at"].isoformat())
    return out


_JSON_COLUMNS = ("industries", "keywords")
_ROW_COLUMNS = (*SNAPSHOT_FIELDS, "id", "version", "created_at", "updated_at", "name_grams")
_OUTBOX_COLUMNS = ("event_id", "topic", "key", "event_type", "payload")
_OUTBOX_VALUES = (", ".join(f"CAST(:{{e}}_{c} AS bytea)" if c == "payload" else f":{{e}}_{c}" for c in _OUTBOX_COLUMNS)
                  + ", updated_at, 0 FROM added")
_REGISTER_SQL = (
    "WITH added AS (INSERT INTO institutions (" + ", ".join(_ROW_COLUMNS) + ") VALUES ("  # noqa: S608
    + ", ".join(f"CAST(:{c} AS jsonb)" if c in _JSON_COLUMNS else f":{c}" for c in _ROW_COLUMNS)
    + ") RETURNING id, version, updated_at), "
    "revision AS (INSERT INTO institution_revisions (institution_id, version, change, actor, changed_at, changes, "
    "snapshot) SELECT id, version, 'registered', :actor, updated_at, CAST(:changes AS json), CAST(:snapshot AS json) "
    "FROM added), "
    "event AS (INSERT INTO outbox (" + ", ".join(_OUTBOX_COLUMNS) + ", created_at, attempts) {events} RETURNING seq) "
    "SELECT count(pg_notify(:channel, '')) FROM event"
)


def _native(sql: str) -> tuple[str, tuple[str, ...]]:
    """A statement with :named parameters in the driver's positional form ($1, $2, ...), and the names in order."""
    names = tuple(dict.fromkeys(re.findall(r":(\w+)", sql)))
    return re.sub(r":(\w+)", lambda m: f"${names.index(m.group(1)) + 1}", sql), names


# A registration is one statement: the row, its first history entry, its event (and, when a contact person is
# given, the contact event after it) and the NOTIFY that wakes relays in other processes. Built once from constant
# column names, every value a bound parameter, and sent in the driver's positional form: no SQL compilation and no
# per-value processing on each request.
_REGISTER_NATIVE = {
    with_contact: _native(_REGISTER_SQL.format(events=" UNION ALL ".join(
        "SELECT " + _OUTBOX_VALUES.format(e=e) for e in (("outbox", "contact") if with_contact else ("outbox",)))))
    for with_contact in (False, True)
}


async def add_institution(
    *, session: AsyncSession, stager: EventStager, data: InstitutionCreate, actor: str,
    status: InstitutionStatus = InstitutionStatus.ACTIVE, check_duplicates: bool = True,
) -> dict[str, Any]:
    """Add an institution and its first history entry inside the caller's transaction; returns the row.

    With `check_duplicates=False` the unique constraints alone refuse duplicates (an IntegrityError the caller
    translates), which saves a round trip on the hot registration path.
    """
    if check_duplicates and (dup := await find_duplicate(session, uscc=data.uscc,
                                                          school_code=data.school_code)) is not None:
        raise duplicate_conflict(*dup)
    row = new_institution_row(data, status=status)
    revision = {
        "institution_id": row["id"], "version": 1, "change": "registered", "actor": actor,
        "changed_at": row["updated_at"], "snapshot": _snapshot_of_row(row),
        "changes": redact_changes(diff({}, {f: row[f] for f in SNAPSHOT_FIELDS})),
    }
    payload = InstitutionPayload.model_validate(row)
    contact = ContactPayload(
        institution_id=row["id"], contact_name=row["contact_name"], contact_email=row["contact_email"],
        contact_phone=row["contact_phone"], version=1,
    ) if any(row[f] for f in PERSONAL_FIELDS) else None
    # One statement (see _REGISTER_NATIVE).
    _, event = stager.event_row(InstitutionRegistered, key=row["id"], payload=payload)
    params = {**row, **{c: _json(row[c]) for c in _JSON_COLUMNS}, "actor": actor,
              "changes": _json(revision["changes"]), "snapshot": _json(revision["snapshot"]),
              **{f"outbox_{c}": event[c] for c in _OUTBOX_COLUMNS}, "channel": stager.channel}
    if contact is not None:
        _, contact_event = stager.event_row(ContactUpdated, key=row["id"], payload=contact)
        params.update({f"contact_{c}": contact_event[c] for c in _OUTBOX_COLUMNS})
    sql, names = _REGISTER_NATIVE[contact is not None]
    conn = await session.connection()
    await conn.exec_driver_sql(sql, tuple(params[p] for p in names))
    stager.staged(session)
    return row


async def register_institution(
    *, session: AsyncSession, stager: EventStager, data: InstitutionCreate, actor: Principal | str,
) -> dict[str, Any]:
    """Add an institution; a duplicate USCC or school code is refused naming the existing record."""
    try:
        async with session.begin():
            # Without the duplicate check, add_institution is one statement: it can be its own transaction.
            await session.connection(execution_options=ON_ITS_OWN)
            return await add_institution(session=session, stager=stager, data=data, actor=actor_label(actor),
                                         check_duplicates=False)
    except IntegrityError:
        async with session.begin():
            dup = await find_duplicate(session, uscc=data.uscc, school_code=data.school_code)
        if dup is None:
            raise
        raise duplicate_conflict(*dup) from None


async def get_institution(*, session: AsyncSession, institution_id: str, for_update: bool = False) -> Institution:
    """One institution by id."""
    if for_update:
        stmt = select(Institution).where(Institution.id == institution_id).with_for_update()
        inst = (await session.execute(stmt)).scalars().first()
    else:
        inst = await session.get(Institution, institution_id)
    if inst is None:
        raise NotFound(f"no institution with id {institution_id}")
    return inst


_READ_COLUMNS = [c for c in Institution.__table__.c if c.name != "name_grams"]
_READ_ONE = select(*_READ_COLUMNS).where(Institution.id == bindparam("institution_id"))  # built once, bound per call


async def read_institution(*, session: AsyncSession, institution_id: str) -> dict[str, Any]:
    """One institution's current row as a mapping (the read path: no ORM identity map, no search grams)."""
    row = (await session.execute(_READ_ONE, {"institution_id": institution_id})).mappings().first()
    if row is None:
        raise NotFound(f"no institution with id {institution_id}")
    return dict(row)


def require_editor(actor: Principal, institution_id: str) -> None:
    """Only the office, or an administrator of this very institution, may edit it (403 otherwise)."""
    if not actor.acts_for(institution_id):
        raise Forbidden(
            f"you may edit only your own institution ({actor.institution_id or 'none'}), not {institution_id}",
        )


async def apply_changes(
    *, session: AsyncSession, stager: EventStager, inst: Institution, values: dict[str, Any], actor: str,
    change: str = "updated", contract: EventContract = InstitutionUpdated,
) -> dict[str, list[Any]]:
    """Apply field values to a loaded institution: new version, history entry, events; returns what changed."""
    before = {f: getattr(inst, f) for f in values}
    changes = diff(before, values)
    if not changes:
        return {}
    for field, value in values.items():
        setattr(inst, field, value)
    inst.name_grams = name_grams(inst.name_zh, inst.name_en)
    inst.version += 1
    inst.updated_at = utcnow()
    await session.flush()
    await _record(session, inst, change=change, actor=actor, changes=redact_changes(changes))
    public = set(changes) - set(PERSONAL_FIELDS)
    if public:
        await _stage(session, stager, contract, inst)
    if set(changes) & set(PERSONAL_FIELDS):
        await _stage_contact(session, stager, inst)
    return changes


async def update_institution(
    *, session: AsyncSession, stager: EventStager, institution_id: str, data: InstitutionUpdate,
    if_match: str | None, actor: Principal,
) -> Institution:
    """Edit an institution's fields under optimistic concurrency (If-Match); every change is versioned.

    Simultaneous edits take turns on the row lock, so each judges If-Match against the version the one before left:
    one 200, every other 412. Should a unique constraint still refuse the write (the version's history entry, or an
    identifier another record took at the same instant), a stale If-Match is still answered 412, not 409.
    """
    try:
        return await _update_institution(session=session, stager=stager, institution_id=institution_id, data=data,
                                         if_match=if_match, actor=actor)
    except IntegrityError:
        async with session.begin():
            current = await get_institution(session=session, institution_id=institution_id)
            check_if_match(if_match, current.version)
            dup = await find_duplicate(session, uscc=data.uscc, school_code=data.school_code, exclude_id=current.id)
        if dup is None:
            raise
        raise duplicate_conflict(*dup) from None


async def _update_institution(
    *, session: AsyncSession, stager: EventStager, institution_id: str, data: InstitutionUpdate,
    if_match: str | None, actor: Principal,
) -> Institution:
    async with session.begin():
        inst = await get_institution(session=session, institution_id=institution_id, for_update=True)
        require_editor(actor, inst.id)
        check_if_match(if_match, inst.version)
        if inst.status == InstitutionStatus.WITHDRAWN:
            raise Conflict(f"{inst.name_zh} is withdrawn; edit its successor {inst.successor_id} instead",
                           successor_id=inst.successor_id)
        values = data.model_dump(mode="json", exclude_unset=True)
        if "name_zh" in values and values["name_zh"] is None:
            raise Unprocessable("name_zh cannot be removed")
        if "district" in values and values["district"] is None:
            raise Unprocessable("district cannot be removed")
        for list_field in ("industries", "keywords"):
            if list_field in values and values[list_field] is None:
                values[list_field] = []
        if inst.kind == "enterprise" and not values.get("uscc", inst.uscc):
            raise Unprocessable("an enterprise needs its USCC")
        if inst.uscc and values.get("uscc", inst.uscc) != inst.uscc and not actor.is_office:
            raise Forbidden("a registered USCC is changed by the office: ask with "
                            f"POST /institutions/{inst.id}/uscc-change-requests")
        if values.get("school_code") and inst.kind not in SCHOOL_KINDS:
            raise Unprocessable(f"a {inst.kind} has no school_code")
        if (dup := await find_duplicate(session, uscc=values.get("uscc"), school_code=values.get("school_code"),
                                        exclude_id=inst.id)) is not None:
            raise duplicate_conflict(*dup)
        await apply_changes(session=session, stager=stager, inst=inst, values=values, actor=actor_label(actor))
    return inst


async def change_status(
    *, session: AsyncSession, stager: EventStager, institution_id: str, status: InstitutionStatus,
    reason: str | None, if_match: str | None, actor: Principal,
) -> Institution:
    """Set an institution active, inactive or withdrawn (office only; a withdrawal with a successor is a merge)."""
    async with session.begin():
        inst = await get_institution(session=session, institution_id=institution_id, for_update=True)
        if if_match is not None:
            check_if_match(if_match, inst.version)
        if inst.status == status:
            raise Conflict(f"{inst.name_zh} is already {status.value}")
        if inst.status == InstitutionStatus.WITHDRAWN and inst.successor_id:
            raise Conflict(f"{inst.name_zh} was merged into {inst.successor_id}; it cannot be reactivated",
                           successor_id=inst.successor_id)
        await apply_changes(session=session, stager=stager, inst=inst, values={"status": status.value},
                            actor=actor_label(actor) + (f": {reason}" if reason else ""), change="status_changed",
                            contract=InstitutionStatusChanged)
    return inst


async def merge_institutions(
    *, session: AsyncSession, stager: EventStager, institution_id: str, successor_id: str, reason: str | None,
    if_match: str | None, actor: Principal,
) -> Institution:
    """Withdraw a duplicate into its successor; records that pointed at the duplicate now point at the successor."""
    if institution_id == successor_id:
        raise Unprocessable("an institution cannot be merged into itself")
    async with session.begin():
        # Both rows locked, in id order (two merges naming the same pair either way round cannot deadlock): a
        # successor being merged away at the same instant is seen withdrawn here, or finds this record pointing at it.
        locked = {i.id: i for i in (await session.execute(
            select(Institution).where(Institution.id.in_([institution_id, successor_id]))
            .order_by(Institution.id).with_for_update())).scalars()}
        inst = locked.get(institution_id) or await get_institution(session=session, institution_id=institution_id)
        if if_match is not None:
            check_if_match(if_match, inst.version)
        successor = locked.get(successor_id) or await get_institution(session=session, institution_id=successor_id)
        if inst.status == InstitutionStatus.WITHDRAWN:
            raise Conflict(f"{inst.name_zh} is already withdrawn (successor {inst.successor_id})",
                           successor_id=inst.successor_id)
        if successor.status == InstitutionStatus.WITHDRAWN:
            raise Conflict(f"the successor {successor.name_zh} is itself withdrawn; merge into "
                           f"{successor.successor_id or 'an active record'}", successor_id=successor.successor_id)
        label = actor_label(actor) + (f": {reason}" if reason else "")
        await apply_changes(session=session, stager=stager, inst=inst,
                            values={"status": InstitutionStatus.WITHDRAWN.value, "successor_id": successor.id},
                            actor=label, change="merged", contract=InstitutionMerged)
        earlier = (await session.execute(
            select(Institution).where(Institution.successor_id == inst.id).with_for_update()
        )).scalars().all()
        for old in earlier:
            await apply_changes(session=session, stager=stager, inst=old, values={"successor_id": successor.id},
                                actor=label, change="merged", contract=InstitutionMerged)
    return inst


async def set_certification_status(
    *, session: AsyncSession, stager: EventStager, institution_id: str, certification_status: str | None, actor: str,
) -> None:
    """Mirror a certification step on the institution (searchable), inside the caller's transaction."""
    inst = await get_institution(session=session, institution_id=institution_id, for_update=True)
    await apply_changes(session=session, stager=stager, inst=inst,
                        values={"certification_status": certification_status}, actor=actor, change="certification")


async def institution_as_of(*, session: AsyncSession, institution_id: str, at: datetime) -> dict[str, Any]:
    """The institution as it was at `at` (from its change history)."""
    rev = (await session.execute(
        select(InstitutionRevision)
        .where(InstitutionRevision.institution_id == institution_id, InstitutionRevision.changed_at <= at)
        .order_by(InstitutionRevision.version.desc()).limit(1)
    )).scalars().first()
    if rev is None:
        await get_institution(session=session, institution_id=institution_id)
        raise NotFound(f"institution {institution_id} did not exist yet at {at.isoformat()}")
    return rev.snapshot


async def list_revisions(*, session: AsyncSession, institution_id: str) -> list[InstitutionRevision]:
    """The full change history of an institution, oldest first."""
    await get_institution(session=session, institution_id=institution_id)
    return list((await session.execute(
        select(InstitutionRevision).where(InstitutionRevision.institution_id == institution_id)
        .order_by(InstitutionRevision.version)
    )).scalars())


def _encode_cursor(name: str, id_: str) -> str:
    return base64.urlsafe_b64encode(f"{name}\x00{id_}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        name, sep, id_ = base64.urlsafe_b64decode(cursor.encode()).decode().partition("\x00")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Unprocessable("cursor is not one this API issued") from exc
    if not sep:
        raise Unprocessable("cursor is not one this API issued")
    return name, id_


def json_contains(column, value: str):
    """`column` (a JSONB list) contains `value`: containment, served by the column's GIN index where it has one."""
    return column.op("@>")(literal([value], JSONB()))


def _name_filter(q: str):
    ql = q.lower()
    gram_match = Institution.name_grams.op("@>")(literal(query_grams(q), ARRAY(Text())))
    if len(q) <= 2:
        return gram_match  # up to two characters the grams are the substring itself
    # Longer queries recheck contiguity. strpos rather than LIKE '%q%': the planner's guess for an unanchored LIKE is
    # tiny, which would hide how common the grams are (known exactly from the text[] statistics) and make it sort tens
    # of thousands of matches instead of walking the name index until a page is full.
    return and_(gram_match, or_(func.strpos(func.lower(Institution.name_zh), ql) > 0,
                                func.strpos(func.lower(func.coalesce(Institution.name_en, "")), ql) > 0))


async def _search_settings(session: AsyncSession) -> None:
    """Plan this transaction's search with its own values, on one process.

    A cached generic plan cannot see how rare a query's grams are; parallel workers' start-up dwarfs a 50-row page.
    """
    await session.execute(select(func.set_config("plan_cache_mode", "force_custom_plan", True),
                                 func.set_config("max_parallel_workers_per_gather", "0", True)))


async def list_institutions(
    *, session: AsyncSession, kind: str | None = None, district: str | None = None, industry: str | None = None,
    status: str | None = None, certification_status: str | None = None, q: str | None = None,
    limit: int = 50, cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Filter and search institutions, sorted by Chinese name then id (stable), a page at a time (rows as mappings)."""
    stmt = select(*_READ_COLUMNS)
    if kind:
        stmt = stmt.where(Institution.kind == kind)
    if district:
        stmt = stmt.where(Institution.district == district)
    if status:
        stmt = stmt.where(Institution.status == status)
    if certification_status:
        stmt = stmt.where(Institution.certification_status == certification_status)
    if industry:
        stmt = stmt.where(json_contains(Institution.industries, industry))
    q = q.strip() if q else None
    if q:
        stmt = stmt.where(_name_filter(q))
        await _search_settings(session)
    if cursor:
        name, id_ = _decode_cursor(cursor)
        stmt = stmt.where(or_(Institution.name_zh > name, and_(Institution.name_zh == name, Institution.id > id_)))
    result = await session.execute(stmt.order_by(Institution.name_zh, Institution.id).limit(limit + 1))
    rows = [dict(r) for r in result.mappings()]
    nxt = _encode_cursor(rows[limit - 1]["name_zh"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return rows[:limit], nxt
