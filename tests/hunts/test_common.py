from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.errors import ConfigError, InputError
from detector.findings import FINDINGS_SCHEMA
from detector.hunts.common import (
    TimeWindow,
    WeeklyWindow,
    as_utc,
    check_zone,
    csv_frame,
    hunt_findings,
    in_weekly_windows,
    match_networks,
    match_patterns,
    merge_findings,
    normalized_account,
    output_paths,
    parse_networks,
    short_host,
    write_table,
)

# ---- weekly windows ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, days, start, end", [
    ("Wed 00:00-04:00", {3}, 0, 240),
    ("wednesday 00:00 - 04:00", {3}, 0, 240),
    ("Mon-Fri 07:00-18:00", {1, 2, 3, 4, 5}, 420, 1080),
    ("Fri-Mon 22:00-02:00", {5, 6, 7, 1}, 1320, 120),
    ("Sat,Sun 00:00-24:00", {6, 7}, 0, 1440),
    ("daily 01:30-02:00", set(range(1, 8)), 90, 120),
])
def test_weekly_window_parses(text: str, days: set[int], start: int, end: int) -> None:
    window = WeeklyWindow.parse(text)
    assert (set(window.days), window.start, window.end) == (days, start, end)


@pytest.mark.parametrize("text, words", [
    ("Wed 00:00-4", "not like"),
    ("Wed", "not like"),
    ("Wdn 00:00-04:00", "not a day of the week"),
    ("Wed 25:00-26:00", "not a time of day"),
    ("Wed 00:61-01:00", "not a time of day"),
    ("Wed 04:00-04:00", "empty"),
    ("Wed 24:00-02:00", "cannot start at 24:00"),
    ("Mon--Fri 07:00-18:00", "cannot read the days"),
])
def test_bad_weekly_windows_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        WeeklyWindow.parse(text)
    assert repr(text) in str(info.value)


def _in(times: list[datetime], windows: list[str], tz: str) -> list[bool]:
    frame = pl.DataFrame({"time": times}, schema={"time": pl.Datetime("us", "UTC")})
    parsed = [WeeklyWindow.parse(w) for w in windows]
    return frame.select(in_weekly_windows("time", parsed, tz)).to_series().to_list()


def test_window_is_local_wall_clock_across_daylight_saving() -> None:
    # Wed 00:00-04:00 in Chicago is 06:00-10:00 UTC in winter (CST) and 05:00-09:00 UTC in summer (CDT).
    times = [datetime(2026, 3, 4, 6, 0, tzinfo=UTC), datetime(2026, 3, 4, 9, 59, tzinfo=UTC),
             datetime(2026, 3, 4, 10, 0, tzinfo=UTC), datetime(2026, 3, 18, 5, 0, tzinfo=UTC),
             datetime(2026, 3, 18, 9, 0, tzinfo=UTC), datetime(2026, 3, 18, 5, 59, tzinfo=UTC) - timedelta(hours=1)]
    assert _in(times, ["Wed 00:00-04:00"], "America/Chicago") == [True, True, False, True, False, False]


def test_window_past_midnight_ends_the_next_day() -> None:
    times = [datetime(2026, 3, 7, 23, 0, tzinfo=UTC), datetime(2026, 3, 8, 1, 59, tzinfo=UTC),
             datetime(2026, 3, 8, 2, 0, tzinfo=UTC), datetime(2026, 3, 7, 1, 0, tzinfo=UTC)]  # Sat 23, Sun 01:59, Sun 02, Sat 01
    assert _in(times, ["Sat 22:00-02:00"], "UTC") == [True, True, False, False]


@settings(max_examples=60, deadline=None)
@given(day=st.integers(1, 7), start=st.integers(0, 1439), length=st.integers(1, 1439),
       moments=st.lists(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)),
                        min_size=1, max_size=20),
       tz=st.sampled_from(["UTC", "America/Chicago", "Europe/Berlin", "Australia/Adelaide"]))
def test_window_membership_matches_a_reference(day: int, start: int, length: int, moments: list[datetime],
                                               tz: str) -> None:
    end = (start + length) % 1440 or 1440
    text = f"{['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][day - 1]} {start // 60:02d}:{start % 60:02d}-" \
           f"{end // 60:02d}:{end % 60:02d}"
    times = [m.replace(tzinfo=UTC) for m in moments]

    def reference(moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(tz))
        minute = local.hour * 60 + local.minute
        weekday = local.isoweekday()
        if end > start:
            return weekday == day and start <= minute < end
        return (weekday == day and minute >= start) or (weekday == day % 7 + 1 and minute < end)

    assert _in(times, [text], tz) == [reference(m) for m in times]


def test_unknown_zone_is_named() -> None:
    assert check_zone("America/Chicago") == "America/Chicago"
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        check_zone("Mars/Olympus")


# ---- periods ------------------------------------------------------------------------------------

def test_period_until_a_date_includes_that_day() -> None:
    window = TimeWindow.of("2026-03-15", "2026-04-30")
    assert window.since == datetime(2026, 3, 15, tzinfo=UTC)
    assert window.until == datetime(2026, 5, 1, tzinfo=UTC)
    assert as_utc("2026-03-15T06:00:00+02:00") == datetime(2026, 3, 15, 4, tzinfo=UTC)
    assert as_utc(datetime(2026, 3, 15, 6)) == datetime(2026, 3, 15, 6, tzinfo=UTC)
    assert as_utc(date(2026, 3, 15), end_of_day=True) == datetime(2026, 3, 16, tzinfo=UTC)


def test_bad_periods_are_errors() -> None:
    with pytest.raises(ConfigError, match="not an ISO 8601"):
        TimeWindow.of("last tuesday", None)
    with pytest.raises(ConfigError, match="must be before"):
        TimeWindow.of("2026-04-01", "2026-03-01")


# ---- addresses and names ------------------------------------------------------------------------

def test_networks_match_distinct_addresses_v4_and_v6() -> None:
    networks = parse_networks(["203.0.113.0/24", "203.0.113.7", "2001:db8::/32", "10.1.2.3/8"])
    matches = match_networks(["203.0.113.7", "203.0.113.200", "198.51.100.1", "2001:db8:cb4::1", "10.200.0.1",
                              "not-an-ip", None, "::ffff:203.0.113.9"], networks)
    assert matches.rows() == [
        ("10.200.0.1", "10.0.0.0/8"),
        ("2001:db8:cb4::1", "2001:db8::/32"),
        ("203.0.113.200", "203.0.113.0/24"),
        ("203.0.113.7", "203.0.113.0/24"),
        ("203.0.113.7", "203.0.113.7/32"),
        ("::ffff:203.0.113.9", "203.0.113.0/24"),
    ]


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "300.1.2.3", "vendor", "2001:db8::/129", ""])
def test_invalid_cidr_names_the_value_and_option(bad: str) -> None:
    with pytest.raises(ConfigError, match="--cidr") as info:
        parse_networks([bad], what="--cidr")
    assert repr(bad) in str(info.value)


def test_glob_patterns_match_case_insensitively() -> None:
    found = match_patterns(["svc_vendor_support", "svc_vendor2", "jdoe", None], ["SVC_VENDOR*", "jdoe"])
    assert found.rows() == [("jdoe", "jdoe"), ("svc_vendor2", "svc_vendor*"), ("svc_vendor_support", "svc_vendor*")]


def test_names_normalize_like_the_schema() -> None:
    frame = pl.DataFrame({"a": ["UTIL\\JDoe", "jdoe@util.local", " Svc ", None], "h": [
        "HES-APP01.util.local", "jump01", "10.1.2.3", "2001:db8::1"]})
    out = frame.select(normalized_account("a"), short_host("h"))
    assert out.rows() == [("jdoe", "HES-APP01"), ("jdoe", "JUMP01"), ("svc", "10.1.2.3"), (None, "2001:db8::1")]


# ---- output -------------------------------------------------------------------------------------

def _table() -> pl.DataFrame:
    return pl.DataFrame({
        "entity": ["=HYPERLINK(\"http://x\")", "alice"],
        "first_seen": [datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)],
        "last_seen": [datetime(2026, 3, 1, 1, tzinfo=UTC), None],
        "called_out": [True, False],
        "reasons": [["+cmd|' /C calc'!A0"], []],
        "description": ["-2+3", "fine"],
        "event_count": [2, 1],
        "evidence": [["a.log:1", "a.log:2"], ["b.log:7"]],
    }, schema_overrides={"first_seen": pl.Datetime("us", "UTC"), "last_seen": pl.Datetime("us", "UTC")})


def test_csv_cells_cannot_run_as_formulas() -> None:
    flat = csv_frame(_table())
    assert flat.row(0, named=True) == {
        "entity": "'=HYPERLINK(\"http://x\")", "first_seen": "2026-03-01T00:00:00Z", "last_seen": "2026-03-01T01:00:00Z",
        "called_out": True, "reasons": "'+cmd|' /C calc'!A0", "description": "'-2+3", "event_count": 2,
        "evidence": "a.log:1 a.log:2"}


def test_output_paths_directory_or_stem(tmp_path) -> None:
    assert output_paths(tmp_path / "out", "vendor-access") == [tmp_path / "out" / "vendor-access.parquet",
                                                              tmp_path / "out" / "vendor-access.jsonl"]
    assert output_paths(tmp_path / "fw.parquet", "firmware", csv=True) == [
        tmp_path / "fw.parquet", tmp_path / "fw.jsonl", tmp_path / "fw.csv"]


def test_write_table_round_trips(tmp_path) -> None:
    paths = write_table(_table(), tmp_path / "o", "x", csv=True)
    assert pl.read_parquet(paths[0]).equals(_table())
    lines = paths[1].read_text().splitlines()
    assert '"first_seen":"2026-03-01T00:00:00Z"' in lines[0] and '"last_seen":null' in lines[1]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["x.csv", "x.jsonl", "x.parquet"]


def _findings(table: pl.DataFrame, severity: str = "high") -> pl.DataFrame:
    return hunt_findings(table, detector="test", severity=severity, entity_kind=pl.lit("account"),
                         entity_id=pl.col("entity"), key=pl.col("entity"))


def test_findings_follow_the_contract() -> None:
    findings = _findings(_table())
    assert findings.schema == FINDINGS_SCHEMA
    row = findings.row(0, named=True)
    assert (row["entity_id"], row["score"], row["severity"], row["detector"], row["model_id"]) == (
        "=HYPERLINK(\"http://x\")", 1.0, "high", "test", None)
    assert row["reasons"] == ["+cmd|' /C calc'!A0", "-2+3"]
    assert row["evidence"] == ["a.log:1", "a.log:2"] and row["top_features"] == []
    assert findings.height == 1  # only the called-out row
    assert _findings(_table())["finding_id"].to_list() == findings["finding_id"].to_list()  # stable
    with pytest.raises(ConfigError, match="severity"):
        _findings(_table(), "urgent")


def test_merge_deduplicates_by_finding_id(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        merge_findings(tmp_path / "nope", _findings(_table()))
    merge_findings(tmp_path, _findings(_table()))
    merge_findings(tmp_path, _findings(_table(), "critical"))
    merged = pl.read_parquet(tmp_path / "findings.parquet")
    assert merged.height == 1 and merged["severity"].to_list() == ["critical"]  # the newer row wins
    assert len((tmp_path / "findings.jsonl").read_text().splitlines()) == 1
    (tmp_path / "findings.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read"):
        merge_findings(tmp_path, _findings(_table()))
