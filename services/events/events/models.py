"""Tables of the events service (its own metadata)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import JSON, Column, Field, SQLModel

from common.db import UTCDateTime, add_platform_tables, new_registry, utcnow

mapper_registry = new_registry()
metadata = mapper_registry.metadata


def _uuid() -> str:
    return str(uuid.uuid4())


class Table(SQLModel, registry=mapper_registry):
    """Base of the events service's tables."""


class Organiser(Table, table=True):
    """The events service's projection of registry institutions (organisers, conflicts of interest, names)."""

    __tablename__ = "organisers"

    id: str = Field(primary_key=True, max_length=36)
    name_zh: str = Field(max_length=200)
    kind: str = Field(max_length=40)
    status: str = Field(max_length=20)
    successor_id: str | None = Field(default=None, max_length=36)
    version: int


class Alliance(Table, table=True):
    """The projection of registry alliances: which institutions are co-members (conflicts of interest)."""

    __tablename__ = "alliances"

    id: str = Field(primary_key=True, max_length=36)
    name_zh: str = Field(max_length=300)
    status: str = Field(max_length=20)
    member_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    version: int


class Mentor(Table, table=True):
    """The projection of the registry's listed mentors: the institution each belongs to (conflicts of interest)."""

    __tablename__ = "mentors"

    id: str = Field(primary_key=True, max_length=36)
    institution_id: str = Field(max_length=36)
    status: str = Field(max_length=20)
    version: int


class Activity(Table, table=True):
    """A conference, exhibition, matchmaking session, job fair, training camp or competition."""

    __tablename__ = "activities"

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    kind: str = Field(max_length=40)
    title_zh: str = Field(max_length=300)
    title_en: str | None = Field(default=None, max_length=300)
    description_zh: str | None = None
    description_en: str | None = None
    organiser_id: str = Field(max_length=36, index=True)
    co_organiser_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    venue: str | None = Field(default=None, max_length=300)
    online_url: str | None = Field(default=None, max_length=500)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    capacity: int | None = None
    audience: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    industries: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    offer_ttl_seconds: int | None = None
    status: str = Field(default="draft", max_length=30, index=True)
    cancel_reason: str | None = Field(default=None, max_length=500)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ActivitySession(Table, table=True):
    """A session inside an activity (a forum's special session, a camp's module), with its own capacity."""

    __tablename__ = "activity_sessions"

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    activity_id: str = Field(foreign_key="activities.id", max_length=36, index=True)
    title_zh: str = Field(max_length=300)
    title_en: str | None = Field(default=None, max_length=300)
    venue: str | None = Field(default=None, max_length=300)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    capacity: int | None = None


class Pool(Table, table=True):
    """A capacity pool (the whole activity, or one session): the row locked while seats are counted."""

    __tablename__ = "pools"

    id: str = Field(primary_key=True, max_length=36)  # the activity id or the session id
    activity_id: str = Field(max_length=36, index=True)
    session_id: str | None = Field(default=None, max_length=36)
    capacity: int | None = None
    next_seq: int = 1
    open: bool = False  # taking registrations; flipped with the activity's status under this row's lock


class Registration(Table, table=True):
    """A person's, institution's or team's place in a pool: confirmed, waitlisted, offered, or ended."""

    __tablename__ = "registrations"
    __table_args__ = (
        UniqueConstraint("pool_id", "participant_key", name="uq_registrations_pool_participant"),
        # Seat decisions count a pool's registrations by status under the pool's lock: an index-only range.
        Index("ix_registrations_pool_status", "pool_id", "status"),
    )

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    activity_id: str = Field(max_length=36, index=True)
    pool_id: str = Field(max_length=36)  # indexed as the first column of ix_registrations_pool_status
    session_id: str | None = Field(default=None, max_length=36)
    participant_key: str = Field(max_length=80)
    participant_id: str = Field(max_length=200, index=True)  # the registrant's user sub
    participant_kind: str = Field(max_length=20)
    display_name: str | None = Field(default=None, max_length=200)
    institution_id: str | None = Field(default=None, max_length=36)
    team_id: str | None = Field(default=None, max_length=36)
    contact_phone: str | None = Field(default=None, max_length=40)
    contact_email: str | None = Field(default=None, max_length=200)
    public_consent: bool = False
    status: str = Field(max_length=20, index=True)
    queue_seq: int
    offer_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    checkin_token: str = Field(max_length=64, unique=True)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CheckinList(Table, table=True):
    """A check-in list (main entrance, a session's room, a meal): scans are counted per list."""

    __tablename__ = "checkin_lists"

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    activity_id: str = Field(max_length=36, index=True)
    name: str = Field(max_length=200)
    session_id: str | None = Field(default=None, max_length=36)


class Checkin(Table, table=True):
    """One registration checked in on one list (scanning twice does not count twice)."""

    __tablename__ = "checkins"
    __table_args__ = (UniqueConstraint("list_id", "registration_id", name="uq_checkins_list_registration"),)

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    list_id: str = Field(max_length=36, index=True)
    registration_id: str = Field(max_length=36, index=True)
    checked_in_by: str = Field(max_length=200)
    checked_in_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Competition(Table, table=True):
    """The competition side of a competition activity: freeze and results state, board snapshots."""

    __tablename__ = "competitions"

    id: str = Field(primary_key=True, max_length=36)  # the activity id
    status: str = Field(default="open", max_length=30)  # open -> frozen -> results_published
    frozen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    frozen_board: list[dict] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    results: list[dict] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    results_published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 1


class Track(Table, table=True):
    """A track or division (secondary vocational, higher vocational, undergraduate) with team sizes and rubric."""

    __tablename__ = "tracks"

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    activity_id: str = Field(max_length=36, index=True)
    name_zh: str = Field(max_length=200)
    team_min: int = 1
    team_max: int = 5
    rubric: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Team(Table, table=True):
    """A competition team: a captain, members up to the track's cap, a join code."""

    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("activity_id", "name", name="uq_teams_activity_name"),)

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    activity_id: str = Field(max_length=36, index=True)
    track_id: str = Field(max_length=36, index=True)
    name: str = Field(max_length=200)
    captain_id: str = Field(max_length=200)
    institution_id: str = Field(max_length=36)
    join_code: str = Field(max_length=16, unique=True)
    registration_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TeamMember(Table, table=True):
    """A person in a team; one team per person per competition."""

    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("activity_id", "member_id", name="uq_team_members_activity_member"),)

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    activity_id: str = Field(max_length=36, index=True)
    team_id: str = Field(max_length=36, index=True)
    member_id: str = Field(max_length=200)
    display_name: str | None = Field(default=None, max_length=200)
    joined_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Submission(Table, table=True):
    """A team's entry: metadata and links (resubmitting replaces it and bumps the version)."""

    __tablename__ = "submissions"

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    team_id: str = Field(max_length=36, unique=True)
    activity_id: str = Field(max_length=36, index=True)
    track_id: str = Field(max_length=36, index=True)
    title: str = Field(max_length=300)
    summary: str | None = None
    links: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    submitted_by: str = Field(max_length=200)
    submitted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    version: int = 1


class JudgeAssignment(Table, table=True):
    """A judge assigned to a track, with the institution that decides conflicts of interest."""

    __tablename__ = "judge_assignments"
    __table_args__ = (UniqueConstraint("track_id", "judge_id", name="uq_judge_assignments_track_judge"),)

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    activity_id: str = Field(max_length=36, index=True)
    track_id: str = Field(max_length=36, index=True)
    judge_id: str = Field(max_length=200, index=True)
    institution_id: str | None = Field(default=None, max_length=36)
    mentor_id: str | None = Field(default=None, max_length=36)


class Score(Table, table=True):
    """One judge's rubric points for one team (re-scoring replaces them)."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("team_id", "judge_id", name="uq_scores_team_judge"),)

    id: str = Field(default_factory=_uuid, primary_key=True, max_length=36)
    activity_id: str = Field(max_length=36, index=True)
    track_id: str = Field(max_length=36)
    team_id: str = Field(max_length=36, index=True)
    judge_id: str = Field(max_length=200)
    points: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    total: float
    scored_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


outbox, processed_events = add_platform_tables(metadata)
