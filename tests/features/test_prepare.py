"""A model's profiles prepared ahead (``features.prepare``): the same windows, nothing left to derive."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from detector.detection import lean_windows
from detector.features import build_features, prepare
from detector.model_store import load_model
from detector.pipeline import read_logs

ROOT = Path(__file__).parent.parent.parent
SAMPLE = ROOT / "sample_logs"
MODEL = ROOT / "models" / "default"
UNTIL = datetime.fromisoformat(json.loads((SAMPLE / "labels.json").read_text())["generator"]["baseline_until"])


@pytest.fixture(scope="module")
def scored() -> pl.DataFrame:
    """The sample's events after the default model's baseline."""
    events, _ = read_logs([SAMPLE])
    return events.filter(pl.col("time") >= UNTIL)


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
