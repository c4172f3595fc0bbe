"""Lean device windows: the one-pass builder gives the general query's table, column for column."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from detector.features import FeatureConfig, Profiles, build_profiles, device_windows
from detector.features.device import general_device_windows
from detector.features.lean_device import lean_device_windows
from tests.features.events import make_events
from tests.features.test_properties import START, event

# Baseline: meters M1-M3 (M3 only once), breaker CB1, group G1 pushed an image; two operators.
BASELINE = make_events(
    [{"time": f"2026-04-06 {h:02d}:{m:02d}", "account": "alice", "action": "ping", "target_type": "meter",
      "target_id": f"M{1 + m % 2}"} for h in range(9, 12) for m in range(0, 60, 7)]
    + [{"time": "2026-04-06 10:05", "account": "bob", "action": "remote_disconnect", "target_type": "meter",
        "target_id": "M3", "target_count": 1},
       {"time": "2026-04-06 11:00", "action": "status_change", "target_type": "breaker", "target_id": "CB1"},
       {"time": "2026-04-07 09:30", "account": "bob", "action": "fw_download", "target_type": "group",
        "target_id": "G1", "target_count": 40, "image_sha256": "aaa"},
       {"time": "2026-04-07 09:40", "account": "alice", "action": "breaker_open", "target_type": "breaker",
        "target_id": "CB1", "outcome": "failure"}],
    raw_file="baseline.log",
)

# After the baseline: known and new devices, a type the baseline never saw (recloser), new issuers,
# group commands with target counts (missing, negative), new and known images, bursts, failures.
SCAN = make_events([
    {"time": "2026-04-14 02:10", "account": "alice", "action": "ping", "target_type": "meter", "target_id": "M1"},
    {"time": "2026-04-14 02:11", "account": "mallory", "action": "remote_disconnect", "target_type": "meter",
     "target_id": "M1", "outcome": "failure"},
    {"time": "2026-04-14 02:12", "account": "mallory", "action": "remote_disconnect", "target_type": "meter",
     "target_id": "M1", "target_count": 3},
    {"time": "2026-04-14 03:59", "account": "bob", "action": "remote_connect", "target_type": "meter",
     "target_id": "M1"},
    {"time": "2026-04-14 02:20", "account": "bob", "action": "fw_download", "target_type": "group",
     "target_id": "G1", "target_count": 1830, "image_sha256": " BBB "},
    {"time": "2026-04-14 02:21", "account": "bob", "action": "fw_activate", "target_type": "group",
     "target_id": "G1", "target_count": -4, "image_sha256": "aaa"},
    {"time": "2026-04-14 02:22", "action": "status_change", "target_type": "recloser", "target_id": "R9"},
    {"time": "2026-04-14 02:23", "account": "alice", "action": "breaker_open", "target_type": "breaker",
     "target_id": "CB1"},
    {"time": "2026-04-14 02:24", "account": "alice", "action": "breaker_close", "target_type": "breaker",
     "target_id": "CB1"},
    {"time": "2026-04-14 02:25", "account": "eve", "action": "ping", "target_type": "meter", "target_id": "M99"},
    {"time": "2026-04-14 02:26", "account": "alice", "action": "on_demand_read", "target_type": "meter",
     "target_id": "M3"},
    {"time": "2026-04-14 02:27", "account": "alice", "action": "login_success"},  # no device: no window
    {"time": "2026-04-14 02:28", "account": "alice", "action": "setting_changed", "target_type": "setting",
     "target_id": "X"},  # a setting is no device
    {"time": "2026-04-15 05:00", "account": "alice", "action": "ping", "target_type": "meter", "target_id": "M2"},
], raw_file="scan.log")

CONFIG = FeatureConfig()


def general(events: pl.DataFrame, profiles: Profiles, config: FeatureConfig = CONFIG,
            earlier: pl.DataFrame | None = None) -> pl.DataFrame:
    # The in-memory engine, as scoring and training collect windows: the streaming engine's float
    # division can differ from it in the last bit.
    query = general_device_windows(events.lazy(), profiles, config, earlier, detail=False, overlap=False)
    return query.collect(engine="in-memory")


def lean(events: pl.DataFrame, profiles: Profiles, config: FeatureConfig = CONFIG,
         earlier: pl.DataFrame | None = None) -> pl.DataFrame:
    return device_windows(events.lazy(), profiles, config, earlier, detail=False).collect(engine="in-memory")


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    return build_profiles(BASELINE, CONFIG)


def test_same_windows_as_the_general_query(profiles: Profiles) -> None:
    with patch("detector.features.device.lean_device_windows", wraps=lean_device_windows) as builder:
        windows = lean(SCAN, profiles)
    assert builder.call_count == 1
    assert_frame_equal(windows, general(SCAN, profiles), check_exact=True)
    # The cases meant are all there: own, peers (a new meter), all (a type no baseline device has).
    assert set(windows.get_column("typical_source")) == {"own", "peers", "all"}
    assert windows.filter(pl.col("entity_id") == "G1").get_column("new_image_hash_count").to_list()[0] > 0
    assert windows.filter(pl.col("entity_id") == "M1").get_column("new_issuer_count").to_list()[0] > 0


def test_same_windows_with_earlier_activity_and_a_higher_bar(profiles: Profiles) -> None:
    earlier = pl.DataFrame({"entity_id": ["M1", "M99", "ZZ"],
                            "last_seen": [START + timedelta(days=7), START + timedelta(days=8), START]},
                           schema={"entity_id": pl.String, "last_seen": pl.Datetime("us", "UTC")})
    config = FeatureConfig(window="30m", burst="10m", min_baseline_events=3)
    profiles = build_profiles(BASELINE, config)
    windows = lean(SCAN, profiles, config, earlier)
    assert_frame_equal(windows, general(SCAN, profiles, config, earlier), check_exact=True)
    assert windows.get_column("previous_activity").null_count() < windows.height


def test_same_windows_without_typical_rows_or_any_baseline(profiles: Profiles) -> None:
    # A device with activity but no typical values (tables not aligned row for row), then no profiles at all.
    cut = replace(profiles, device_typical=profiles.device_typical.filter(pl.col("device_id") != "M1"))
    assert_frame_equal(lean(SCAN, cut), general(SCAN, cut), check_exact=True)
    empty = Profiles.empty()
    windows = lean(SCAN, empty)
    assert_frame_equal(windows, general(SCAN, empty), check_exact=True)
    assert set(windows.get_column("typical_source")) == {"none"}


def test_empty_slice_and_slice_without_devices(profiles: Profiles) -> None:
    for events in (SCAN.clear(), SCAN.filter(pl.col("target_id").is_null())):
        windows = lean(events, profiles)
        assert windows.height == 0
        assert_frame_equal(windows, general(events, profiles), check_exact=True)


def test_events_in_the_baseline_take_the_general_query(profiles: Profiles) -> None:
    # Leave-window-out applies: the lean builder is not used, and the table is the general query's.
    events = pl.concat([BASELINE, SCAN])
    overlapping = (general_device_windows(events.lazy(), profiles, CONFIG, None, detail=False, overlap=True)
                   .collect(engine="in-memory"))
    with patch("detector.features.device.lean_device_windows") as builder:
        assert_frame_equal(lean(events, profiles), overlapping, check_exact=True)
    assert not builder.called


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(event, max_size=40), cut=st.integers(0, 3 * 24 * 60),
       window=st.sampled_from([("1h", "5m"), ("1d", "1h")]))
def test_random_tables_same_windows(rows: list[dict], cut: int, window: tuple[str, str]) -> None:
    events = make_events(rows)
    config = FeatureConfig(window=window[0], burst=window[1])
    before = pl.col("time") < START + timedelta(minutes=cut)
    profiles = build_profiles(events.filter(before), config)
    after = events.filter(~before)
    assert_frame_equal(lean(after, profiles, config), general(after, profiles, config), check_exact=True)
