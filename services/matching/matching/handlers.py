"""What matching does with each consumed event: projections of the registry, municipal talent demand."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from functools import cache

from pydantic import ValidationError
from sqlalchemy import bindparam, exists, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.expression import Executable

from common.consumer import PoisonMessage, parse_payload
from common.db import utcnow
from common.events import CloudEvent, brief_errors
from common.identifiers import canonical_code
from common.outbox import EventStager
from matching.contracts import (
    MunicipalTalentDemand,
    OpportunityExpired,
    OpportunityOpened,
    OpportunityUpdated,
    RegistryCertification,
    RegistryInstitution,
)
from matching.domain import OpportunityKind, OpportunityStatus, is_past_deadline, uscc_is_valid
from matching.models import CertificationView, InstitutionView, Match, Opportunity
from matching.scoring import tokenize
from matching.service import opportunity_payload

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
MUNICIPAL_NAMESPACE = uuid.UUID("6f1c3b1e-5a0d-4a43-9f0c-2d6b7c1f9a11")


def institution_tokens(data: RegistryInstitution) -> list[str]:
    """Search tokens of an institution: its name and keywords, segmented."""
    return tokenize(data.name_zh, " ".join(data.keywords))


def make_institution_handler(stager: EventStager) -> Handler:
    """Build the registry.institution.v1 handler (it stages events when a merge moves opportunities)."""

    async def project_institution(session: AsyncSession, event: CloudEvent) -> None:
        """Upsert the institution projection (newer versions win); a merge moves its open work to the successor."""
        data = parse_payload(RegistryInstitution, event, "registry institution")
        fields = data.model_dump() | {"tokens": institution_tokens(data), "updated_at": event.time}
        if not await _upsert_institution(session, fields):
            return  # an older version than the one projected: nothing to do
        if data.successor_id:
            await _follow_successor(session, stager, data.id, data.successor_id)

    return project_institution


_VIEW = InstitutionView.__table__
_PROJECTED = ("id", "kind", "name_zh", "uscc", "district", "industries", "keywords", "status", "successor_id",
              "version", "tokens", "updated_at")


@cache
def _upsert_statement() -> Executable:
    """INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE not older, built once (values bound per call)."""
    params = {c: bindparam(f"p_{c}", type_=_VIEW.c[c].type) for c in _PROJECTED}
    certified = exists().where(CertificationView.institution_id == params["id"],
                               CertificationView.is_certified.is_(True))
    ins = pg_insert(_VIEW).values(**params, certified=select(certified).scalar_subquery())
    return ins.on_conflict_do_update(
        index_elements=[_VIEW.c.id], set_={c: ins.excluded[c] for c in _PROJECTED},
        where=_VIEW.c.version <= ins.excluded.version,
    ).returning(_VIEW.c.id)


async def _upsert_institution(session: AsyncSession, fields: dict) -> bool:
    """Insert or update (when not older) a projected institution in one statement; False if it was older.

    One round trip instead of three (read, certification check, write): this handler runs for every registry
    change and its database round trips set the pipeline's end-to-end latency. A new row counts as certified when a
    certification record already says so; an update keeps `certified`, which certification events maintain."""
    await session.flush()  # pending ORM changes first, so the statement sees them
    conn = await session.connection()
    stmt = _upsert_statement()
    applied = (await conn.execute(stmt, {f"p_{c}": fields[c] for c in _PROJECTED})).first() is not None
    loaded = session.identity_map.get(identity_key(InstitutionView, fields["id"]))
    if loaded is not None:
        session.expire(loaded)  # an instance loaded earlier in this transaction reloads what the statement wrote
    return applied


async def _follow_successor(session: AsyncSession, stager: EventStager, old: str, new: str) -> None:
    """Opportunities and live matches of a merged institution carry on under its successor."""
    # Matches before opportunities, the order a match's action locks them in (no deadlock); the opportunities under
    # their row locks, so a simultaneous transition's version is not lost (nor two events given one version).
    await session.execute(update(Match).where(Match.from_institution_id == old).values(from_institution_id=new))
    await session.execute(update(Match).where(Match.to_institution_id == old).values(to_institution_id=new))
    opps = list((await session.execute(select(Opportunity).where(Opportunity.institution_id == old)
                                       .order_by(Opportunity.id).with_for_update(key_share=True))).scalars())
    for opp in opps:
        opp.institution_id = new
        opp.version += 1
        opp.updated_at = utcnow()
        if opp.status in (OpportunityStatus.OPEN, OpportunityStatus.MATCHED):
            await stager.stage(session, OpportunityUpdated, key=opp.id, payload=opportunity_payload(opp))


async def _is_certified(session: AsyncSession, institution_id: str) -> bool:
    rows = await session.execute(select(CertificationView.id).where(
        CertificationView.institution_id == institution_id, CertificationView.is_certified.is_(True)))
    return rows.first() is not None


async def project_certification(session: AsyncSession, event: CloudEvent) -> None:
    """Upsert a certification record and refresh whether its institution counts as certified."""
    data = parse_payload(RegistryCertification, event, "registry certification")
    row = await session.get(CertificationView, data.id)
    if row is None:
        session.add(CertificationView(**data.model_dump(), updated_at=event.time))
    elif data.version >= row.version:
        for k, v in data.model_dump().items():
            setattr(row, k, v)
        row.updated_at = event.time
    else:
        return
    await session.flush()
    view = await session.get(InstitutionView, data.institution_id)
    if view is not None:
        view.certified = await _is_certified(session, data.institution_id)


def make_talent_demand_handler(stager: EventStager) -> Handler:
    """Build the municipal.talent-demand.v1 handler: each posted position becomes (or updates) an opportunity."""

    async def import_talent_demand(session: AsyncSession, event: CloudEvent) -> None:
        """Turn a position from the city's HR platform into an open talent-demand opportunity (bad records: DLQ)."""
        try:
            data = MunicipalTalentDemand.model_validate(event.data)
        except ValidationError as exc:
            raise PoisonMessage(f"talent demand record invalid: {brief_errors(exc)}") from exc
        data.employer_uscc = canonical_code(data.employer_uscc)  # full-width input is the same code
        if not uscc_is_valid(data.employer_uscc):
            raise PoisonMessage(f"employer_uscc {data.employer_uscc!r} fails the GB 32100-2015 check")
        employer = (await session.execute(select(InstitutionView).where(
            InstitutionView.uscc == data.employer_uscc,
            or_(InstitutionView.successor_id.is_(None), InstitutionView.successor_id == "")))).scalars().first()
        opp_id = str(uuid.uuid5(MUNICIPAL_NAMESPACE, data.external_id))
        # locked: the office may be closing it (or a match filling it) at this instant; neither change is lost
        opp = await session.get(Opportunity, opp_id, with_for_update={"key_share": True})
        now = utcnow()
        fields = dict(
            title_zh=data.title, description_zh="", skills=data.skills, industries=[data.industry],
            district=data.district, capacity=data.headcount, deadline=data.deadline,
            institution_id=employer.id if employer else None, employer_name=data.employer_name,
            tokens=tokenize(data.title, " ".join(data.skills)),
        )
        expired = is_past_deadline(deadline=data.deadline, now=now)
        if opp is None:
            opp = Opportunity(
                id=opp_id, direction="demand", kind=OpportunityKind.TALENT_DEMAND.value, source="municipal",
                external_id=data.external_id, created_by="municipal.talent-demand", opened_at=now,
                status=(OpportunityStatus.EXPIRED if expired else OpportunityStatus.OPEN).value, **fields,
            )
            session.add(opp)
            await session.flush()
            await stager.stage(session, OpportunityExpired if expired else OpportunityOpened, key=opp.id,
                               payload=opportunity_payload(opp))
            return
        if opp.status not in (OpportunityStatus.OPEN, OpportunityStatus.MATCHED):
            return  # closed or expired here: a re-post does not revive it
        for k, v in fields.items():
            setattr(opp, k, v)
        opp.version += 1
        opp.updated_at = now
        if expired and opp.status == OpportunityStatus.OPEN:
            opp.status = OpportunityStatus.EXPIRED.value
        await stager.stage(session, OpportunityExpired if opp.status == OpportunityStatus.EXPIRED
                           else OpportunityUpdated, key=opp.id, payload=opportunity_payload(opp))

    return import_talent_demand
