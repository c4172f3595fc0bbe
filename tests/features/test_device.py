"""Device windows: commands received, issuers and firmware images against the baseline."""

from __future__ import annotations

import math
from datetime import timedelta

import polars as pl
import pytest

from detector.features import (
    DEVICE_CONTEXT,
    FeatureConfig,
    Profiles,
    build_features,
    build_profiles,
    device_windows,
    feature_columns,
)
from tests.features.events import make_events, t
from tests.features.test_account import BASELINE, CONFIG, SCAN, count, row


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    return build_profiles(BASELINE, CONFIG)


@pytest.fixture(scope="module")
def windows(profiles: Profiles) -> pl.DataFrame:
    extra = make_events([
        {"time": "2026-04-14 02:40", "account": "mallory", "action": "remote_disconnect", "target_type": "meter",
         "target_id": "M1", "outcome": "failure"},
        {"time": "2026-04-14 02:41", "account": "alice", "action": "remote_connect", "target_type": "meter",
         "target_id": "M99"},
    ], raw_file="extra.log")
    return device_windows(pl.concat([SCAN, extra]).lazy(), profiles, CONFIG).collect()


def test_columns_and_types(windows: pl.DataFrame) -> None:
    features = feature_columns("device")
    assert windows.columns == ["entity_kind", "entity_id", "window_start", "window_end", "event_count", "evidence",
                               *DEVICE_CONTEXT, *features]
    assert all(windows.schema[f] == pl.Float64 for f in features)
    assert windows.select(pl.col(features).null_count().sum()).sum_horizontal().item() == 0
    assert sorted(windows.get_column("entity_id")) == ["CB1", "G1", "M1", "M99"]


def test_commands_by_type_and_new_issuer(windows: pl.DataFrame) -> None:
    r = row(windows, "M1", "2026-04-14 02:00")
    assert (r["event_count"], r["device_type"], r["has_baseline"]) == (2, "meter", True)
    assert {m: n for m, n in r["counts"].items() if n} == {
        "events": 2, "commands": 2, "remote_disconnect": 2, "failures": 1, "devices": 2, "burst_commands": 1,
        "issuers": 2}
    assert r["failure_ratio"] == 0.5
    assert r["issuers"] == ["alice", "mallory"]
    assert r["new_issuers"] == ["mallory"]  # alice disconnected M1 in the baseline
    assert count(r["new_issuer_count"]) == 1
    assert r["evidence"] == ["scan.log:5", "extra.log:1"]


def test_group_device_and_new_image_hash(windows: pl.DataFrame) -> None:
    r = row(windows, "G1", "2026-04-14 02:00")
    assert r["device_type"] == "group"
    assert r["counts"]["devices"] == 1830 and r["counts"]["fw_download"] == 1
    assert r["typical"]["devices"] == 40.0
    assert r["excess_devices"] == pytest.approx(math.log1p(1830) - math.log1p(40))
    assert r["new_image_hashes"] == ["bbb"]  # the baseline pushed "aaa" only
    assert count(r["new_image_hash_count"]) == 1
    assert r["new_issuers"] == []  # bob pushed to G1 in the baseline


def test_device_originated_event_and_dormancy(windows: pl.DataFrame, profiles: Profiles) -> None:
    r = row(windows, "CB1", "2026-04-14 02:00")
    assert r["device_type"] == "breaker"
    assert r["counts"]["status_change"] == 1
    assert r["issuers"] == [] and r["counts"]["issuers"] == 0
    # CB1 has no baseline event at all: a cold start, still a row of its own.
    assert r["has_baseline"] is False
    m1 = row(windows, "M1", "2026-04-14 02:00")
    assert m1["previous_activity"] == t("2026-04-07 10:00")
    gap = t("2026-04-14 02:21") - t("2026-04-07 10:00")
    assert count(m1["dormancy_days"]) == pytest.approx(gap / timedelta(days=1))
    assert m1["typical"]["events"] == 1.0
    assert m1["excess_events"] == pytest.approx(math.log1p(2) - math.log1p(1))


def test_device_cold_start(windows: pl.DataFrame) -> None:
    r = row(windows, "M99", "2026-04-14 02:00")
    assert (r["has_baseline"], r["baseline_events"], r["baseline_days"]) == (False, 0, 0.0)
    assert r["new_issuers"] == ["alice"]  # listed as context ...
    assert r["new_issuer_count"] == 0.0  # ... but not scored: there is no history to be new against
    assert r["dormancy_days"] == 0.0
    # Compared with the median meter of the baseline: one disconnect-sized event a window.
    assert r["typical_source"] == "peers" and r["typical"]["events"] == 1.0
    assert r["excess_events"] == 0.0


def test_status_change_with_baseline() -> None:
    base = make_events([{"time": "2026-04-06 12:00", "action": "status_change", "target_type": "breaker",
                         "target_id": "CB1"}])
    scan = make_events([{"time": "2026-04-14 02:50", "action": "status_change", "target_type": "breaker",
                         "target_id": "CB1"},
                        {"time": "2026-04-14 02:55", "account": "jdoe", "action": "breaker_open",
                         "target_type": "breaker", "target_id": "CB1"}])
    r = device_windows(scan.lazy(), build_profiles(base, CONFIG), CONFIG).collect().row(0, named=True)
    assert r["has_baseline"] is True and r["baseline_days"] == 1.0
    assert r["counts"]["status_change"] == 1 and r["counts"]["breaker_open"] == 1
    assert r["new_issuers"] == ["jdoe"] and count(r["new_issuer_count"]) == 1
    assert count(r["dormancy_days"]) == pytest.approx(7 + 14.833333333 / 24)


def test_non_device_targets_are_not_devices() -> None:
    events = make_events([
        {"time": "2026-04-14 02:00", "account": "adm", "action": "account_created", "target_type": "account",
         "target_id": "ops_tmp7"},
        {"time": "2026-04-14 02:01", "account": "adm", "action": "setting_changed", "target_type": "setting",
         "target_id": "X"},
        {"time": "2026-04-14 02:02", "account": "adm", "action": "ping", "target_type": "meter"},  # no id
    ])
    assert device_windows(events.lazy(), Profiles.empty(), CONFIG).collect().height == 0


def test_build_features_returns_both_kinds(profiles: Profiles) -> None:
    frames = build_features(SCAN, profiles, CONFIG)
    assert set(frames) == {"account", "device"}
    assert all(isinstance(f, pl.LazyFrame) for f in frames.values())
    device = frames["device"].collect()
    assert device.get_column("event_count").sum() == SCAN.filter(pl.col("target_type").is_not_null()
                                                                 & (pl.col("target_type") != "setting")).height


def test_burst_for_device() -> None:
    events = make_events(
        [{"time": f"2026-04-14 02:0{m}", "account": "ops", "action": "remote_disconnect", "target_type": "meter",
          "target_id": "M1"} for m in range(7)]
        + [{"time": "2026-04-14 02:30", "account": "ops", "action": "ping", "target_type": "meter", "target_id": "M1"}])
    r = device_windows(events.lazy(), Profiles.empty(), FeatureConfig()).collect().row(0, named=True)
    assert r["counts"]["burst_commands"] == 5  # 02:00-02:04 in one sub-window, 02:05-02:06 in the next
    assert r["counts"]["remote_disconnect"] == 7 and r["counts"]["ping"] == 1 and r["counts"]["commands"] == 8
