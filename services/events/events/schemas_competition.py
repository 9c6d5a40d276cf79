"""Request and response models of the competition API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from events.schemas import LocalTime


class CriterionIn(BaseModel):
    """One rubric line."""

    key: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")
    label_zh: str | None = Field(default=None, max_length=100)
    weight: float = Field(gt=0, le=100)
    max_points: float = Field(gt=0, le=1000)


class TrackCreate(BaseModel):
    """A track or division with team sizes and a weighted rubric."""

    name_zh: str = Field(min_length=2, max_length=200)
    team_min: int = Field(default=1, ge=1, le=50)
    team_max: int = Field(default=5, ge=1, le=50)
    rubric: list[CriterionIn] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _sizes(self):
        if self.team_min > self.team_max:
            raise ValueError("team_min cannot exceed team_max")
        return self


class TrackPublic(BaseModel):
    """A track."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    activity_id: str
    name_zh: str
    team_min: int
    team_max: int
    rubric: list[dict]


class TeamCreate(BaseModel):
    """Form a team in a track; the caller becomes its captain."""

    track_id: str
    name: str = Field(min_length=2, max_length=200)
    institution_id: str = Field(max_length=36)
    display_name: str | None = Field(default=None, max_length=200)
    public_consent: bool = True


class TeamJoin(BaseModel):
    """Join a team with the code its captain shared."""

    join_code: str = Field(min_length=4, max_length=16)
    display_name: str | None = Field(default=None, max_length=200)


class MemberPublic(BaseModel):
    """A team member as the team and organisers see them."""

    model_config = ConfigDict(from_attributes=True)

    member_id: str
    display_name: str | None


class TeamPublic(BaseModel):
    """A team; the join code, members and registration only for its members and the organisers."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    activity_id: str
    track_id: str
    name: str
    institution_id: str
    captain_id: str | None = None
    join_code: str | None = None
    members: list[MemberPublic] | None = None
    registration_id: str | None = None
    registration_status: str | None = None


class SubmissionCreate(BaseModel):
    """A team's entry: metadata and links."""

    title: str = Field(min_length=2, max_length=300)
    summary: str | None = Field(default=None, max_length=5000)
    links: list[HttpUrl] = Field(default_factory=list, max_length=10)


class SubmissionPublic(BaseModel):
    """A submission."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    team_id: str
    track_id: str
    title: str
    summary: str | None
    links: list[str]
    submitted_at: LocalTime
    version: int


class JudgeAssign(BaseModel):
    """A judge (user sub) for a track, with their institution and their entry in the registry's mentor pool, both for
    conflict-of-interest checks."""

    judge_id: str = Field(min_length=1, max_length=200)
    institution_id: str | None = Field(default=None, max_length=36)
    mentor_id: str | None = Field(default=None, max_length=36, description=(
        "The judge's entry in the registry's mentor pool (a listed mentor): their institution there counts in "
        "conflict-of-interest checks, as it is when the judge scores."))


class JudgePublic(BaseModel):
    """A judge assignment."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    track_id: str
    judge_id: str
    institution_id: str | None
    mentor_id: str | None


class ScoreCreate(BaseModel):
    """Points per rubric criterion key."""

    points: dict[str, float] = Field(min_length=1, max_length=20)


class ScorePublic(BaseModel):
    """A judge's score for a team (total out of 100, weighted)."""

    model_config = ConfigDict(from_attributes=True)

    team_id: str
    judge_id: str
    points: dict[str, float]
    total: float
    scored_at: LocalTime


class AwardTierIn(BaseModel):
    """An award for the next `count` ranks of each track."""

    name: str = Field(min_length=1, max_length=50)
    count: int = Field(ge=1, le=1000)


class ResultsPublish(BaseModel):
    """Award tiers, best first (e.g. 一等奖 x1, 二等奖 x2, 三等奖 x3)."""

    awards: list[AwardTierIn] = Field(default_factory=list, max_length=10)


class CompetitionState(BaseModel):
    """A competition's freeze/results state."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    status: str
    frozen_at: LocalTime | None
    results_published_at: LocalTime | None
    version: int
