"""What the registry does with consumed events: the city's enterprise records, upserted by USCC."""

from __future__ import annotations

import orjson
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.consumer import Handler, PoisonMessage
from common.events import CloudEvent
from common.identifiers import canonical_code
from common.outbox import EventStager
from registry import service
from registry.contracts import (
    ACTIVE_WORDS,
    MAX_DATA_BYTES,
    InstitutionStatusChanged,
    InstitutionUpdated,
    MunicipalEnterprise,
)
from registry.domain import (
    District,
    Industry,
    InstitutionKind,
    InstitutionStatus,
    district_from,
    industry_from,
    unique,
    uscc_problem,
)
from registry.models import Institution
from registry.schemas import InstitutionCreate

MUNICIPAL_ACTOR = "municipal:market-supervision"


def parse_municipal_record(data: object) -> tuple[MunicipalEnterprise, District, Industry | None, InstitutionStatus]:
    """Validate one inbound enterprise record; PoisonMessage names why it can never be applied."""
    if not isinstance(data, dict):
        raise PoisonMessage(f"data must be a JSON object, got {type(data).__name__}")
    size = len(orjson.dumps(data))
    if size > MAX_DATA_BYTES:
        raise PoisonMessage(f"record is oversized: {size} bytes (limit {MAX_DATA_BYTES})")
    try:
        rec = MunicipalEnterprise.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise PoisonMessage(f"invalid enterprise record: {problems}") from exc
    if (why := uscc_problem(canonical_code(rec.uscc))) is not None:
        raise PoisonMessage(f"invalid USCC {rec.uscc!r}: {why}")
    district = district_from(rec.district)
    if district is None:
        raise PoisonMessage(f"unknown district {rec.district!r}")
    status = InstitutionStatus.ACTIVE if rec.status in ACTIVE_WORDS else InstitutionStatus.INACTIVE  # or INACTIVE_WORDS
    industry = industry_from(rec.industry) if rec.industry else None
    return rec, district, industry, status


async def upsert_enterprise(*, session: AsyncSession, stager: EventStager, event: CloudEvent) -> None:
    """Create or update the enterprise the city's record describes (merged records are left alone)."""
    rec, district, industry, status = parse_municipal_record(event.data)
    uscc = canonical_code(rec.uscc)
    name = rec.name.strip()
    inst = (await session.execute(
        select(Institution).where(Institution.uscc == uscc).with_for_update()
    )).scalars().first()
    if inst is None:
        keywords = [rec.industry.strip()] if rec.industry and industry is None else []
        await service.add_institution(session=session, stager=stager, actor=MUNICIPAL_ACTOR, status=status, data=(
            InstitutionCreate(kind=InstitutionKind.ENTERPRISE, name_zh=name, uscc=uscc, district=district,
                              industries=[industry] if industry else [], keywords=keywords)))
        return
    if inst.status == InstitutionStatus.WITHDRAWN:
        return
    values = {"name_zh": name, "district": district.value}
    if industry is not None:
        values["industries"] = unique([*inst.industries, industry.value])
    await service.apply_changes(session=session, stager=stager, inst=inst, values=values, actor=MUNICIPAL_ACTOR,
                                contract=InstitutionUpdated)
    if inst.status != status.value:
        await service.apply_changes(session=session, stager=stager, inst=inst, values={"status": status.value},
                                    actor=MUNICIPAL_ACTOR, change="status_changed", contract=InstitutionStatusChanged)


def municipal_handlers(stager: EventStager) -> dict[str, Handler]:
    """Handlers of municipal.enterprise.v1, bound to the service's event stager."""

    async def enterprise_upserted(session: AsyncSession, event: CloudEvent) -> None:
        """Upsert an enterprise by USCC from the city's market-supervision record."""
        await upsert_enterprise(session=session, stager=stager, event=event)

    return {"municipal.enterprise.upserted": enterprise_upserted}
