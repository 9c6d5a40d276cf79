"""An injectable clock: the service reads time only through it, so tests can move time forward without sleeping."""

from __future__ import annotations

from datetime import datetime, timedelta

from common.db import utcnow


class Clock:
    """Wall-clock time in UTC plus an adjustable offset (tests call `advance`)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.stopped_at: datetime | None = None

    def now(self) -> datetime:
        """The current (possibly shifted or stopped) time, aware UTC."""
        return self.stopped_at if self.stopped_at is not None else utcnow() + self.offset

    def stop(self) -> None:
        """Stand still at the current time until `resume` (tests only: simultaneous events)."""
        self.stopped_at = self.now()

    def resume(self) -> None:
        """Let time run again after `stop`."""
        self.stopped_at = None

    def advance(self, seconds: float) -> None:
        """Move time forward (tests only)."""
        self.offset += timedelta(seconds=seconds)
