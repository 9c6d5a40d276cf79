"""The time notify uses for inbox rows, quiet hours, retries and digests (injectable for tests)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from common.db import utcnow


class Clock:
    """The real clock."""

    def now(self) -> datetime:
        """The current UTC time."""
        return utcnow()


class FakeClock(Clock):
    """A clock set to a chosen instant; it stands still (or, ticking, runs on from there) until told to move."""

    def __init__(self, at: datetime, *, ticking: bool = False) -> None:
        self.at = at
        self.ticking = ticking
        self._started = time.monotonic()

    def now(self) -> datetime:
        """The time it was set to (plus the real time since, when ticking)."""
        if self.ticking:
            return self.at + timedelta(seconds=time.monotonic() - self._started)
        return self.at

    def advance(self, **delta: float) -> None:
        """Move forward, e.g. advance(hours=9)."""
        self.at += timedelta(**delta)
