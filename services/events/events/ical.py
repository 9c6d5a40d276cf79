"""iCalendar (RFC 5545) export of activities, built with the icalendar library."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from events.domain import ActivityStatus
from events.models import Activity, ActivitySession

PRODID = "-//Shanghai CJRH platform//events//ZH"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _event(act: Activity, *, base_url: str, stamp: datetime) -> Event:
    ev = Event()
    ev.add("uid", f"{act.id}@events.platform.cjrh.sh.cn")
    ev.add("dtstamp", stamp)
    ev.add("dtstart", act.starts_at.astimezone(SHANGHAI))
    ev.add("dtend", act.ends_at.astimezone(SHANGHAI))
    ev.add("summary", act.title_zh)
    if act.description_zh or act.title_en:
        ev.add("description", "\n\n".join(x for x in (act.description_zh, act.title_en, act.description_en) if x))
    if act.venue:
        ev.add("location", act.venue)
    ev.add("url", act.online_url or f"{base_url}/activities/{act.id}")
    ev.add("categories", [act.kind])
    ev.add("sequence", act.version)
    ev.add("status", "CANCELLED" if act.status == ActivityStatus.CANCELLED else "CONFIRMED")
    ev.add("last-modified", act.updated_at)
    return ev


def _session_event(act: Activity, s: ActivitySession, *, base_url: str, stamp: datetime) -> Event:
    """A session as its own VEVENT, related to its activity's, with the activity's status."""
    ev = Event()
    ev.add("uid", f"{s.id}@events.platform.cjrh.sh.cn")
    ev.add("dtstamp", stamp)
    ev.add("dtstart", s.starts_at.astimezone(SHANGHAI))
    ev.add("dtend", s.ends_at.astimezone(SHANGHAI))
    ev.add("summary", f"{act.title_zh} · {s.title_zh}")
    description = [x for x in (s.title_en, act.title_en) if x]
    if description:
        ev.add("description", "\n".join(description))
    if s.venue or act.venue:
        ev.add("location", s.venue or act.venue)
    ev.add("url", act.online_url or f"{base_url}/activities/{act.id}")
    ev.add("categories", [act.kind])
    ev.add("related-to", f"{act.id}@events.platform.cjrh.sh.cn")
    ev.add("sequence", act.version)
    ev.add("status", "CANCELLED" if act.status == ActivityStatus.CANCELLED else "CONFIRMED")
    ev.add("last-modified", act.updated_at)
    return ev


def to_ics(activities: Iterable[Activity], *, name: str, base_url: str, stamp: datetime,
           sessions: Mapping[str, list[ActivitySession]] | None = None) -> bytes:
    """A VCALENDAR holding one VEVENT per activity and one per session of it, times in Asia/Shanghai with the zone's
    VTIMEZONE."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", "Asia/Shanghai")
    for act in activities:
        cal.add_component(_event(act, base_url=base_url, stamp=stamp))
        for s in (sessions or {}).get(act.id, []):
            cal.add_component(_session_event(act, s, base_url=base_url, stamp=stamp))
    cal.add_missing_timezones()
    return cal.to_ical()
