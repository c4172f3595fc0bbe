"""A model's baseline profiles (``Model.profiles``) are built once, and what windows derive from them too,
in the first windows or ahead (``features.prepare``)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from detector.detection import lean_windows, profiles_of, score
from detector.errors import DetectorError
from detector.features import build_features, prepare
from detector.model_store import Model, load_model
from detector.pipeline import read_logs

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "sample_logs"
MODEL = ROOT / "models" / "default"
UNTIL = datetime.fromisoformat(json.loads((SAMPLE / "labels.json").read_text())["generator"]["baseline_until"])


@pytest.fixture(scope="module")
def scored() -> pl.DataFrame:
    """The sample's events after the default model's baseline."""
    events, _ = read_logs([SAMPLE])
    return events.filter(pl.col("time") >= UNTIL)


def test_a_model_builds_its_profiles_once() -> None:
    model = load_model(MODEL)
    assert model.profiles is model.profiles
    assert profiles_of(model) is model.profiles
    assert model.profiles.event_count == model.metadata["profiles"]["event_count"]


def test_a_model_without_a_profile_table_says_to_retrain() -> None:
    model = load_model(MODEL)
    trimmed = Model(training_span=model.training_span, scorers=model.scorers, config=model.config,
                    metadata=model.metadata, tables={k: v for k, v in model.tables.items() if k != "device_typical"})
    with pytest.raises(DetectorError, match="lacks the baseline table.*device_typical.*retrain"):
        _ = trimmed.profiles


def test_scoring_again_with_a_model_derives_nothing_again(scored: pl.DataFrame) -> None:
    model = load_model(MODEL)
    first = score(scored, model)
    derived = dict(model.profiles._derived)
    assert {"device_index", "account_peers", "device_peers", "account_hour_histogram"} <= derived.keys()
    again = score(scored, model)
    assert model.profiles._derived.keys() == derived.keys()
    assert all(model.profiles._derived[name] is table for name, table in derived.items())
    assert_frame_equal(again, first)
    assert first.height


def test_prepared_profiles_give_the_same_windows_and_leave_nothing_to_derive(scored: pl.DataFrame) -> None:
    fresh, prepared = load_model(MODEL), load_model(MODEL)
    assert prepare(prepared.profiles) is prepared.profiles
    derived = dict(prepared.profiles._derived)
    assert {"device_index", "account_peers", "device_peers", "account_hour_histogram"} <= derived.keys()

    lean = lean_windows(scored, prepared)
    detailed = {kind: frame.collect() for kind, frame in
                build_features(scored, prepared.profiles, prepared.settings.features).items()}
    # Nothing derived again, nothing new: the windows read what prepare computed.
    assert prepared.profiles._derived.keys() == derived.keys()
    assert all(prepared.profiles._derived[name] is table for name, table in derived.items())

    assert set(lean) == {"account", "device"} and all(frame.height for frame in lean.values())
    for kind, frame in lean_windows(scored, fresh).items():
        assert_frame_equal(lean[kind], frame)
    for kind, frame in build_features(scored, fresh.profiles, fresh.settings.features).items():
        assert_frame_equal(detailed[kind], frame.collect())
