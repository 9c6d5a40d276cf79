"""Request and response models of the registry API (one schema family per entity)."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from registry.domain import SCHOOL_KINDS, District, InstitutionKind, school_code_problem, uscc_problem

T = TypeVar("T")


class InstitutionBase(BaseModel):
    """Fields an institution's editor supplies."""

    kind: InstitutionKind
    name_zh: str = Field(min_length=2, max_length=200, description="Chinese name, e.g. 上海电机学院")
    name_en: str | None = Field(default=None, max_length=300)
    uscc: str | None = Field(default=None, description="Unified social credit code (GB 32100-2015)")
    school_code: str | None = Field(default=None, description="10-digit school identification code")
    district: District
    address: str | None = Field(default=None, max_length=300)
    industries: list[str] = Field(default_factory=list, max_length=20)
    keywords: list[str] = Field(default_factory=list, max_length=50)
    website: str | None = Field(default=None, max_length=300)
    contact_name: str | None = Field(default=None, max_length=100)
    contact_phone: str | None = Field(default=None, max_length=40)
    contact_email: str | None = Field(default=None, max_length=200)


class InstitutionCreate(InstitutionBase):
    """A new institution; identifiers are checked (USCC check character, school-code format)."""

    @field_validator("uscc")
    @classmethod
    def _uscc(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().upper()
        if (why := uscc_problem(v)) is not None:
            raise ValueError(why)
        return v

    @field_validator("school_code")
    @classmethod
    def _school(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if (why := school_code_problem(v.strip())) is not None:
            raise ValueError(why)
        return v.strip()

    @model_validator(mode="after")
    def _identifier_for_kind(self):
        if self.kind in SCHOOL_KINDS and not (self.school_code or self.uscc):
            raise ValueError("a school needs a school_code (or a USCC)")
        if self.kind not in SCHOOL_KINDS and self.school_code:
            raise ValueError(f"a {self.kind.value} has no school_code")
        if self.kind == InstitutionKind.ENTERPRISE and not self.uscc:
            raise ValueError("an enterprise needs its USCC")
        return self


class InstitutionPublic(BaseModel):
    """An institution as shown to callers; contact details only to those allowed to see them."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    name_zh: str
    name_en: str | None
    uscc: str | None
    school_code: str | None
    district: str
    address: str | None
    industries: list[str]
    keywords: list[str]
    website: str | None
    contact_name: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    status: str
    successor_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class Page(BaseModel, Generic[T]):
    """A page of results with an opaque cursor for the next one."""

    items: list[T]
    next_cursor: str | None = None
