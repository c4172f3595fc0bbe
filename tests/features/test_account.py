"""Account windows: every feature against a hand-computed answer."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from typing import Any

import polars as pl
import pytest

from detector.features import (
    ACCOUNT_CONTEXT,
    FeatureConfig,
    Profiles,
    account_windows,
    build_profiles,
    feature_columns,
)
from detector.features.common import RARITY_PRIOR_EVENTS
from tests.features.events import make_events, t

CONFIG = FeatureConfig()

# Baseline, 2026-04-06 (Monday) 09:00 to 2026-04-07 (Tuesday) 10:04.
# alice: 10 logins Monday 09:00-09:09 from 10.0.0.1/WS1, 5 disconnects Tuesday 10:00-10:04.
# bob: a login and a firmware push to group G1 on Monday 09:xx from 198.51.100.9/WS2.
BASELINE = make_events(
    [{"time": f"2026-04-06 09:{m:02d}", "account": "alice", "src_ip": "10.0.0.1", "src_host": "WS1"}
     for m in range(10)]
    + [{"time": f"2026-04-07 10:{m:02d}", "account": "alice", "src_ip": "10.0.0.1", "src_host": "WS1",
        "action": "remote_disconnect", "target_type": "meter", "target_id": f"M{m + 1}", "target_count": 1}
       for m in range(5)]
    + [{"time": "2026-04-06 09:00", "account": "bob", "src_ip": "198.51.100.9", "src_host": "WS2"},
       {"time": "2026-04-06 09:30", "account": "bob", "src_ip": "198.51.100.9", "src_host": "WS2",
        "action": "fw_download", "target_type": "group", "target_id": "G1", "target_count": 40,
        "image_sha256": "aaa"}],
    raw_file="baseline.log",
)

# A week later, Tuesday 2026-04-14 around 02:00.
SCAN = make_events([
    {"time": "2026-04-14 02:10", "account": "alice", "src_ip": "203.0.113.77", "src_host": "WS1"},
    {"time": "2026-04-14 02:11", "account": "alice", "src_ip": "203.0.113.77", "src_host": "WS1"},
    {"time": "2026-04-14 02:12", "account": "alice", "src_ip": "203.0.113.77", "src_host": "WS1"},
    {"time": "2026-04-14 02:20", "account": "alice", "src_ip": "203.0.113.77", "src_host": "JUMP01",
     "action": "setting_changed", "target_type": "setting", "target_id": "Firmware.MaxConcurrentDownloads",
     "outcome": "failure"},
    {"time": "2026-04-14 02:21", "account": "alice", "src_ip": "10.0.0.1", "src_host": "WS1",
     "action": "remote_disconnect", "target_type": "meter", "target_id": "M1", "target_count": 1},
    {"time": "2026-04-14 02:30", "account": "mallory", "src_ip": "198.51.100.9"},
    {"time": "2026-04-14 02:31", "account": "mallory", "src_ip": "203.0.113.77"},
    {"time": "2026-04-14 02:45", "account": "bob", "src_ip": "198.51.100.9", "src_host": "WS2",
     "action": "fw_download", "target_type": "group", "target_id": "G1", "target_count": 1830,
     "image_sha256": " BBB "},
    {"time": "2026-04-14 02:50", "action": "status_change", "target_type": "breaker", "target_id": "CB1"},
], raw_file="scan.log")


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    return build_profiles(BASELINE, CONFIG)


@pytest.fixture(scope="module")
def windows(profiles: Profiles) -> pl.DataFrame:
    return account_windows(SCAN.lazy(), profiles, CONFIG).collect()


def row(frame: pl.DataFrame, entity: str, start: str) -> dict[str, Any]:
    match = frame.filter((pl.col("entity_id") == entity) & (pl.col("window_start") == t(start)))
    assert match.height == 1, f"{entity} {start}: {match.height} rows"
    return match.row(0, named=True)


def count(value: float) -> float:
    """A log1p feature back as a count."""
    return round(math.expm1(value), 9)


def test_columns_and_types(windows: pl.DataFrame) -> None:
    features = feature_columns("account")
    assert windows.columns == ["entity_kind", "entity_id", "window_start", "window_end", "event_count", "evidence",
                               *ACCOUNT_CONTEXT, *features]
    assert windows.schema["window_start"] == pl.Datetime("us", "UTC")
    assert windows.schema["window_end"] == pl.Datetime("us", "UTC")
    assert windows.schema["evidence"] == pl.List(pl.String)
    assert all(windows.schema[f] == pl.Float64 for f in features)
    assert windows.select(pl.col(features).null_count().sum()).sum_horizontal().item() == 0
    assert set(windows.get_column("entity_kind")) == {"account"}
    # Device-originated events (no account) are not account rows.
    assert windows.get_column("event_count").sum() == SCAN.filter(pl.col("account").is_not_null()).height


def test_counts_failures_and_targets(windows: pl.DataFrame) -> None:
    r = row(windows, "alice", "2026-04-14 02:00")
    assert r["event_count"] == 5
    assert r["window_end"] == t("2026-04-14 03:00")
    nonzero = {m: n for m, n in r["counts"].items() if n}
    assert nonzero == {
        "events": 5, "authentication": 3, "config_change": 1, "device_command": 1, "remote_disconnect": 1,
        "failures": 1, "targets": 2,  # the setting and M1
        "devices": 1, "burst_commands": 1, "src_ips": 2, "src_hosts": 2,
    }
    assert r["failure_ratio"] == pytest.approx(0.2)
    assert r["actions"] == ["login_success", "setting_changed", "remote_disconnect"]
    assert {a: n for a, n in r["action_counts"].items() if n} == {
        "login_success": 3, "setting_changed": 1, "remote_disconnect": 1}
    assert r["first_time"] == t("2026-04-14 02:10") and r["last_time"] == t("2026-04-14 02:21")


def test_new_ip_host_action_against_profile(windows: pl.DataFrame) -> None:
    r = row(windows, "alice", "2026-04-14 02:00")
    assert r["has_baseline"] is True
    assert r["baseline_events"] == 15 and r["baseline_days"] == 2.0
    assert r["src_ips"] == ["203.0.113.77", "10.0.0.1"]  # in order of first appearance
    assert r["counts"]["src_ips"] == 2
    assert r["new_src_ips"] == ["203.0.113.77"]
    assert count(r["new_src_ip_events"]) == 4
    assert r["src_hosts"] == ["WS1", "JUMP01"]
    assert r["counts"]["src_hosts"] == 2
    assert r["new_src_hosts"] == ["JUMP01"]
    assert count(r["new_src_host_events"]) == 1
    assert r["new_actions"] == ["setting_changed"]
    assert count(r["new_action_count"]) == 1
    # Nobody changed that setting in the baseline.
    assert r["new_settings"] == ["Firmware.MaxConcurrentDownloads"]
    assert count(r["new_setting_count"]) == 1
    # No account at all used 203.0.113.77 in the baseline.
    assert r["new_global_src_ips"] == ["203.0.113.77"]
    assert count(r["new_global_src_ip_events"]) == 4


def test_ip_known_globally_but_new_for_account(windows: pl.DataFrame, profiles: Profiles) -> None:
    # bob's address used by alice: new for alice, not new globally.
    events = make_events([{"time": "2026-04-14 05:00", "account": "alice", "src_ip": "198.51.100.9"}])
    r = account_windows(events.lazy(), profiles, CONFIG).collect().row(0, named=True)
    assert r["new_src_ips"] == ["198.51.100.9"] and count(r["new_src_ip_events"]) == 1
    assert r["new_global_src_ips"] == [] and r["new_global_src_ip_events"] == 0.0


def test_hour_and_weekday_rarity(windows: pl.DataFrame, profiles: Profiles) -> None:
    r = row(windows, "alice", "2026-04-14 02:00")
    # Never active at 02:00, nor is anyone; Tuesday holds 5 of alice's 15 events against Monday's 10
    # (the peak), each blended with everyone's share of that day (RARITY_PRIOR_EVENTS events' worth).
    assert (r["rarest_hour"], r["hour_share"], r["hour_rarity"]) == (2, 0.0, 1.0)
    assert r["rarest_weekday"] == 2
    days = profiles.account_hours.group_by("weekday").agg(pl.col("events").sum())
    everyone = dict(zip(days["weekday"], days["events"] / days["events"].sum(), strict=True))
    k = RARITY_PRIOR_EVENTS
    tuesday = (5 + k * everyone.get(2, 0.0)) / (15 + k)
    monday = (10 + k * everyone.get(1, 0.0)) / (15 + k)
    assert r["weekday_share"] == pytest.approx(tuesday)
    assert r["weekday_rarity"] == pytest.approx(1 - tuesday / monday)
    events = make_events([
        {"time": "2026-04-13 09:30", "account": "alice"},  # Monday 09:00, the peak of both
        {"time": "2026-04-14 10:30", "account": "alice"},  # Tuesday 10:00: half the peak
    ])
    frame = account_windows(events.lazy(), profiles, CONFIG).collect()
    peak, half = row(frame, "alice", "2026-04-13 09:00"), row(frame, "alice", "2026-04-14 10:00")
    hours = profiles.account_hours.group_by("hour").agg(pl.col("events").sum())
    share = dict(zip(hours["hour"], hours["events"] / hours["events"].sum(), strict=True))
    nine, ten = ((own + k * share.get(h, 0.0)) / (15 + k) for own, h in ((10, 9), (5, 10)))
    assert (peak["hour_rarity"], peak["weekday_rarity"]) == (0.0, 0.0)
    assert peak["hour_share"] == pytest.approx(nine)
    assert half["hour_rarity"] == pytest.approx(1 - ten / nine) and half["hour_share"] == pytest.approx(ten)


def test_a_short_history_makes_an_hour_everyone_keeps_less_rare_than_one_nobody_keeps() -> None:
    # Ten people work 08:00-16:00 for a week; carol joined two days ago and has only worked mornings.
    rows = [{"time": f"2026-04-{d:02d} {h:02d}:15", "account": f"op{k}"}
            for k in range(10) for d in range(6, 11) for h in range(8, 16)]
    rows += [{"time": f"2026-04-{d:02d} {h:02d}:15", "account": "carol"} for d in (9, 10) for h in (8, 9, 10)]
    baseline = build_profiles(make_events(rows).lazy(), CONFIG)
    scored = make_events([{"time": "2026-04-13 14:20", "account": "carol"},  # afternoon: everyone works then
                          {"time": "2026-04-13 03:20", "account": "carol"}])  # 03:00: nobody does
    frame = account_windows(scored.lazy(), baseline, CONFIG).collect()
    afternoon, night = row(frame, "carol", "2026-04-13 14:00"), row(frame, "carol", "2026-04-13 03:00")
    assert night["hour_rarity"] == 1.0
    assert afternoon["hour_rarity"] < 0.9


def test_dormancy(windows: pl.DataFrame, profiles: Profiles) -> None:
    r = row(windows, "alice", "2026-04-14 02:00")
    gap = t("2026-04-14 02:10") - t("2026-04-07 10:04")
    assert r["previous_activity"] == t("2026-04-07 10:04")
    assert count(r["dormancy_days"]) == pytest.approx(gap / timedelta(days=1))
    # A later window measures from the previous window of the same input, not from the baseline.
    events = make_events([{"time": "2026-04-14 02:10", "account": "alice"},
                          {"time": "2026-04-14 05:40", "account": "alice"}])
    later = row(account_windows(events.lazy(), profiles, CONFIG).collect(), "alice", "2026-04-14 05:00")
    assert later["previous_activity"] == t("2026-04-14 02:10")
    assert count(later["dormancy_days"]) == pytest.approx(3.5 / 24)


def test_cold_start_account(windows: pl.DataFrame) -> None:
    r = row(windows, "mallory", "2026-04-14 02:00")
    assert r["has_baseline"] is False
    assert (r["baseline_events"], r["baseline_days"], r["role"]) == (0, 0.0, "unknown")
    assert r["previous_activity"] is None
    # Own-history features are neutral, not "maximally odd" ...
    for name in ("new_src_ip_events", "new_src_host_events", "new_action_count", "hour_rarity", "weekday_rarity",
                 "dormancy_days"):
        assert r[name] == 0.0, name
    assert r["typical_source"] == "all"  # volumes against all accounts (its role is unknown)
    assert r["hour_share"] is None
    # ... while global novelty still speaks: 203.0.113.77 was never used, bob's address was.
    assert r["new_global_src_ips"] == ["203.0.113.77"]
    assert count(r["new_global_src_ip_events"]) == 1


def test_empty_profiles_make_everything_cold(profiles: Profiles) -> None:
    frame = account_windows(SCAN.lazy(), Profiles.empty(), CONFIG).collect()
    assert not frame.get_column("has_baseline").any()
    neutral = ["new_src_ip_events", "new_global_src_ip_events", "new_action_count", "new_image_hash_count",
               "hour_rarity", "weekday_rarity"]
    assert frame.select(pl.col(neutral).abs().sum()).sum_horizontal().item() == 0.0
    # Without any baseline a count is its own excess.
    assert set(frame.get_column("typical_source")) == {"none"}
    assert frame.select((pl.col("excess_events") - pl.col("event_count").log1p()).abs().max()).item() < 1e-12


def test_excess_over_own_typical(windows: pl.DataFrame) -> None:
    r = row(windows, "alice", "2026-04-14 02:00")
    assert r["typical_source"] == "own"
    # Baseline windows: Monday 09:00 (10 logins), Tuesday 10:00 (5 disconnects in one burst).
    typical = {m: v for m, v in r["typical"].items() if v}
    assert typical == {"events": 7.5, "authentication": 10.0, "device_command": 5.0, "remote_disconnect": 5.0,
                       "targets": 5.0, "devices": 5.0, "burst_commands": 5.0, "src_ips": 1.0, "src_hosts": 1.0}
    excess = {f: v for f, v in r.items() if f.startswith("excess_") and v}
    assert excess == pytest.approx({
        "excess_config_change": math.log(2),  # never before
        "excess_failures": math.log(2),
        "excess_src_ips": math.log(3 / 2),  # two addresses where it used one
        "excess_src_hosts": math.log(3 / 2),
    })
    # Fewer events, logins and disconnects than usual: not an excess.
    assert r["excess_events"] == r["excess_authentication"] == r["excess_remote_disconnect"] == 0.0


def test_service_volume_is_not_an_excess() -> None:
    """A service account's huge routine volume is ordinary for it; the same volume is not for others."""
    reads = [{"time": f"2026-04-0{d} {h:02d}:{m:02d}", "account": "svc_read", "action": "on_demand_read",
              "target_type": "meter", "target_id": f"M{m}"} for d in (6, 7) for h in (1, 2) for m in range(50)]
    baseline = make_events(reads + [{"time": "2026-04-06 09:00", "account": "jdoe"}])
    scan = make_events(
        [{"time": f"2026-04-14 03:{m:02d}", "account": "svc_read", "action": "on_demand_read", "target_type": "meter",
          "target_id": f"M{m}"} for m in range(50)]
        + [{"time": f"2026-04-14 03:{m:02d}", "account": "jdoe", "action": "on_demand_read", "target_type": "meter",
            "target_id": f"M{m}"} for m in range(50)])
    frame = account_windows(scan.lazy(), build_profiles(baseline, CONFIG), CONFIG).collect()
    svc, jdoe = row(frame, "svc_read", "2026-04-14 03:00"), row(frame, "jdoe", "2026-04-14 03:00")
    assert svc["excess_events"] == svc["excess_device_command"] == svc["excess_targets"] == 0.0
    assert jdoe["excess_events"] == pytest.approx(math.log1p(50) - math.log1p(1))
    assert jdoe["excess_device_command"] == pytest.approx(math.log1p(50))


def test_cold_start_compared_with_peers(profiles: Profiles) -> None:
    activity = dict(profiles.account_activity.select("account", "role").rows())
    assert activity == {"alice": "device_command", "bob": "firmware"}
    # With a higher bar bob (2 baseline events) has no baseline of his own: his role's peers
    # (bob alone) stand in, and a push to 1830 devices is compared with their usual 40.
    frame = account_windows(SCAN.lazy(), profiles, FeatureConfig(min_baseline_events=5)).collect()
    bob = row(frame, "bob", "2026-04-14 02:00")
    assert (bob["has_baseline"], bob["role"], bob["typical_source"]) == (False, "firmware", "peers")
    assert bob["typical"]["devices"] == 40.0 and bob["counts"]["devices"] == 1830
    assert bob["excess_devices"] == pytest.approx(math.log1p(1830) - math.log1p(40))
    # An unknown account is compared with all accounts: typical events are the median of
    # alice's 7.5 and bob's 2.
    m = row(frame, "mallory", "2026-04-14 02:00")
    assert (m["role"], m["typical_source"]) == ("unknown", "all")
    assert m["typical"]["events"] == pytest.approx(4.75)
    assert m["typical"]["authentication"] == pytest.approx(5.5)
    assert m["excess_events"] == 0.0


def test_new_image_hash_for_account(windows: pl.DataFrame) -> None:
    r = row(windows, "bob", "2026-04-14 02:00")
    assert r["new_image_hashes"] == ["bbb"]  # trimmed and lower-cased
    assert count(r["new_image_hash_count"]) == 1
    assert r["counts"]["devices"] == 1830 and r["counts"]["burst_commands"] == 1


def test_burst_max() -> None:
    events = make_events([
        {"time": "2026-04-14 02:00:00", "account": "ops", "action": "remote_disconnect", "target_type": "meter",
         "target_id": "M1"},
        {"time": "2026-04-14 02:01:00", "account": "ops", "action": "remote_disconnect", "target_type": "meter",
         "target_id": "M2"},
        {"time": "2026-04-14 02:04:59", "account": "ops", "action": "key_renewal", "target_type": "group",
         "target_id": "R17", "target_count": 412},
        {"time": "2026-04-14 02:05:00", "account": "ops", "action": "fw_download", "target_type": "group",
         "target_id": "ALL", "target_count": 1830},
        {"time": "2026-04-14 02:20:00", "account": "ops", "action": "ping", "target_type": "meter", "target_id": "M3"},
        {"time": "2026-04-14 02:21:00", "account": "ops"},  # a login is not a command
        {"time": "2026-04-14 02:22:00", "account": "ops"},
    ])
    r = account_windows(events.lazy(), Profiles.empty(), CONFIG).collect().row(0, named=True)
    counts = r["counts"]
    assert counts["burst_commands"] == 3  # 02:00-02:05 holds three control commands
    assert counts["devices"] == 1 + 1 + 412 + 1830  # a ping is not a control command
    assert counts["targets"] == 5
    assert r["excess_burst_commands"] == pytest.approx(math.log1p(3))  # no baseline: all of it


def test_window_boundaries() -> None:
    events = make_events([
        {"time": "2026-04-14 02:59:59", "account": "ops"},
        {"time": "2026-04-14 03:00:00", "account": "ops"},  # exactly on the boundary: the later window
        {"time": "2026-04-14 03:59:59", "account": "ops"},
    ])
    frame = account_windows(events.lazy(), Profiles.empty(), CONFIG).collect()
    assert frame.select("window_start", "window_end", "event_count").rows() == [
        (t("2026-04-14 02:00"), t("2026-04-14 03:00"), 1),
        (t("2026-04-14 03:00"), t("2026-04-14 04:00"), 2),
    ]
    daily = account_windows(events.lazy(), Profiles.empty(), FeatureConfig(window="1d", burst="1h")).collect()
    assert daily.select("window_start", "window_end", "event_count").rows() == [
        (t("2026-04-14 00:00"), t("2026-04-15 00:00"), 3)]


def test_evidence_in_time_order_and_capped() -> None:
    events = make_events([
        {"time": "2026-04-14 02:30", "account": "ops"},
        {"time": "2026-04-14 02:10", "account": "ops"},
        {"time": "2026-04-14 02:20", "account": "ops"},
    ], raw_file="/exports/hes/audit.csv")
    full = account_windows(events.lazy(), Profiles.empty(), CONFIG).collect().row(0, named=True)
    assert full["evidence"] == ["/exports/hes/audit.csv:2", "/exports/hes/audit.csv:3", "/exports/hes/audit.csv:1"]
    capped = account_windows(events.lazy(), Profiles.empty(), FeatureConfig(evidence_cap=2)).collect()
    assert capped.item(0, "evidence").to_list() == ["/exports/hes/audit.csv:2", "/exports/hes/audit.csv:3"]
    assert capped.item(0, "event_count") == 3


def test_context_lists_are_capped() -> None:
    events = make_events([{"time": f"2026-04-14 02:{m:02d}", "account": "ops", "src_ip": f"192.0.2.{m}"}
                          for m in range(30)])
    r = account_windows(events.lazy(), Profiles.empty(), FeatureConfig(context_cap=5)).collect().row(0, named=True)
    assert r["src_ips"] == [f"192.0.2.{m}" for m in range(5)]
    assert r["counts"]["src_ips"] == 30


def test_training_windows_leave_themselves_out() -> None:
    """Features of the baseline's own windows compare each window with the rest of the baseline."""
    events = make_events([
        {"time": "2026-04-06 09:00", "account": "alice", "src_ip": "10.0.0.1"},
        {"time": "2026-04-06 10:00", "account": "alice", "src_ip": "10.0.0.1"},
        {"time": "2026-04-06 11:00", "account": "alice", "src_ip": "10.0.0.2", "action": "logout"},
        {"time": "2026-04-06 11:30", "account": "solo", "src_ip": "10.0.0.3"},
        {"time": "2026-04-07 09:00", "account": "alice", "src_ip": "10.0.0.1"},
    ])
    profiles = build_profiles(events, CONFIG)
    frame = account_windows(events.lazy(), profiles, CONFIG).collect()
    nine, eleven = row(frame, "alice", "2026-04-06 09:00"), row(frame, "alice", "2026-04-06 11:00")
    assert nine["new_src_ips"] == [] and nine["new_src_ip_events"] == 0.0
    assert nine["baseline_events"] == 3
    assert eleven["new_src_ips"] == ["10.0.0.2"] and eleven["new_actions"] == ["logout"]
    assert eleven["new_global_src_ips"] == ["10.0.0.2"]
    # Outside its 11:00 window alice was active at 09:00 (twice) and 10:00 only: what share 11:00
    # keeps is everyone's habit (the prior, which does not leave windows out).
    hours = profiles.account_hours.group_by("hour").agg(pl.col("events").sum())
    everyone = dict(zip(hours["hour"], hours["events"] / hours["events"].sum(), strict=True))
    k = RARITY_PRIOR_EVENTS
    assert eleven["hour_share"] == pytest.approx(k * everyone[11] / (3 + k))
    assert eleven["hour_rarity"] > nine["hour_rarity"]
    # Outside the Monday 09:00 window: one event each at 09, 10 and 11; 09:00 ties for the peak.
    assert nine["hour_share"] == pytest.approx((1 + k * everyone[9]) / (3 + k)) and nine["hour_rarity"] == 0.0
    # Outside the Monday 10:00 window, 09:00 holds two events and 10:00 none of alice's.
    ten = row(frame, "alice", "2026-04-06 10:00")
    assert ten["hour_share"] == pytest.approx(k * everyone[10] / (3 + k))
    assert ten["hour_rarity"] == pytest.approx(1 - ten["hour_share"] / ((2 + k * everyone[9]) / (3 + k)))
    # Dormancy within the training data comes from the previous window, not the profile.
    assert eleven["previous_activity"] == t("2026-04-06 10:00")
    # An account whose whole baseline is this one window has no baseline for it.
    solo = row(frame, "solo", "2026-04-06 11:00")
    assert solo["has_baseline"] is False and solo["baseline_events"] == 0
    assert solo["new_src_ip_events"] == 0.0


def test_min_baseline_events() -> None:
    profiles = build_profiles(BASELINE, CONFIG)
    strict = FeatureConfig(min_baseline_events=5)
    frame = account_windows(SCAN.lazy(), profiles, strict).collect()
    assert row(frame, "alice", "2026-04-14 02:00")["has_baseline"] is True  # 15 events
    assert row(frame, "bob", "2026-04-14 02:00")["has_baseline"] is False  # 2 events


def test_empty_input_keeps_schema(profiles: Profiles) -> None:
    empty = make_events([])
    frame = account_windows(empty.lazy(), profiles, CONFIG).collect()
    reference = account_windows(SCAN.lazy(), profiles, CONFIG).collect()
    assert frame.height == 0
    assert frame.schema == reference.schema


def test_streaming_engine_gives_the_same_rows(profiles: Profiles) -> None:
    lazy = account_windows(SCAN.lazy(), profiles, CONFIG)
    assert lazy.collect(engine="streaming").equals(lazy.collect())


def test_input_order_does_not_matter(profiles: Profiles) -> None:
    shuffled = SCAN.sample(fraction=1.0, shuffle=True, seed=3)
    assert account_windows(shuffled.lazy(), profiles, CONFIG).collect().equals(
        account_windows(SCAN.lazy(), profiles, CONFIG).collect())


def test_duplicate_profile_rows_do_not_multiply_events(profiles: Profiles) -> None:
    doubled = dataclasses.replace(profiles, account_ips=pl.concat([profiles.account_ips, profiles.account_ips]),
                                  account_actions=pl.concat([profiles.account_actions, profiles.account_actions]))
    frame = account_windows(SCAN.lazy(), doubled, CONFIG).collect()
    assert frame.get_column("event_count").sum() == SCAN.filter(pl.col("account").is_not_null()).height
    assert row(frame, "alice", "2026-04-14 02:00")["new_src_ips"] == ["203.0.113.77"]


def test_setting_changed_before_by_someone_else_is_not_new() -> None:
    base = make_events([{"time": "2026-04-06 09:00", "account": "adm1", "action": "setting_changed",
                         "target_type": "setting", "target_id": "Firmware.MaxConcurrentDownloads"}])
    scan = make_events([
        {"time": "2026-04-14 09:00", "account": "adm2", "action": "setting_changed", "target_type": "setting",
         "target_id": "Firmware.MaxConcurrentDownloads"},
        {"time": "2026-04-14 09:01", "account": "adm2", "action": "setting_changed", "target_type": "setting",
         "target_id": "Security.DisconnectApprovalRequired"},
        {"time": "2026-04-14 09:02", "account": "adm2", "action": "remote_disconnect", "target_type": "meter",
         "target_id": "M1"},  # a device target is not a setting
    ])
    r = account_windows(scan.lazy(), build_profiles(base, CONFIG), CONFIG).collect().row(0, named=True)
    assert r["new_settings"] == ["Security.DisconnectApprovalRequired"]
    assert count(r["new_setting_count"]) == 1
