"""Configuration of the feature stage: window lengths and the caps on list columns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any, Final, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from detector.errors import ConfigError

# The one default window length: features, profiles and models without a window of their own use it.
DEFAULT_WINDOW: Final = "1h"

_UNITS: dict[str, timedelta] = {
    "us": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_PART = re.compile(r"(\d+)(us|ms|s|m|h|d|w)")


def parse_duration(text: str) -> timedelta:
    """Parse a fixed-length polars duration string (``"1h"``, ``"5m"``, ``"1h30m"``, ``"1d"``).

    Calendar units (``mo``, ``q``, ``y``) are refused: their length varies, so a burst could not be
    checked to divide a window and hour/weekday arithmetic would drift.

    Raises
    ------
    ConfigError
        When *text* is not a positive fixed-length duration.
    """
    if not isinstance(text, str) or not text or _PART.sub("", text) != "":
        raise ConfigError(f"invalid duration {text!r}; use a fixed length such as '1h', '5m', '1h30m' or '1d'")
    total = sum((int(n) * _UNITS[unit] for n, unit in _PART.findall(text)), timedelta())
    if total <= timedelta():
        raise ConfigError(f"duration {text!r} must be positive")
    return total


@dataclass(frozen=True)
class FeatureConfig:
    """How events are cut into windows and how much context each window row carries.

    Parameters
    ----------
    window
        Length of a window per account and per device, a polars duration (default ``"1h"``).
        Windows are aligned to the Unix epoch (so ``"1h"`` windows start on the hour, ``"1d"``
        windows at 00:00 UTC) and are half-open: an event exactly at 03:00:00 belongs to the window
        starting at 03:00, not to the one ending there.
    burst
        Length of the burst sub-windows inside a window (default ``"5m"``); must divide *window*.
        Sub-windows are fixed and epoch-aligned like windows (not sliding), so a burst straddling a
        sub-window boundary is split in two; the cost is at most a factor of two on the burst size,
        and in exchange the computation is a plain group-by that streams.
    evidence_cap
        Most ``raw_file:raw_line`` entries kept per window (the earliest ones); ``event_count``
        always holds the full count.
    context_cap
        Most entries kept in each context list column (new source IPs, new actions, ...).
    min_baseline_events
        Baseline events an entity needs (outside the window being scored) before features relative
        to its own history are computed; below it the row has ``has_baseline = False`` and those
        features hold their neutral value 0.
    timezone
        The utility's own time zone (an IANA name), in which hour-of-day and weekday habits are
        read (default ``"UTC"``). In UTC, a daylight-saving change moves every schedule by an hour,
        and a night shift's hours straddle two UTC days. Windows stay epoch-aligned in UTC.
    """

    window: str = DEFAULT_WINDOW
    burst: str = "5m"
    evidence_cap: int = 200
    context_cap: int = 20
    min_baseline_events: int = 1
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        window, burst = parse_duration(self.window), parse_duration(self.burst)
        if burst > window or window % burst:
            raise ConfigError(f"burst {self.burst!r} must divide window {self.window!r} "
                              "(e.g. window '1h' with burst '5m')")
        for name in ("evidence_cap", "context_cap"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if (not isinstance(self.min_baseline_events, int) or isinstance(self.min_baseline_events, bool)
                or self.min_baseline_events < 1):
            raise ConfigError(f"min_baseline_events must be an integer >= 1, not {self.min_baseline_events!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError(f"unknown time zone {self.timezone!r}; use an IANA name such as UTC or "
                              "America/Chicago") from None

    @property
    def window_length(self) -> timedelta:
        """The window as a :class:`~datetime.timedelta`."""
        return parse_duration(self.window)

    @property
    def burst_length(self) -> timedelta:
        """The burst sub-window as a :class:`~datetime.timedelta`."""
        return parse_duration(self.burst)

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> Self:
        """Build a config from a TOML table such as ``[features]``; missing keys keep their defaults.

        Raises
        ------
        ConfigError
            On an unknown key or an invalid value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown feature setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(table))
