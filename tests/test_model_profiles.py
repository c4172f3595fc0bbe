"""A model's baseline profiles (``Model.profiles``) are built once, and what windows derive from them too."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from detector.detection import profiles_of, score
from detector.errors import DetectorError
from detector.model_store import Model, load_model
from detector.pipeline import read_logs

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "sample_logs"
MODEL = ROOT / "models" / "default"
UNTIL = datetime.fromisoformat(json.loads((SAMPLE / "labels.json").read_text())["generator"]["baseline_until"])


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


def test_scoring_again_with_a_model_derives_nothing_again() -> None:
    events, _ = read_logs([SAMPLE])
    day = events.filter(pl.col("time") >= UNTIL)
    model = load_model(MODEL)
    first = score(day, model)
    derived = dict(model.profiles._derived)
    assert {"device_index", "account_peers", "device_peers", "account_hour_histogram"} <= derived.keys()
    again = score(day, model)
    assert model.profiles._derived.keys() == derived.keys()
    assert all(model.profiles._derived[name] is table for name, table in derived.items())
    assert_frame_equal(again, first)
    assert first.height
