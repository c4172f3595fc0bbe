"""Security signals read from the events themselves: weakened controls and new source networks."""

from __future__ import annotations

import math

import polars as pl
import pytest

from detector.explain import feature_sentence
from detector.features import FeatureConfig, account_windows, build_profiles
from detector.features.common import src_network
from detector.features.controls import weakened_change
from tests.features.events import make_events

CONFIG = FeatureConfig()


def count(value: float) -> int:
    return round(math.expm1(value))


def _change(setting: str, old: str | None, new: str | None, minute: int = 0) -> dict:
    return {"time": f"2026-04-14 10:{minute:02d}", "account": "adm", "src_ip": "10.0.0.5", "src_host": "WS-IT-01",
            "action": "setting_changed", "target_type": "setting", "target_id": setting,
            "old_value": old, "new_value": new}


@pytest.mark.parametrize(("setting", "old", "new", "weakens"), [
    # A security control switched off, whatever the spelling of on and off.
    ("Security.DisconnectApprovalRequired", "true", "false", True),
    ("Audit.Enabled", "Enabled", " DISABLED ", True),
    ("Audit.Enabled", "1", "0", True),
    ("Comms.Encryption", "AES128", "None", True),
    ("Auth.MFA", "required", "optional", True),
    ("Audit.Enabled", "false", "false", False),  # already off
    ("Audit.Enabled", "false", "true", False),  # switched on
    ("Reports.Enabled", "true", "false", False),  # not a security control
    ("Alarm.Limit[HI]", "20", "0", False),  # a level, not a switch
    # A cap lifted, or a floor dropped, tenfold.
    ("RemoteDisconnect.MaxPerHour", "50", "5000", True),
    ("Security.MaxFailedLogins", "5", "50", True),
    ("Password.MinLength", "12", "1", True),
    ("Security.MaxFailedLogins", "5", "10", False),  # routine tuning
    ("RemoteDisconnect.MaxPerHour", "5000", "50", False),  # tightened
    ("AdminSessionCount", "100", "1", False),  # "Admin" is not a minimum
    ("Collector.PollIntervalSec", "300", "9000", False),  # not a bound
    ("UI.SessionTimeoutMinutes", "15", "30", False),
])
def test_weakened_change(setting: str, old: str, new: str, weakens: bool) -> None:
    events = make_events([_change(setting, old, new)])
    value = events.select(weakened_change()).item()
    assert (value is not None) is weakens, value
    if weakens:
        assert value == f"{setting}: {old.strip()} → {new.strip()}"


def test_only_configuration_changes_weaken() -> None:
    events = make_events([{"time": "2026-04-14 10:00", "account": "adm", "action": "login_success",
                           "target_id": "Security.Enabled", "old_value": "true", "new_value": "false"}])
    assert events.select(weakened_change()).item() is None


def test_weakened_settings_in_the_account_window() -> None:
    # adm changed both settings routinely in the baseline: neither is new, yet weakening them counts.
    base = make_events([_change("Security.DisconnectApprovalRequired", "false", "true"),
                        _change("RemoteDisconnect.MaxPerHour", "40", "50", 5)])
    scan = make_events([
        {**_change("Security.DisconnectApprovalRequired", "true", "false"), "time": "2026-04-21 13:10"},
        {**_change("RemoteDisconnect.MaxPerHour", "50", "5000"), "time": "2026-04-21 13:12"},
        {**_change("Reads.RetryCount", "2", "4"), "time": "2026-04-21 13:14"},
        {**_change("Security.DisconnectApprovalRequired", "false", "true"), "time": "2026-04-21 14:00"},
    ])
    frame = account_windows(scan.lazy(), build_profiles(base, CONFIG), CONFIG).collect().sort("window_start")
    first, second = frame.row(0, named=True), frame.row(1, named=True)
    assert count(first["new_setting_count"]) == 1  # only Reads.RetryCount is new
    assert count(first["weakened_setting_count"]) == 2
    assert first["weakened_settings"] == ["Security.DisconnectApprovalRequired: true → false",
                                          "RemoteDisconnect.MaxPerHour: 50 → 5000"]
    assert second["weakened_setting_count"] == 0.0 and second["weakened_settings"] == []
    sentence = feature_sentence("weakened_setting_count", first["weakened_setting_count"], first)
    assert sentence == ("weakened a security control: Security.DisconnectApprovalRequired: true → false, "
                        "RemoteDisconnect.MaxPerHour: 50 → 5000")


def test_weakened_settings_need_no_baseline() -> None:
    base = make_events([{"time": "2026-04-06 09:00", "account": "someone_else"}])
    scan = make_events([_change("Security.AuditLogging", "on", "off")])
    r = account_windows(scan.lazy(), build_profiles(base, CONFIG), CONFIG).collect().row(0, named=True)
    assert r["has_baseline"] is False
    assert count(r["weakened_setting_count"]) == 1


@pytest.mark.parametrize(("ip", "network"), [
    ("10.40.9.165", "10.40.9.0/24"),
    ("2001:db8:44a:28::674", "2001:db8:44a:28::/64"),
    ("2001:0db8:044a:0028:0000:0000:0000:0674", "2001:db8:44a:28::/64"),  # the same /64, spelled out
    ("2001:db8::1", "2001:db8:0:0::/64"),
    ("fe80::1:2:3:4:5:6", "fe80:0:1:2::/64"),
    ("::1", "0:0:0:0::/64"),
    ("64:ff9b::192.0.2.33", "64:ff9b:0:0::/64"),
    (None, None),
])
def test_src_network(ip: str | None, network: str | None) -> None:
    assert pl.DataFrame({"ip": [ip]}, schema={"ip": pl.String}).select(src_network(pl.col("ip"))).item() == network


def test_new_source_network_against_the_account_profile() -> None:
    # vend connects from two addresses of its office range and, through the VPN pool, from 10.40.9.x.
    base = make_events([
        {"time": "2026-04-06 15:00", "account": "vend", "src_ip": "203.0.113.14", "action": "vpn_connect"},
        {"time": "2026-04-07 15:00", "account": "vend", "src_ip": "203.0.113.27", "action": "vpn_connect"},
        {"time": "2026-04-07 15:01", "account": "vend", "src_ip": "10.40.9.20"},
        {"time": "2026-04-07 15:02", "account": "other", "src_ip": "192.0.2.61"},
    ])
    scan = make_events([
        # Another office address and another pool address: new addresses, known networks.
        {"time": "2026-04-14 15:00", "account": "vend", "src_ip": "203.0.113.28", "action": "vpn_connect"},
        {"time": "2026-04-14 15:01", "account": "vend", "src_ip": "10.40.9.165"},
        # At night from outside the office range: a new network (known to another account only).
        {"time": "2026-04-15 01:20", "account": "vend", "src_ip": "192.0.2.61", "action": "vpn_connect"},
        {"time": "2026-04-15 01:21", "account": "vend", "src_ip": "10.40.9.166"},
    ])
    frame = account_windows(scan.lazy(), build_profiles(base, CONFIG), CONFIG).collect().sort("window_start")
    day, night = frame.row(0, named=True), frame.row(1, named=True)
    assert count(day["new_src_ip_events"]) == 2
    assert day["new_src_net_events"] == 0.0 and day["new_src_nets"] == []
    assert count(night["new_src_net_events"]) == 1
    assert night["new_src_nets"] == ["192.0.2.0/24"]
    sentence = feature_sentence("new_src_net_events", night["new_src_net_events"], night)
    assert sentence == "1 event from network 192.0.2.0/24, never seen for this account in 2 days of baseline"


def test_new_source_network_leaves_the_window_out() -> None:
    # Training windows are compared with a baseline that contains them: their own events do not count.
    events = make_events([
        {"time": "2026-04-06 09:00", "account": "a", "src_ip": "10.0.0.1"},
        {"time": "2026-04-07 09:00", "account": "a", "src_ip": "198.51.100.7"},
        {"time": "2026-04-08 09:00", "account": "a", "src_ip": "10.0.0.2"},
    ])
    frame = account_windows(events.lazy(), build_profiles(events, CONFIG), CONFIG).collect().sort("window_start")
    assert [count(v) for v in frame.get_column("new_src_net_events")] == [0, 1, 0]
