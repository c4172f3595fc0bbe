"""Local working days and their UTC timestamps.

People work by the utility's local clock while every log writes UTC, so a simulated day is a
*local* day: shifts, windows and schedules are seconds after local midnight, converted here to UTC
microseconds. The conversion is exact across daylight-saving changes (a local day may last 23 or 25
hours), which real exports also have to live with.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

US = 1_000_000
HOUR = 3600
DAY = 86_400


@dataclass(frozen=True)
class DayClock:
    """One local calendar day of the simulation."""

    index: int  # 0 for the first simulated day
    date: dt.date  # (qualified: the field's name hides the type inside the class)
    tz: str
    start_us: int  # local midnight, as UTC epoch microseconds
    end_us: int  # next local midnight
    switch_s: int  # local second of day at which the UTC offset changes (DAY when it does not)
    offset0_s: int  # UTC offset (seconds) before switch_s
    offset1_s: int

    @classmethod
    def of(cls, index: int, day: dt.date, tz: str) -> DayClock:
        zone = ZoneInfo(tz)
        midnight = datetime.combine(day, time(), zone)
        following = datetime.combine(day + timedelta(days=1), time(), zone)
        # An aware datetime always has an offset (utcoffset() is typed as optional).
        offsets = [int(datetime.combine(day, time(h), zone).utcoffset().total_seconds())  # type: ignore[union-attr]
                   for h in range(24)]
        switch = next((h * HOUR for h in range(1, 24) if offsets[h] != offsets[0]), DAY)
        return cls(index, day, tz, _epoch_us(midnight), _epoch_us(following), switch, offsets[0], offsets[-1])

    @property
    def weekday(self) -> int:
        """0 = Monday ... 6 = Sunday."""
        return self.date.weekday()

    @property
    def is_weekend(self) -> bool:
        return self.weekday >= 5

    def utc_us(self, local_s: np.ndarray | float) -> np.ndarray:
        """UTC epoch microseconds of local seconds-after-midnight, clipped into this local day."""
        secs = np.clip(np.asarray(local_s, dtype=np.float64), 0.0, DAY - 0.001)
        offset = np.where(secs >= self.switch_s, self.offset1_s, self.offset0_s)
        us = np.int64(self.naive_start_us) + np.round((secs - offset) * US).astype(np.int64)
        return np.clip(us, self.start_us, self.end_us - 1)

    def at(self, hour: float) -> int:
        """UTC epoch microseconds of one local time of day given in hours (e.g. 13.5 for 13:30)."""
        secs = min(max(hour * HOUR, 0.0), DAY - 0.001)
        offset = self.offset1_s if secs >= self.switch_s else self.offset0_s
        us = self.naive_start_us + round((secs - offset) * US)
        return min(max(us, self.start_us), self.end_us - 1)

    @property
    def naive_start_us(self) -> int:
        """This date's midnight read as if it were UTC."""
        return _epoch_us(datetime.combine(self.date, time(), UTC))


def _epoch_us(moment: datetime) -> int:
    return int(moment.timestamp()) * US


def iso_utc(us: int) -> str:
    """An epoch-microsecond time as ISO 8601 UTC with milliseconds, as the logs write it."""
    moment = datetime.fromtimestamp(us // US, UTC).replace(microsecond=us % US)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
