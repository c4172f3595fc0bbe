"""The typical values of merged partial profiles: medians from (value, windows) counts."""

from __future__ import annotations

import numpy as np
import polars as pl

from detector.features.catalog import DEVICE_MEASURES
from detector.features.partial import _summed_counts, _typical, _typical_of_codes


def test_typical_values_are_the_medians_of_the_windows_the_counts_stand_for():
    rng = np.random.default_rng(7)
    rows = []
    # Entities with one value, values of equal and unequal windows, even and odd totals, and measures
    # they never had (null); the rows shuffled, as a merge's group-by leaves them.
    for entity in range(60):
        for measure in rng.choice(len(DEVICE_MEASURES), size=int(rng.integers(1, 6)), replace=False):
            values = rng.choice(np.arange(1, 40), size=int(rng.integers(1, 5)), replace=False)
            rows += [(f"d{entity:03d}", int(measure), int(v), int(rng.integers(1, 4))) for v in values]
    rows += [("even", 0, 2, 1), ("even", 0, 10, 1), ("split", 0, 3, 2), ("split", 0, 9, 2), ("split", 0, 4, 1)]
    values = pl.DataFrame(rows, schema={"entity_id": pl.String, "measure": pl.UInt8, "value": pl.Int64,
                                        "windows": pl.Int64}, orient="row").sample(fraction=1.0, shuffle=True, seed=3)

    wide, windows = pl.collect_all(_typical(values.lazy(), "device"))

    expected = (values.with_columns(pl.col("value").repeat_by("windows")).explode("value")
                .group_by("entity_id", "measure").agg(pl.col("value").median()))
    assert wide.columns == ["entity_id", *DEVICE_MEASURES]
    assert wide.height == values["entity_id"].n_unique()
    got = {(row["entity_id"], i): row[name] for row in wide.iter_rows(named=True)
           for i, name in enumerate(DEVICE_MEASURES)}
    want = {(entity, measure): median for entity, measure, median in expected.iter_rows()}
    assert {key: value for key, value in got.items() if value is not None} == want
    assert got[("even", 0)] == 6.0 and got[("split", 0)] == 4.0
    events = DEVICE_MEASURES.index("events")
    assert dict(windows.iter_rows()) == dict(values.filter(pl.col("measure") == events)
                                             .group_by("entity_id").agg(pl.col("windows").sum()).iter_rows())


def test_typical_values_of_codes_are_those_of_names():
    rng = np.random.default_rng(11)
    rows = []
    for entity in range(80):
        for measure in rng.choice(len(DEVICE_MEASURES), size=int(rng.integers(1, 6)), replace=False):
            values = rng.choice(np.arange(1, 60), size=int(rng.integers(1, 5)), replace=False)
            rows += [(entity, int(measure), int(v), int(rng.integers(1, 4))) for v in values]
    # A value too large to pack with the others: sorted column by column instead.
    rows += [(80, 0, 2**60, 1), (80, 0, 3, 2), (80, 1, 7, 1)]
    for huge in (False, True):
        coded = pl.DataFrame(rows[:-3] if not huge else rows, schema={
            "entity_id": pl.UInt32, "measure": pl.UInt8, "value": pl.Int64, "windows": pl.Int64},
            orient="row").sample(fraction=1.0, shuffle=True, seed=5)
        named = coded.with_columns(pl.concat_str([pl.lit("d"), pl.col("entity_id").cast(pl.String).str.zfill(3)]).alias("entity_id"))

        typical, windows = _typical_of_codes(coded, "device")
        want_typical, want_windows = pl.collect_all(_typical(named.lazy(), "device"))

        def by_name(frame: pl.DataFrame) -> pl.DataFrame:
            return (frame.with_columns(pl.concat_str([pl.lit("d"), pl.col("entity_id").cast(pl.String).str.zfill(3)])
                                       .alias("entity_id")).sort("entity_id"))

        assert by_name(typical).equals(want_typical.sort("entity_id"))
        assert by_name(windows).equals(want_windows.sort("entity_id"))
    assert typical.filter(pl.col("entity_id") == 80)["events"].item() == 3.0


def test_summed_counts_sum_equal_keys_in_order():
    rng = np.random.default_rng(3)
    n = 500
    frame = pl.DataFrame({"entity_id": rng.integers(0, 20, n).astype(np.uint32),
                          "measure": rng.integers(0, 4, n).astype(np.uint8),
                          "value": rng.integers(1, 5, n).astype(np.int64),
                          "windows": rng.integers(1, 3, n).astype(np.int64)})
    want = frame.group_by("entity_id", "measure", "value").agg(pl.col("windows").sum()).sort("entity_id", "measure", "value")
    assert _summed_counts(frame).equals(want)
    huge = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(2**62).otherwise("value").alias("value"))
    assert _summed_counts(huge).equals(huge.group_by("entity_id", "measure", "value").agg(pl.col("windows").sum())
                                       .sort("entity_id", "measure", "value"))
    assert _summed_counts(frame.head(0)).height == 0


def test_device_tables_of_runs_equal_the_profiles_built_at_once():
    """Edge cases of the device events counted over sorted runs: issuers missing, several issuers of a
    window, a group reaching many devices, bursts of control commands, failures, a setting changed on a
    device, devices sorting before and after each other by name; merged in two parts and whole."""
    from datetime import UTC, datetime, timedelta

    from detector.attribution import attribute
    from detector.features import build_profiles
    from detector.features.config import FeatureConfig
    from detector.features.partial import PartialProfiles, merge
    from detector.schema import ACTION_CATEGORY, EVENT_SCHEMA

    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    rng = np.random.default_rng(9)
    actions = ["remote_disconnect", "remote_connect", "ping", "fw_download", "on_demand_read", "status_change",
               "setting_changed"]
    rows = []
    for i in range(600):
        action = str(rng.choice(actions))
        device = str(rng.choice(["MTR-2", "MTR-10", "mtr-1", "COL-7", "FEEDER_A"]))
        rows.append({
            "time": start + timedelta(seconds=int(rng.integers(0, 3 * 86_400))),
            "account": None if rng.random() < 0.2 else str(rng.choice(["ops1", "ops2", "svc_hes"])),
            "action": action, "category": ACTION_CATEGORY[action],
            "outcome": "failure" if rng.random() < 0.1 else "success",
            "target_type": "group" if device == "FEEDER_A" else "meter", "target_id": device,
            "target_count": int(rng.integers(1, 50_000)) if device == "FEEDER_A" else None,
            "raw_file": "x.log", "raw_line": i})
    events = attribute(pl.DataFrame(rows).with_columns(
        *[pl.lit(None, dtype).alias(name) for name, dtype in EVENT_SCHEMA.items() if name not in rows[0]])
        .select(EVENT_SCHEMA.names()).cast(EVENT_SCHEMA).sort("time"))[0]
    config = FeatureConfig()
    cut = start + timedelta(days=1, hours=5)
    parts = [PartialProfiles.of(events.filter(pl.col("time") < cut), config),
             PartialProfiles.of(events.filter(pl.col("time") >= cut), config)]
    whole = build_profiles(events, config)
    assert whole.device_typical.height == 5
    assert merge(parts).finish() == whole
    assert PartialProfiles.of(events, config).finish() == whole
    assert PartialProfiles.of(events.head(0), config).finish() == build_profiles(events.head(0), config)
