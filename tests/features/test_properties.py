"""Random small event tables never crash the feature stage and keep its invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import polars as pl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from detector.features import DEVICE_TARGET_TYPES, FeatureConfig, build_features, build_profiles, feature_columns
from detector.features.common import touches_baseline
from detector.schema import ACTIONS, OUTCOMES, TARGET_TYPES
from tests.features.events import make_events

START = datetime(2026, 4, 6, tzinfo=UTC)

event = st.fixed_dictionaries({
    # Whole minutes across three days, plus exact hour boundaries now and then.
    "time": st.integers(0, 3 * 24 * 60).map(lambda m: START + timedelta(minutes=m)),
    "account": st.one_of(st.none(), st.sampled_from(["alice", "bob", "svc_read"])),
    "src_ip": st.one_of(st.none(), st.sampled_from(["10.0.0.1", "10.0.0.2", "203.0.113.77"])),
    "src_host": st.one_of(st.none(), st.sampled_from(["WS1", "JUMP01"])),
    "action": st.sampled_from(ACTIONS),
    "outcome": st.sampled_from(OUTCOMES),
    "target_type": st.one_of(st.none(), st.sampled_from(TARGET_TYPES)),
    "target_id": st.one_of(st.none(), st.sampled_from(["M1", "M2", "G1", "CB1"])),
    "target_count": st.one_of(st.none(), st.integers(-5, 5000)),
    "image_sha256": st.one_of(st.none(), st.sampled_from(["aaa", "BBB", "ccc"])),
})

# An event with only its time and account to vary.
_QUIET = {"src_ip": None, "src_host": None, "action": "other", "outcome": "success", "target_type": None,
          "target_id": None, "target_count": None, "image_sha256": None}

OWN_HISTORY = ["new_src_ip_events", "new_src_host_events", "new_action_count", "new_issuer_count", "hour_rarity",
               "weekday_rarity"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(event, max_size=40), cut=st.integers(0, 3 * 24 * 60),
       window=st.sampled_from([("1h", "5m"), ("30m", "10m"), ("1d", "1h")]), cap=st.integers(1, 4))
def test_random_tables_keep_invariants(rows: list[dict], cut: int, window: tuple[str, str], cap: int) -> None:
    events = make_events(rows)
    config = FeatureConfig(window=window[0], burst=window[1], evidence_cap=cap, context_cap=cap)
    # The baseline is a prefix of the same events, so windows before the cut are training windows.
    profiles = build_profiles(events.filter(pl.col("time") < START + timedelta(minutes=cut)), config)
    frames = {kind: lazy.collect() for kind, lazy in build_features(events.lazy(), profiles, config).items()}

    expected = {
        "account": events.filter(pl.col("account").is_not_null()).height,
        "device": events.filter(pl.col("target_type").is_in(DEVICE_TARGET_TYPES)
                                & pl.col("target_id").is_not_null()).height,
    }
    for kind, frame in frames.items():
        features = feature_columns(kind)  # type: ignore[arg-type]
        assert frame.get_column("event_count").sum() == expected[kind]
        assert frame.select("entity_id", "window_start").is_unique().all()
        assert frame.select("entity_id", "window_start").equals(frame.sort("entity_id", "window_start").select(
            "entity_id", "window_start"))
        assert all(frame.schema[f] == pl.Float64 for f in features)
        values = frame.select(features)
        assert values.null_count().sum_horizontal().item() == 0
        assert values.select(pl.all().is_finite().all()).row(0) == (True,) * len(features)
        assert frame.select(
            (pl.col("window_start") <= pl.col("first_time")) & (pl.col("first_time") <= pl.col("last_time"))
            & (pl.col("last_time") < pl.col("window_end"))
        ).to_series().all()
        assert frame.select(pl.col("evidence").list.len() == pl.min_horizontal("event_count", pl.lit(cap))
                            ).to_series().all()
        assert frame.select(pl.col("failure_ratio").is_between(0, 1)).to_series().all()
        excess = [f for f in features if f.startswith("excess_")]
        assert values.select((pl.min_horizontal(excess) >= 0).all()).item() in (True, None)
        counted = frame.get_column("counts").struct.field("events")
        assert counted.equals(frame.get_column("event_count"), check_names=False)
        assert set(frame.get_column("typical_source")) <= {"own", "peers", "all", "none"}
        own = frame.get_column("typical_source") == "own"
        assert own.equals(frame.get_column("has_baseline"), check_names=False)
        cold = frame.filter(~pl.col("has_baseline"))
        for name in (n for n in OWN_HISTORY if n in features):
            assert cold.get_column(name).abs().sum() == 0, name
        if kind == "account":
            assert frame.select(pl.col("hour_rarity", "weekday_rarity").is_between(0, 1).all()).row(0) == (True, True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(event, min_size=1, max_size=40), cut=st.integers(1, 3 * 24 * 60))
# One account after the cut: its shares are divided by a peak polars broadcasts.
@example(rows=[{**_QUIET, "time": START + timedelta(minutes=minute), "account": account}
               for account, minute in ((None, 0), ("bob", 0), ("alice", 60), ("alice", 4320))], cut=61)
def test_scanned_windows_skip_leaving_themselves_out_without_changing(rows: list[dict], cut: int) -> None:
    # Windows after the baseline hold none of its events, so leave-window-out, which the builders
    # skip for them, would subtract nothing: forcing it on must give the same windows.
    events = make_events(rows)
    config = FeatureConfig()
    before = pl.col("time") < START + timedelta(minutes=cut)
    profiles = build_profiles(events.filter(before), config)
    after = events.filter(~before)
    skipped = {kind: lazy.collect() for kind, lazy in build_features(after.lazy(), profiles, config).items()}
    with patch("detector.features.account.touches_baseline", return_value=True), \
            patch("detector.features.device.touches_baseline", return_value=True):
        forced = {kind: lazy.collect() for kind, lazy in build_features(after.lazy(), profiles, config).items()}
    for kind, frame in skipped.items():
        # To the last bits but one: where a frame holds a single entity, polars divides by its
        # broadcast peak share through the reciprocal, so one path can be an ulp off the other.
        assert_frame_equal(frame, forced[kind], check_exact=False, rel_tol=1e-12, abs_tol=1e-15)
    assert touches_baseline(events.lazy(), profiles.baseline_start, profiles.baseline_end) == profiles.has_baseline
    assert not touches_baseline(after.lazy(), profiles.baseline_start, profiles.baseline_end)
