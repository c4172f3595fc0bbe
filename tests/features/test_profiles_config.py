"""Profiles (build, Parquet round trip), configuration and the feature catalog."""

from __future__ import annotations

import json
from datetime import timedelta

import polars as pl
import pytest

from detector.errors import ConfigError, InputError
from detector.features import (
    FEATURE_BASELINE,
    FEATURE_DESCRIPTIONS,
    FEATURE_MEASURE,
    LOG1P_FEATURES,
    MEASURE_LABELS,
    PROFILE_SCHEMAS,
    FeatureConfig,
    Profiles,
    build_features,
    build_profiles,
    feature_columns,
    measures,
    parse_duration,
)
from detector.features.account import ACCOUNT_CONTEXT
from detector.features.device import DEVICE_CONTEXT
from detector.features.profiles import PROFILE_KEYS
from tests.features.events import make_events, t
from tests.features.test_account import BASELINE, CONFIG


def test_profile_tables() -> None:
    p = build_profiles(BASELINE.lazy(), CONFIG)
    assert (p.baseline_start, p.baseline_end, p.event_count) == (t("2026-04-06 09:00"), t("2026-04-07 10:04"), 17)
    assert p.baseline_days == pytest.approx(25.0667 / 24, abs=1e-3)
    for name, schema in PROFILE_SCHEMAS.items():
        assert getattr(p, name).schema == schema, name
        assert getattr(p, name).select(pl.struct(PROFILE_KEYS[name]).is_unique().all()).item(), name
    assert p.account_ips.rows() == [
        ("alice", "10.0.0.1", 15, t("2026-04-06 09:00"), t("2026-04-07 10:04")),
        ("bob", "198.51.100.9", 2, t("2026-04-06 09:00"), t("2026-04-06 09:30")),
    ]
    assert p.account_hours.filter(pl.col("account") == "alice").rows() == [("alice", 1, 9, 10), ("alice", 2, 10, 5)]
    assert p.device_issuers.filter(pl.col("device_id") == "G1").select("account", "events").rows() == [("bob", 1)]
    assert p.image_hashes.select("image_sha256", "events").rows() == [("aaa", 1)]
    typical = {r["account"]: {m: v for m, v in r.items() if v is not None and m != "account"}
               for r in p.account_typical.iter_rows(named=True)}
    assert typical["bob"] == {"events": 2.0, "authentication": 1.0, "firmware": 1.0, "targets": 1.0,
                              "devices": 40.0, "burst_commands": 1.0, "src_ips": 1.0, "src_hosts": 1.0}
    assert p.account_activity.select("account", "active_windows").rows() == [("alice", 2), ("bob", 1)]
    assert p.device_typical.filter(pl.col("device_id") == "G1").select("events", "devices", "commands").rows() == [
        (1.0, 40.0, 1.0)]
    devices = p.device_activity.select("device_id", "device_type").rows()
    assert devices == [("G1", "group"), ("M1", "meter"), ("M2", "meter"), ("M3", "meter"), ("M4", "meter"),
                       ("M5", "meter")]


def test_roles_are_inferred_from_behaviour() -> None:
    events = make_events([
        {"time": "2026-04-06 09:00", "account": "viewer"},
        {"time": "2026-04-06 09:01", "account": "viewer", "action": "logout"},
        {"time": "2026-04-06 09:00", "account": "admin"},
        {"time": "2026-04-06 09:00", "account": "admin", "action": "privileged_logon"},
        {"time": "2026-04-06 09:01", "account": "admin", "action": "privileged_logon"},
        {"time": "2026-04-06 09:02", "account": "admin", "action": "account_created"},
    ])
    roles = dict(build_profiles(events, CONFIG).account_activity.select("account", "role").rows())
    assert roles == {"admin": "privilege", "viewer": "authentication"}


def test_round_trip(tmp_path) -> None:
    p = build_profiles(BASELINE, CONFIG)
    p.write(tmp_path / "profiles")
    assert sorted(f.name for f in (tmp_path / "profiles").iterdir()) == sorted(
        [f"{n}.parquet" for n in PROFILE_SCHEMAS] + ["profiles.json"])
    back = Profiles.read(tmp_path / "profiles")
    assert back == p
    assert back.baseline_start == t("2026-04-06 09:00")
    empty = Profiles.empty()
    empty.write(tmp_path / "empty")
    assert Profiles.read(tmp_path / "empty") == empty
    assert not empty.has_baseline and empty.baseline_days == 0.0


def test_read_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="cannot read baseline profiles"):
        Profiles.read(tmp_path)
    build_profiles(BASELINE, CONFIG).write(tmp_path)
    (tmp_path / "image_hashes.parquet").unlink()
    with pytest.raises(InputError, match="image_hashes"):
        Profiles.read(tmp_path)
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "image_hashes.parquet")
    with pytest.raises(InputError, match="expected"):
        Profiles.read(tmp_path)
    p = build_profiles(BASELINE, CONFIG)
    pl.concat([p.account_ips, p.account_ips]).write_parquet(tmp_path / "account_ips.parquet")
    p.image_hashes.write_parquet(tmp_path / "image_hashes.parquet")
    with pytest.raises(InputError, match="repeats a key"):
        Profiles.read(tmp_path)
    scalars = json.loads((tmp_path / "profiles.json").read_text())
    (tmp_path / "profiles.json").write_text(json.dumps(scalars | {"version": 99}))
    with pytest.raises(InputError, match="retrain"):
        Profiles.read(tmp_path)


def test_profiles_of_no_events() -> None:
    p = build_profiles(make_events([]), CONFIG)
    assert not p.has_baseline and p.event_count == 0
    assert all(getattr(p, n).height == 0 for n in PROFILE_SCHEMAS)


def test_config_defaults_and_from_dict() -> None:
    c = FeatureConfig()
    assert (c.window, c.burst, c.window_length, c.burst_length) == ("1h", "5m", timedelta(hours=1),
                                                                    timedelta(minutes=5))
    assert FeatureConfig.from_dict({"window": "1d", "burst": "15m"}) == FeatureConfig(window="1d", burst="15m")
    assert FeatureConfig.from_dict({}) == c


@pytest.mark.parametrize("table, message", [
    ({"windw": "1h"}, "unknown feature setting"),
    ({"window": "1mo"}, "invalid duration"),
    ({"window": "0h"}, "positive"),
    ({"window": "1h", "burst": "7m"}, "must divide"),
    ({"window": "1h", "burst": "2h"}, "must divide"),
    ({"evidence_cap": 0}, "evidence_cap"),
    ({"context_cap": "5"}, "context_cap"),
    ({"min_baseline_events": 0}, "min_baseline_events"),
])
def test_config_errors(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FeatureConfig.from_dict(table)


def test_window_must_match_the_profiles() -> None:
    profiles = build_profiles(BASELINE, CONFIG)
    with pytest.raises(ConfigError, match="'1h' windows"):
        build_features(BASELINE, profiles, FeatureConfig(window="1d", burst="1h"))
    build_features(BASELINE, profiles, FeatureConfig(window="60m"))  # the same length, spelled differently


def test_parse_duration() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1w") == timedelta(days=7)
    with pytest.raises(ConfigError):
        parse_duration("1 h")


def test_catalog() -> None:
    for kind in ("account", "device"):
        names = feature_columns(kind)
        assert len(names) == len(set(names))
        assert set(names) <= set(FEATURE_DESCRIPTIONS), set(names) - set(FEATURE_DESCRIPTIONS)
    used = set(feature_columns("account")) | set(feature_columns("device"))
    assert set(FEATURE_DESCRIPTIONS) == used  # no description for a feature nobody computes
    assert LOG1P_FEATURES <= used
    assert {"dormancy_days", "new_src_ip_events", "new_issuer_count"} <= LOG1P_FEATURES
    assert not {"failure_ratio", "hour_rarity", "excess_events"} & LOG1P_FEATURES
    context = set(ACCOUNT_CONTEXT) | set(DEVICE_CONTEXT)
    assert set(FEATURE_BASELINE) <= used and set(FEATURE_BASELINE.values()) <= context
    # Every excess feature names its measure, and every feature is explained one way or another.
    assert set(FEATURE_MEASURE) == {f for f in used if f.startswith("excess_")}
    assert set(FEATURE_MEASURE.values()) == set(measures("account")) | set(measures("device"))
    assert set(MEASURE_LABELS) >= set(FEATURE_MEASURE.values())
    assert used - set(FEATURE_MEASURE) - set(FEATURE_BASELINE) - LOG1P_FEATURES == {"failure_ratio"}
    with pytest.raises(ValueError, match="unknown entity kind"):
        feature_columns("server")  # type: ignore[arg-type]
