"""HTTP routes for activities, sessions, registrations, check-in and calendars: parse, call a use case, shape."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from common.auth import CurrentPrincipal, OptionalPrincipal, Principal, Role, require_roles
from common.errors import Unprocessable
from common.paging import Cursor
from common.service import Runtime, SessionDep
from events import ical, service
from events.clock import Clock
from events.domain import allowed_transitions
from events.models import Activity, ActivitySession, Registration
from events.schemas import (
    ActivityCreate,
    ActivityPublic,
    Attendance,
    CapacityChange,
    CheckinListCreate,
    CheckinListPublic,
    CheckinRequest,
    CheckinResult,
    ConsentChange,
    Page,
    ParticipantPublic,
    RegistrationCreate,
    RegistrationPublic,
    SessionCreate,
    SessionPublic,
    TransitionRequest,
)

router = APIRouter(tags=["activities"])

Organising = Annotated[Principal, Depends(require_roles(Role.OFFICE_ADMIN, Role.INSTITUTION_ADMIN))]


# Both dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, and two
# thread hand-offs per request cost more CPU than the rest of the dependency solving.
async def get_clock(request: Request) -> Clock:
    """The service's clock (shifted in tests)."""
    return request.app.state.clock


async def get_runtime(request: Request) -> Runtime:
    """The running service's resources (the same object as common.service.get_runtime returns)."""
    return request.app.state.runtime


ClockDep = Annotated[Clock, Depends(get_clock)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def offer_ttl(runtime) -> int:
    """The service's default for how long waitlist offers stay open (an activity may set its own)."""
    return runtime.settings.offer_ttl_seconds


def if_match_version(if_match: str | None) -> int | None:
    """The version named by an If-Match header ("3" or "\\"3\\""), if any."""
    if if_match is None:
        return None
    try:
        return int(if_match.strip().strip('W/').strip('"'))
    except ValueError as exc:
        raise Unprocessable(f"If-Match must carry a version number, got {if_match!r}") from exc


async def present_activity(session, act: Activity, viewer: Principal | None) -> ActivityPublic:
    """Shape an activity, with the organiser's name and (for managers) the transitions open to it."""
    out = ActivityPublic.model_validate(act)
    out.organiser_name = (await service.organiser_names(session=session, ids={act.organiser_id})).get(act.organiser_id)
    if service.can_manage(act, viewer):
        out.allowed_transitions = allowed_transitions(act.status)
    return out


async def present_registration(session, reg: Registration, viewer: Principal, checked_in: bool | None = None,
                               position: int | None = -1) -> RegistrationPublic:
    """Shape a registration: the token for the registrant and the office, contact details for them and organisers."""
    out = RegistrationPublic.model_validate(reg)
    out.queue_position = await service.queue_position(session, reg) if position == -1 else position
    mine = service.owns(reg, viewer)
    if not (mine or viewer.is_office):
        out.checkin_token = None
    if not mine:
        act = await session.get(Activity, reg.activity_id)
        if not service.can_manage(act, viewer):
            out.contact_email = out.contact_phone = None
    out.checked_in = bool(checked_in) if checked_in is not None else bool(
        await service.checked_in_ids(session=session, registration_ids=[reg.id]))
    return out


# ---------------------------------------------------------------------------------------------- activities


@router.post("/activities", status_code=status.HTTP_201_CREATED, response_model=ActivityPublic)
async def create_activity(body: ActivityCreate, session: SessionDep, runtime: RuntimeDep, actor: Organising,
                          response: Response):
    """Create a draft activity for an organiser the caller may act for."""
    act = await service.create_activity(session=session, stager=runtime.stager, data=body, actor=actor)
    response.headers["Location"] = f"/activities/{act.id}"
    response.headers["ETag"] = f'"{act.version}"'
    return await present_activity(session, act, actor)


@router.get("/activities", response_model=Page[ActivityPublic])
async def list_activities(
    session: SessionDep, viewer: OptionalPrincipal, status_: Annotated[str | None, Query(alias="status")] = None,
    kind: str | None = None, organiser_id: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Cursor = None,
):
    """Activities by start time in cursor pages (drafts only for their organisers)."""
    acts, nxt = await service.list_activities(session=session, viewer=viewer, status=status_, kind=kind,
                                              organiser_id=organiser_id, limit=limit, cursor=cursor)
    return Page[ActivityPublic](items=[await present_activity(session, a, viewer) for a in acts], next_cursor=nxt)


@router.get("/activities/{activity_id}", response_model=ActivityPublic)
async def get_activity(activity_id: str, session: SessionDep, viewer: OptionalPrincipal, response: Response):
    """Read one activity."""
    act = await service.get_activity(session=session, activity_id=activity_id, viewer=viewer)
    response.headers["ETag"] = f'"{act.version}"'
    return await present_activity(session, act, viewer)


@router.post("/activities/{activity_id}/transitions", response_model=ActivityPublic)
async def transition_activity(
    activity_id: str, body: TransitionRequest, session: SessionDep, runtime: RuntimeDep, actor: Organising,
    response: Response, if_match: Annotated[str | None, Header()] = None,
):
    """Move an activity along its lifecycle (409 names the allowed transitions); cancelling tells every registrant.

    Simultaneous transitions take turns on the activity's row lock: each is judged against the status the one before
    left, so a repeat answers 409; with If-Match, every request naming a version that has moved on answers 412.
    """
    act = await service.transition_activity(
        session=session, stager=runtime.stager, activity_id=activity_id, target=body.status, actor=actor,
        reason=body.reason, if_match=if_match_version(if_match))
    response.headers["ETag"] = f'"{act.version}"'
    return await present_activity(session, act, actor)


@router.put("/activities/{activity_id}/capacity", response_model=ActivityPublic)
async def change_activity_capacity(activity_id: str, body: CapacityChange, session: SessionDep, runtime: RuntimeDep,
                                   actor: Organising, clock: ClockDep):
    """Change the activity's capacity; added seats are offered to the waitlist."""
    await service.change_capacity(session=session, stager=runtime.stager, activity_id=activity_id, session_id=None,
                                  capacity=body.capacity, actor=actor, now=clock.now(),
                                  ttl_seconds=offer_ttl(runtime))
    return await present_activity(session, await session.get(Activity, activity_id), actor)


@router.get("/calendar.ics", tags=["calendar"])
async def calendar_feed(
    session: SessionDep, request: Request, clock: ClockDep,
    past_days: Annotated[int, Query(ge=0, le=3660, description="keep activities that ended this many days ago")] = 90,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500, cursor: Cursor = None,
):
    """An iCalendar feed of the published activities, each session its own VEVENT (cancelled ones CANCELLED).

    Bounded for calendar clients, which fetch one URL: activities still running or ended in the last `past_days`
    (90), by start time, `limit` (500) activities a document; when more follow, a `Link: <...>; rel="next"` header
    names the next document (the same query with its cursor)."""
    acts, nxt = await service.list_activities(session=session, viewer=None, limit=limit, cursor=cursor,
                                              ends_after=clock.now() - timedelta(days=past_days))
    sessions = await service.sessions_of(session=session, activity_ids=[a.id for a in acts])
    base = str(request.base_url).rstrip("/")
    body = ical.to_ics(acts, name="上海产教融合活动 / CJRH activities", base_url=base, stamp=clock.now(),
                       sessions=sessions)
    headers = {}
    if nxt:
        query = urlencode({"past_days": past_days, "limit": limit, "cursor": nxt})
        headers["Link"] = f'<{base}/calendar.ics?{query}>; rel="next"'
    return Response(body, media_type="text/calendar; charset=utf-8", headers=headers)


@router.get("/activities/{activity_id}/calendar.ics", tags=["calendar"])
async def activity_calendar(activity_id: str, session: SessionDep, viewer: OptionalPrincipal, request: Request,
                            clock: ClockDep):
    """One activity as an iCalendar file."""
    act = await service.get_activity(session=session, activity_id=activity_id, viewer=viewer)
    sessions = await service.sessions_of(session=session, activity_ids=[act.id])
    body = ical.to_ics([act], name=act.title_zh, base_url=str(request.base_url).rstrip("/"), stamp=clock.now(),
                       sessions=sessions)
    return Response(body, media_type="text/calendar; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{act.id}.ics"'})


# ---------------------------------------------------------------------------------------------- sessions


@router.post("/activities/{activity_id}/sessions", status_code=status.HTTP_201_CREATED, response_model=SessionPublic)
async def add_session(activity_id: str, body: SessionCreate, session: SessionDep, actor: Organising):
    """Add a session with its own capacity."""
    return await service.add_session(session=session, activity_id=activity_id, data=body, actor=actor)


@router.get("/activities/{activity_id}/sessions", response_model=Page[SessionPublic])
async def list_sessions(activity_id: str, session: SessionDep, viewer: OptionalPrincipal):
    """An activity's sessions with seat counts."""
    await service.get_activity(session=session, activity_id=activity_id, viewer=viewer)
    rows = await service.list_sessions(session=session, activity_id=activity_id)
    items = []
    for s, confirmed, waitlisted in rows:
        out = SessionPublic.model_validate(s)
        out.confirmed, out.waitlisted = confirmed, waitlisted
        items.append(out)
    return Page[SessionPublic](items=items)


@router.put("/activities/{activity_id}/sessions/{session_id}/capacity", response_model=SessionPublic)
async def change_session_capacity(activity_id: str, session_id: str, body: CapacityChange, session: SessionDep,
                                  runtime: RuntimeDep, actor: Organising, clock: ClockDep):
    """Change a session's capacity; added seats are offered to its waitlist."""
    await service.change_capacity(session=session, stager=runtime.stager, activity_id=activity_id,
                                  session_id=session_id, capacity=body.capacity, actor=actor, now=clock.now(),
                                  ttl_seconds=offer_ttl(runtime))
    return await session.get(ActivitySession, session_id)


# ---------------------------------------------------------------------------------------------- registrations


@router.post("/activities/{activity_id}/registrations", response_model=RegistrationPublic,
             status_code=status.HTTP_201_CREATED, tags=["registrations"])
async def register(activity_id: str, body: RegistrationCreate, session: SessionDep, runtime: RuntimeDep,
                   actor: CurrentPrincipal, response: Response, clock: ClockDep):
    """Register yourself or your institution: a seat or a waitlist place; repeating it returns the same one (200)."""
    reg, created, position = await service.register(session=session, stager=runtime.stager,
                                                    activity_id=activity_id, data=body, actor=actor, now=clock.now())
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/registrations/{reg.id}"
    return await present_registration(session, reg, actor, checked_in=False if created else None, position=position)


@router.get("/activities/{activity_id}/registrations", response_model=Page[RegistrationPublic],
            tags=["registrations"])
async def list_registrations(activity_id: str, session: SessionDep, actor: Organising,
                             status_: Annotated[str | None, Query(alias="status")] = None):
    """Every registration of an activity, in queue order (organisers and the office)."""
    regs = await service.list_registrations(session=session, activity_id=activity_id, actor=actor, status=status_)
    seen = await service.checked_in_ids(session=session, registration_ids=[r.id for r in regs])
    return Page[RegistrationPublic](items=[await present_registration(session, r, actor, r.id in seen) for r in regs])


@router.get("/activities/{activity_id}/participants", response_model=Page[ParticipantPublic],
            tags=["registrations"])
async def public_participants(activity_id: str, session: SessionDep):
    """The public participant list: confirmed registrants who consented, with their institution."""
    rows = await service.public_participants(session=session, activity_id=activity_id)
    return Page[ParticipantPublic](items=[ParticipantPublic(display_name=r.display_name,
                                                            participant_kind=r.participant_kind,
                                                            institution_name=name) for r, name in rows])


@router.get("/me/registrations", response_model=Page[RegistrationPublic], tags=["registrations"])
async def my_registrations(session: SessionDep, actor: CurrentPrincipal):
    """The caller's registrations, with queue positions and check-in tokens."""
    regs = await service.my_registrations(session=session, actor=actor)
    return Page[RegistrationPublic](items=[await present_registration(session, r, actor) for r in regs])


@router.get("/registrations/{registration_id}", response_model=RegistrationPublic, tags=["registrations"])
async def get_registration(registration_id: str, session: SessionDep, actor: CurrentPrincipal):
    """One registration with its queue position (registrant and organisers)."""
    reg = await service.get_registration(session=session, registration_id=registration_id, actor=actor)
    return await present_registration(session, reg, actor)


@router.post("/registrations/{registration_id}/withdraw", response_model=RegistrationPublic, tags=["registrations"])
async def withdraw(registration_id: str, session: SessionDep, runtime: RuntimeDep, actor: CurrentPrincipal,
                   clock: ClockDep):
    """Withdraw (or decline an offer); the seat is offered to the next on the waitlist.

    A repeat (the registration is already withdrawn, also when sent several times at once) answers 200 with the
    withdrawn registration and publishes nothing; withdrawing an expired or cancelled registration answers 409.
    """
    reg = await service.withdraw(session=session, stager=runtime.stager, registration_id=registration_id,
                                 actor=actor, now=clock.now(), ttl_seconds=offer_ttl(runtime))
    return await present_registration(session, reg, actor)


@router.post("/registrations/{registration_id}/accept", response_model=RegistrationPublic, tags=["registrations"])
async def accept_offer(registration_id: str, session: SessionDep, runtime: RuntimeDep, actor: CurrentPrincipal,
                       clock: ClockDep):
    """Accept a waitlist offer before it lapses.

    A repeat (the registration is already confirmed, also when sent several times at once) answers 200 with the
    confirmed registration and publishes nothing; a lapsed offer answers 409.
    """
    reg = await service.accept_offer(session=session, stager=runtime.stager, registration_id=registration_id,
                                     actor=actor, now=clock.now(), ttl_seconds=offer_ttl(runtime))
    return await present_registration(session, reg, actor)


@router.put("/registrations/{registration_id}/consent", response_model=RegistrationPublic, tags=["registrations"])
async def set_consent(registration_id: str, body: ConsentChange, session: SessionDep, actor: CurrentPrincipal):
    """Give or withdraw consent to appear on the public participant list."""
    reg = await service.set_consent(session=session, registration_id=registration_id, actor=actor,
                                    consent=body.public_consent)
    return await present_registration(session, reg, actor)


# ---------------------------------------------------------------------------------------------- check-in


@router.post("/activities/{activity_id}/checkin-lists", status_code=status.HTTP_201_CREATED,
             response_model=CheckinListPublic, tags=["check-in"])
async def add_checkin_list(activity_id: str, body: CheckinListCreate, session: SessionDep, actor: Organising):
    """Add a check-in list (entrance, a session's room)."""
    return await service.add_checkin_list(session=session, activity_id=activity_id, data=body, actor=actor)


@router.get("/activities/{activity_id}/checkin-lists", response_model=Page[CheckinListPublic], tags=["check-in"])
async def list_checkin_lists(activity_id: str, session: SessionDep, actor: Organising):
    """An activity's check-in lists."""
    return Page[CheckinListPublic](items=await service.list_checkin_lists(
        session=session, activity_id=activity_id, actor=actor))


@router.post("/checkin-lists/{list_id}/checkins", response_model=CheckinResult, tags=["check-in"])
async def check_in(list_id: str, body: CheckinRequest, session: SessionDep, runtime: RuntimeDep, actor: Organising,
                   clock: ClockDep):
    """Scan a registrant's token on a list.

    A repeat scan on the same list (also several at once) answers 200 with `already: true` and the first scan's
    time, and publishes nothing.
    """
    reg, ck, already = await service.check_in(session=session, stager=runtime.stager, list_id=list_id,
                                              token=body.token, actor=actor, now=clock.now())
    return CheckinResult(registration_id=reg.id, display_name=reg.display_name, list_id=list_id, already=already,
                         checked_in_at=ck.checked_in_at)


@router.get("/activities/{activity_id}/attendance", response_model=Attendance, tags=["check-in"])
async def attendance(activity_id: str, session: SessionDep, actor: Organising):
    """Confirmed, waitlisted and checked-in figures, overall and per list."""
    return await service.attendance(session=session, activity_id=activity_id, actor=actor)
