"""Windows after the baseline take shortcuts (none of their events is in the baseline, so nothing is
left out): novelty looked up with ``is_in`` on the known keys, hour and weekday rarity computed once
per entity. They must give exactly the windows of the general, leave-window-out computation."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import detector.features.account as account_module
import detector.features.device as device_module
from detector.features import FeatureConfig, build_features, build_profiles
from detector.features.common import entity_of, flag_new, prepare, rarity, units_present
from tests.features.events import make_events

SAMPLE = Path(__file__).parent.parent.parent / "sample_logs"
UNTIL = datetime.fromisoformat(json.loads((SAMPLE / "labels.json").read_text())["generator"]["baseline_until"])
CONFIG = FeatureConfig()


@pytest.fixture(scope="module")
def split(sample_logs):  # type: ignore[no-untyped-def]
    events = sample_logs[0]
    baseline, scanned = events.filter(pl.col("time") < UNTIL), events.filter(pl.col("time") >= UNTIL)
    profiles = build_profiles(baseline, CONFIG)
    return profiles.restricted(scanned), scanned


@pytest.mark.parametrize("detail", [False, True])
def test_scanned_windows_equal_the_leave_window_out_computation(split, detail: bool,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    profiles, scanned = split
    shortcut = build_features(scanned, profiles, CONFIG, detail=detail)
    for module in (account_module, device_module):
        # As if some events were in the baseline: every per-window subtraction is made (of nothing).
        monkeypatch.setattr(module, "touches_baseline", lambda *args: True)
    general = build_features(scanned, profiles, CONFIG, detail=detail)
    for kind in ("account", "device"):
        fast, slow = pl.collect_all([shortcut[kind], general[kind]], engine="in-memory")
        assert fast.height > 100
        assert_frame_equal(fast, slow, check_exact=True)
    # The sample month's scanned part has what the shortcuts must get right.
    accounts = pl.collect_all([shortcut["account"]], engine="in-memory")[0]
    assert accounts["new_src_ip_events"].sum() > 0 and accounts["hour_rarity"].max() > 0.5


def test_novelty_shortcut_with_repeated_and_unused_baseline_rows() -> None:
    """Known tables may repeat a key (summed) or hold a row without a use (not known)."""
    events = make_events([
        {"time": "2026-04-14 02:10", "account": "alice", "src_ip": "10.0.0.1"},
        {"time": "2026-04-14 02:11", "account": "alice", "src_ip": "10.0.0.2"},
        {"time": "2026-04-14 02:12", "account": "alice", "src_ip": "10.0.0.3"},
        {"time": "2026-04-14 02:13", "account": "alice"},
        {"time": "2026-04-14 02:14", "account": "bob", "src_ip": "10.0.0.1"},
    ])
    known = pl.LazyFrame({"entity_id": ["alice", "alice", "alice"], "src_ip": ["10.0.0.1", "10.0.0.1", "10.0.0.2"],
                          "_known": [1, 2, 0]})
    everyone = known.select("src_ip", "_known")
    prepared = prepare(events.lazy(), entity_of("account"), CONFIG, None, None)
    flags = {"_own": known, "_any": everyone}
    fast, slow = (flag_new(prepared, "src_ip", flags, leave_window_out=overlap).sort("time")
                  .select("entity_id", "src_ip", "_own", "_any").collect() for overlap in (False, True))
    assert_frame_equal(fast, slow)
    assert fast["_own"].to_list() == [False, True, True, False, True]
    assert fast["_any"].to_list() == [False, True, True, False, False]


def test_rarity_once_per_entity_equals_once_per_window() -> None:
    events = make_events([{"time": f"2026-04-14 {h:02d}:{m:02d}", "account": a}
                          for a, hours in (("alice", (2, 9, 9, 14)), ("bob", (9, 10, 23))) for h in hours
                          for m in (5, 40)])
    histogram = pl.LazyFrame({"entity_id": ["alice", "alice", "bob"], "hour": [9, 14, 23], "_b": [10.0, 2.5, 1.0]},
                             schema={"entity_id": pl.String, "hour": pl.Int8, "_b": pl.Float64})
    prior = pl.LazyFrame({"hour": list(range(24)), "_p": [1 / 24] * 24},
                         schema={"hour": pl.Int8, "_p": pl.Float64}).with_columns(_p_total=pl.col("_p").sum())
    present = units_present(prepare(events.lazy(), entity_of("account"), CONFIG, None, None))
    once, per_window = (rarity(present, "hour", histogram, prior, leave_window_out=overlap)
                        .sort("entity_id", "window_start").collect() for overlap in (False, True))
    assert_frame_equal(once, per_window, check_exact=True)
    # alice at 02:00, an hour only everyone keeps: (0 + 24/24) against her 09:00 peak (10 + 24/24).
    assert once.height == 6 and once["_rarity"].max() == pytest.approx(1 - 1 / 11)
