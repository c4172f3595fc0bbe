from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from detector.errors import ConfigError
from detector.findings import FINDINGS_SCHEMA
from detector.hunts.vendor_access import hunt_vendor_access, summary, to_findings
from tests.features.events import make_events

CHICAGO = "America/Chicago"
VENDOR = ["203.0.113.0/24"]


def events() -> pl.DataFrame:
    vpn = {"source_system": "vpn", "target_type": "server", "target_id": "vpn01"}
    return make_events([
        # Monday 09:00-10:00 CST: tech1 is no vendor account by name, but connects from the vendor range.
        {**vpn, "time": "2026-03-02 15:00", "account": "tech1", "action": "vpn_connect", "src_ip": "203.0.113.5"},
        {"time": "2026-03-02 15:02", "source_system": "jumphost", "host": "jump01", "account": "tech1",
         "action": "login_success", "src_ip": "10.40.9.10", "target_type": "server", "target_id": "HES-APP01"},
        {"time": "2026-03-02 15:03", "source_system": "windows", "host": "HES-APP01.util.local", "account": "tech1",
         "action": "login_success", "src_ip": "10.40.8.21"},
        {"time": "2026-03-02 15:10", "account": "tech1", "action": "on_demand_read", "src_ip": "10.40.8.21",
         "target_type": "meter", "target_id": "4A1B22C3"},
        # 40 minutes of silence, but still inside the VPN connection.
        {"time": "2026-03-02 15:50", "account": "tech1", "action": "on_demand_read", "src_ip": "10.40.8.21",
         "target_type": "meter", "target_id": "4A1B22C3"},
        {**vpn, "time": "2026-03-02 16:00", "account": "tech1", "action": "vpn_disconnect", "src_ip": "203.0.113.5"},
        # tech1 later, from inside and without a vendor connection: not vendor access.
        {"time": "2026-03-02 20:00", "account": "tech1", "action": "on_demand_read", "src_ip": "10.20.1.1"},
        {"time": "2026-03-02 15:05", "account": "jdoe", "action": "login_success", "src_ip": "10.20.1.2"},
        # Tuesday 22:00-22:20 CST: the vendor's own account, from outside its range.
        {**vpn, "time": "2026-03-04 04:00", "account": "svc_vendor_support", "action": "vpn_connect",
         "src_ip": "192.0.2.61"},
        {"time": "2026-03-04 04:05", "account": "svc_vendor_support", "action": "login_success", "src_ip": "10.40.8.21"},
        {**vpn, "time": "2026-03-04 04:20", "account": "svc_vendor_support", "action": "vpn_disconnect",
         "src_ip": "192.0.2.61"},
        # 70 minutes later: a new session of one event.
        {"time": "2026-03-04 05:30", "account": "svc_vendor_support", "action": "ping", "src_ip": "10.40.8.21",
         "target_type": "meter", "target_id": "ABCD0001"},
    ])


def test_sessions_are_stitched_across_sources() -> None:
    table = hunt_vendor_access(events(), accounts=["SVC_VENDOR*"], cidrs=VENDOR, tz=CHICAGO)
    assert table.select("account", "first_seen", "called_out").rows() == [
        ("svc_vendor_support", datetime(2026, 3, 4, 4, 0, tzinfo=UTC), True),
        ("svc_vendor_support", datetime(2026, 3, 4, 5, 30, tzinfo=UTC), True),
        ("tech1", datetime(2026, 3, 2, 15, 0, tzinfo=UTC), False),
    ]
    tech = table.row(2, named=True)
    assert tech["last_seen"] == datetime(2026, 3, 2, 16, 0, tzinfo=UTC) and tech["duration_minutes"] == 60.0
    assert tech["path"] == ["vpn:VPN01", "jumphost:JUMP01", "windows:HES-APP01", "hes"]
    assert tech["src_ips"] == ["203.0.113.5", "10.40.9.10", "10.40.8.21"]
    assert tech["vendor_addresses"] == ["203.0.113.5"] and tech["outside_addresses"] == []
    assert tech["hosts"] == ["JUMP01", "HES-APP01"] and tech["devices"] == ["4A1B22C3"]
    assert tech["actions"] == ["login_success (2)", "on_demand_read (2)", "vpn_connect (1)", "vpn_disconnect (1)"]
    assert tech["matched_by"] == ["address", "session"] and tech["off_hours_share"] == 0.0
    assert tech["event_count"] == 6 and tech["evidence"] == [f"test.log:{n}" for n in range(1, 7)]

    night = table.row(0, named=True)
    assert night["off_hours_share"] == 1.0 and night["outside_addresses"] == ["192.0.2.61"]
    assert night["matched_by"] == ["account"] and night["evidence"] == ["test.log:9", "test.log:10", "test.log:11"]
    assert night["reasons"] == [
        "100% of the session was outside business hours Mon-Fri 07:00-18:00 (America/Chicago)",
        "connected over the VPN from 192.0.2.61, outside the vendor address ranges 203.0.113.0/24"]
    single = table.row(1, named=True)
    assert (single["duration_minutes"], single["off_hours_share"], single["devices"]) == (0.0, 1.0, ["ABCD0001"])


def test_accounts_alone_and_ranges_alone() -> None:
    by_name = hunt_vendor_access(events(), accounts=["svc_vendor_support"], tz=CHICAGO)
    assert set(by_name["account"]) == {"svc_vendor_support"}
    assert by_name["outside_addresses"].to_list() == [[], []]  # no ranges: nothing is outside them
    by_range = hunt_vendor_access(events(), cidrs=["192.0.2.0/24"], tz=CHICAGO)
    assert by_range.select("account", "event_count").rows() == [("svc_vendor_support", 3)]


def test_off_hours_share_is_the_share_of_minutes() -> None:
    # 17:30-18:30 CST on a Monday: half inside business hours.
    frame = make_events([
        {"time": "2026-03-02 23:30", "account": "svc_vendor_support", "action": "login_success"},
        {"time": "2026-03-03 00:00", "account": "svc_vendor_support", "action": "ping"},
        {"time": "2026-03-03 00:30", "account": "svc_vendor_support", "action": "logout"},
    ])
    table = hunt_vendor_access(frame, accounts=["svc_vendor_support"], tz=CHICAGO)
    assert table.select("duration_minutes", "off_hours_share", "called_out").rows() == [(60.0, 0.5, True)]
    stricter = hunt_vendor_access(frame, accounts=["svc_vendor_support"], tz=CHICAGO, off_hours_threshold=0.6)
    assert stricter["called_out"].to_list() == [False]
    shifted = hunt_vendor_access(frame, accounts=["svc_vendor_support"], tz=CHICAGO,
                                 business_hours=["Mon-Fri 08:00-19:00"])
    assert shifted["off_hours_share"].to_list() == [0.0]


def test_gap_and_period() -> None:
    table = hunt_vendor_access(events(), accounts=["svc_vendor*"], tz=CHICAGO, gap=timedelta(hours=2))
    assert table.height == 1 and table["event_count"].to_list() == [4]
    later = hunt_vendor_access(events(), accounts=["svc_vendor*"], cidrs=VENDOR, tz=CHICAGO, since="2026-03-03")
    assert set(later["account"]) == {"svc_vendor_support"}


def test_findings_are_per_account() -> None:
    findings = to_findings(hunt_vendor_access(events(), accounts=["svc_vendor*"], cidrs=VENDOR, tz=CHICAGO))
    assert findings.schema == FINDINGS_SCHEMA
    assert findings.select("entity_kind", "entity_id", "detector").rows() == [
        ("account", "svc_vendor_support", "vendor-access")] * 2
    assert findings["finding_id"].n_unique() == 2


@pytest.mark.parametrize("options, words", [
    ({}, "--account"),
    ({"cidrs": ["203.0.113.0/33"]}, "'203.0.113.0/33' is not an IPv4/IPv6 address or CIDR"),
    ({"cidrs": ["vendor.example.com"]}, "--cidr"),
    ({"accounts": ["x"], "off_hours_threshold": 1.5}, "between 0 and 1"),
    ({"accounts": ["x"], "business_hours": ["weekdays"]}, "not like"),
])
def test_bad_options_are_clear_errors(options: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        hunt_vendor_access(events(), **options)


def test_sample_logs_night_session_from_outside(sample_events: pl.DataFrame, incidents: dict) -> None:
    planted = incidents["vendor_login_unusual"]
    table = hunt_vendor_access(sample_events, accounts=["svc_vendor*"], cidrs=VENDOR, tz=CHICAGO)
    assert table.height == 10 and set(table["account"]) == {"svc_vendor_support"}
    called = table.filter("called_out")
    assert called.height == 1
    row = called.row(0, named=True)
    assert row["first_seen"] == datetime.fromisoformat(planted["start"]).replace(microsecond=0)
    assert row["outside_addresses"] == ["192.0.2.61"] and row["off_hours_share"] == 1.0
    assert row["path"][0] == "vpn:VPN01" and "jumphost:JUMP01" in row["path"] and row["path"][-1] == "hes"
    assert set(row["devices"]) == set(planted["devices"]) and set(planted["hosts"]) <= set(row["hosts"])
    assert any(e.endswith("vpn_2026-03-25.cef:1") for e in row["evidence"])
    # The business-hours sessions from the vendor's range are listed, not called out.
    assert table.filter(~pl.col("called_out"))["off_hours_share"].max() == 0.0

    # From the documentation range alone: the vendor's night session and the dormant account.
    outside = hunt_vendor_access(sample_events, cidrs=["192.0.2.0/24"], tz=CHICAGO)
    assert sorted(outside["account"]) == ["rjenkins", "svc_vendor_support"]


def test_jump_host_is_where_the_session_lands_and_every_action_is_listed() -> None:
    vpn = {"source_system": "vpn", "target_type": "server", "target_id": "vpn01"}
    rows = [
        {**vpn, "time": "2026-03-04 04:00", "account": "svc_vendor_support", "action": "vpn_connect",
         "src_ip": "203.0.113.9"},
        # The jump host's record came through a syslog relay: host is the relay, shost the jump host.
        {"time": "2026-03-04 04:01", "source_system": "jumphost", "host": "syslog-relay01", "src_host": "JUMP02",
         "account": "svc_vendor_support", "action": "login_success", "src_ip": "10.40.9.10",
         "target_type": "server", "target_id": "HES-APP01"},
    ] + [{"time": f"2026-03-04 04:{10 + i:02d}", "account": "svc_vendor_support", "action": action,
          "src_ip": "10.40.8.21", "target_type": "meter", "target_id": "4A1B22C3"}
         for i, action in enumerate(["ping", "ping", "on_demand_read", "time_sync", "demand_reset", "remote_connect",
                                     "load_limit_set", "setting_changed"])]
    [session] = hunt_vendor_access(make_events(rows), accounts=["svc_vendor*"], tz=CHICAGO).iter_rows(named=True)
    assert session["path"][:2] == ["vpn:VPN01", "jumphost:JUMP02"]
    assert "SYSLOG-RELAY01" not in session["hosts"] and "JUMP02" in session["hosts"]
    assert len(session["actions"]) == 9 and "setting_changed (1)" in session["description"]
    assert all(action in session["description"] for action in session["actions"])
    table = hunt_vendor_access(make_events(rows * 3), accounts=["svc_vendor*"], tz=CHICAGO)
    [line] = [line for line in summary(table) if line.startswith(("!", "-"))]
    assert "setting_changed (3)" in line and "…" not in line  # the terminal summary is not cut either
