"""Hours an account was logged on without logging anything count in its hour habits."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import polars as pl
import pytest

from detector.features import FeatureConfig, account_windows, build_profiles
from detector.features.common import RARITY_PRIOR_EVENTS
from detector.features.partial import PartialProfiles, merge
from detector.features.profiles import PROFILE_SCHEMAS, habit_histogram
from detector.spill import in_memory_slices
from tests.features.events import make_events

CONFIG = FeatureConfig()


def _logon(time: str, account: str, host: str = "pc-1", kind: str = "2") -> dict:
    return {"time": time, "account": account, "host": host, "action": "login_success", "source_system": "windows",
            "details": [{"key": "logon_type", "value": kind}]}


def _logoff(time: str, account: str, host: str = "pc-1", kind: str | None = "2") -> dict:
    return {"time": time, "account": account, "host": host, "action": "logout", "source_system": "windows",
            "details": [{"key": "logon_type", "value": kind}] if kind else []}


def _hours(rows: list[dict], config: FeatureConfig = CONFIG) -> dict[int, int]:
    table = build_profiles(make_events(rows), config).account_session_hours
    return dict(table.group_by("hour").agg(pl.col("hours").sum()).rows())


def test_a_night_shift_is_logged_on_between_its_logon_and_its_logoff() -> None:
    rows = [_logon("2026-04-06 21:10", "nina"), _logoff("2026-04-07 06:05", "nina")]
    # Hours 21 and 6 hold events; 22:00-05:00 are logged on and silent.
    assert _hours(rows) == {h: 1 for h in (22, 23, 0, 1, 2, 3, 4, 5)}
    # A thumb drive at 02:30 makes that hour one with an event, no longer an idle one.
    drive = {"time": "2026-04-07 02:30", "account": "nina", "host": "pc-1", "action": "removable_media"}
    assert _hours([*rows, drive]) == {h: 1 for h in (22, 23, 0, 1, 3, 4, 5)}


def test_without_a_logoff_a_session_lasts_to_its_last_event_there() -> None:
    drive = {"time": "2026-04-06 12:30", "account": "nina", "host": "pc-1", "action": "removable_media"}
    elsewhere = {"time": "2026-04-06 15:30", "account": "nina", "host": "hes-1", "action": "ping"}
    assert _hours([_logon("2026-04-06 09:10", "nina"), drive, elsewhere]) == {10: 1, 11: 1}
    # The next logon on the host ends it: the session before covers up to its last event before that one.
    assert _hours([_logon("2026-04-06 09:10", "nina"), _logon("2026-04-06 13:10", "nina"), drive]) == {10: 1, 11: 1}


def test_a_session_covers_at_most_session_hours() -> None:
    # A logoff 14 hours later is past the cap: the session ends at its last event within 12 hours.
    drive = {"time": "2026-04-06 13:30", "account": "nina", "host": "pc-1", "action": "removable_media"}
    rows = [_logon("2026-04-06 08:10", "nina"), drive, _logoff("2026-04-06 22:05", "nina")]
    assert _hours(rows) == {h: 1 for h in range(9, 13)}


def test_only_interactive_sessions_of_people_count() -> None:
    network = [_logon("2026-04-06 21:10", "nina", kind="3"), _logoff("2026-04-07 06:05", "nina", kind="3")]
    machine = [_logon("2026-04-06 21:10", "pc-1$"), _logoff("2026-04-07 06:05", "pc-1$")]
    # An HES operator's login and logout (no logon type) are not a Windows interactive session.
    hes = [{"time": "2026-04-06 21:10", "account": "op1", "action": "login_success"},
           {"time": "2026-04-07 06:05", "account": "op1", "action": "logout"}]
    for rows in (network, machine, hes):
        profiles = build_profiles(make_events(rows), CONFIG)
        assert profiles.account_session_hours.is_empty()
        hours = profiles.account_hours.select("account", "weekday", "hour", activity=pl.col("events").cast(pl.Float64))
        assert habit_histogram(profiles).collect().sort("account", "weekday", "hour").equals(hours)
    # A logoff with no logon type (4647) ends an interactive session.
    assert _hours([_logon("2026-04-06 21:10", "nina"), _logoff("2026-04-06 23:20", "nina", kind=None)]) == {22: 1}


def test_the_hours_are_those_of_the_utility_zone() -> None:
    chicago = FeatureConfig(timezone="America/Chicago")  # UTC-5 in April
    rows = [_logon("2026-04-07 02:10", "nina"), _logoff("2026-04-07 05:05", "nina")]
    assert _hours(rows, chicago) == {22: 1, 23: 1}


def _night_shift() -> list[dict]:
    rows = []
    for day in range(6, 20):  # two weeks: on at 21:00, a privileged event, off at 06:00
        rows += [_logon(f"2026-04-{day:02d} 21:05", "nina"),
                 {"time": f"2026-04-{day:02d} 21:06", "account": "nina", "host": "pc-1", "action": "privileged_logon"},
                 _logoff(f"2026-04-{day + 1:02d} 06:02", "nina")]
    for day in range(6, 20):  # and a day worker, so that everyone's habits are not hers alone
        rows += [_logon(f"2026-04-{day:02d} 08:05", "dan", host="pc-2"), _logoff(f"2026-04-{day:02d} 16:02", "dan",
                                                                                 host="pc-2")]
    return rows


def test_a_night_shift_worker_is_not_rare_at_night() -> None:
    profiles = build_profiles(make_events(_night_shift()), CONFIG)
    scanned = make_events([{"time": "2026-04-22 02:20", "account": "nina", "host": "pc-1",
                            "action": "removable_media"}])
    night = account_windows(scanned.lazy(), profiles, CONFIG).collect().row(0, named=True)
    # Counted by events alone, 02:00 is an hour she is never active.
    events_only = replace(profiles, account_session_hours=pl.DataFrame(schema=PROFILE_SCHEMAS["account_session_hours"]))
    alone = account_windows(scanned.lazy(), events_only, CONFIG).collect().row(0, named=True)
    assert alone["hour_rarity"] > 0.9
    # Logged on every night, a logged-on hour weighs as her average hour with events (3 events in 2
    # hours): 14 nights x 1.5 at 02:00, against her 28 events at 21:00 blended with everyone's
    # (RARITY_PRIOR_EVENTS x 28 of the 70 events).
    assert night["hour_rarity"] == pytest.approx(1 - 14 * 1.5 / (28 + RARITY_PRIOR_EVENTS * 28 / 70))
    # Her logons at 21:00 still make it her peak hour: 2 events a night against 1 logged-on hour's worth.
    peak = account_windows(make_events([_logon("2026-04-22 21:05", "nina")]).lazy(), profiles, CONFIG).collect()
    assert peak.row(0, named=True)["hour_rarity"] == 0.0
    # Her sessions are hers: the day worker's 02:00 stays as rare as ever (everyone's habits, which a
    # short history is blended with, are events only).
    dan = make_events([{"time": "2026-04-22 02:20", "account": "dan", "host": "pc-2", "action": "removable_media"}])
    assert account_windows(dan.lazy(), profiles, CONFIG).collect().row(0, named=True)["hour_rarity"] == 1.0


def test_sessions_crossing_slices_merge_into_the_profiles_of_everything() -> None:
    # And a service account that reads a meter every hour and never logs on interactively.
    reads = [{"time": f"2026-04-{day:02d} {hour:02d}:30", "account": "svc_read", "host": "hes-1", "action": "ping",
              "target_type": "meter", "target_id": "M1"} for day in range(6, 21) for hour in range(24)]
    events = make_events(_night_shift() + reads).sort("time")
    # Day slices cut every night shift at midnight; one is cut again inside an hour (a training fold's cut).
    pieces = []
    for _, _, day in in_memory_slices(events, timedelta(days=1)):
        frame = day.collect()
        cut = frame.get_column("time").min() + timedelta(hours=21, minutes=5, seconds=30)
        pieces += [frame.filter(pl.col("time") < cut), frame.filter(pl.col("time") >= cut)]
    merged = None
    for piece in pieces:
        part = PartialProfiles.of(piece, CONFIG)
        merged = part if merged is None else merged.merged(part)
    assert merged is not None
    whole = build_profiles(events, CONFIG)
    assert whole.account_session_hours.get_column("hours").sum() == 14 * 8 + 14 * 7
    assert merged.finish() == whole
    # Several at once, as training merges a few days at a time; a cut hour's two halves in different merges.
    parts = [PartialProfiles.of(piece, CONFIG) for piece in pieces]
    assert merge([merge(parts[:5]), *parts[5:10], merge(parts[10:])]).finish() == whole
    assert whole.account_activity.filter(pl.col("account") == "svc_read").get_column("active_hours").item() == 15 * 24
    # Merged, the hours with events are kept for those who log on, and for the last hour only for the others.
    kept = merged.tables["presence"].filter(pl.col("account") == "svc_read")
    assert kept.get_column("slot").to_list() == [events.get_column("time").max().replace(minute=0)]
    # The profiles of a part: the session open at its end lasts to its last event so far.
    cut = events.get_column("time").min() + timedelta(days=3, hours=2)
    merged = None
    for piece in pieces:
        piece = piece.filter(pl.col("time") < cut)
        part = PartialProfiles.of(piece, CONFIG)
        merged = part if merged is None else merged.merged(part)
    assert merged is not None
    assert merged.finish() == build_profiles(events.filter(pl.col("time") < cut), CONFIG)
