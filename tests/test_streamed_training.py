"""Training a slice at a time gives the model of training on everything at once.

The reference here is the training as it was before it streamed: profiles built from all the
(attributed) events, and each fold featurized whole against the profiles of everything before it.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from detector.api import scan as api_scan
from detector.api import train as api_train
from detector.attribution import attribute
from detector.config import Config
from detector.detection import TRAINING_FOLDS, train_slices
from detector.features import (
    ENTITY_KINDS,
    PROFILE_SCHEMAS,
    TAIL_FEATURES,
    build_features,
    build_profiles,
    feature_columns,
)
from detector.features.partial import PartialProfiles, merge
from detector.spill import EventSpill, in_memory_slices

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"
LABELS = json.loads((SAMPLE / "labels.json").read_text())
UNTIL = datetime.fromisoformat(LABELS["generator"]["baseline_until"])
CONFIG = Config()


@pytest.fixture(scope="module")
def baseline(sample_logs) -> pl.DataFrame:
    return sample_logs[0].filter(pl.col("time") < UNTIL)


def _reference_train(events: pl.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, pl.DataFrame]]:
    """The training windows and profiles of reading the whole baseline at once."""
    events = attribute(events)[0]
    profiles = build_profiles(events, CONFIG.features)
    start, end = profiles.baseline_start, profiles.baseline_end
    assert start is not None and end is not None
    cuts = [start + (end - start) * k / (TRAINING_FOLDS + 1) for k in range(1, TRAINING_FOLDS + 1)] + [None]
    windows: dict[str, list[pl.DataFrame]] = {kind: [] for kind in ENTITY_KINDS}
    for lower, upper in itertools.pairwise(cuts):
        part = events.filter(pl.col("time") >= lower)
        if upper is not None:
            part = part.filter(pl.col("time") < upper)
        built = build_features(part, build_profiles(events.filter(pl.col("time") < lower), CONFIG.features),
                               CONFIG.features)
        for kind in ENTITY_KINDS:
            windows[kind].append(built[kind].select(feature_columns(kind)).collect())
    return ({kind: pl.concat(frames).to_numpy() for kind, frames in windows.items()},
            {name: getattr(profiles, name) for name in PROFILE_SCHEMAS})


def test_partial_profiles_merged_slice_by_slice_equal_the_whole(baseline):
    events = attribute(baseline)[0]
    # Days, one of them cut again at an hour: pieces of whole windows, merged in time order.
    hour = datetime(2026, 3, 9, 13, tzinfo=UTC)
    pieces = []
    for _, _, day in in_memory_slices(events, timedelta(days=1)):
        frame = day.collect()
        pieces += [frame.filter(pl.col("time") < hour), frame.filter(pl.col("time") >= hour)]
    merged = None
    for piece in pieces:
        part = PartialProfiles.of(piece, CONFIG.features)
        merged = part if merged is None else merged.merged(part)
    assert merged is not None
    assert merged.finish() == build_profiles(events, CONFIG.features)
    assert PartialProfiles.of(events, CONFIG.features).finish() == build_profiles(events, CONFIG.features)
    # Several at once (training merges a few days at a time), the two halves of a day among them.
    parts = [PartialProfiles.of(piece, CONFIG.features) for piece in pieces]
    assert merge([merge(parts[:5]), *parts[5:9], merge(parts[9:])]).finish() == merged.finish()


def test_partial_profiles_up_to_a_cut_inside_a_window_equal_the_profiles_of_the_events_before_it(baseline):
    events = attribute(baseline)[0]
    cut = datetime(2026, 3, 9, 13, 17, 41, tzinfo=UTC)
    days = [day.collect() for start, _, day in in_memory_slices(events, timedelta(days=1)) if start < cut]
    merged = None
    for frame in [*days[:-1], days[-1].filter(pl.col("time") < cut)]:
        part = PartialProfiles.of(frame, CONFIG.features)
        merged = part if merged is None else merged.merged(part)
    assert merged is not None
    assert merged.finish() == build_profiles(events.filter(pl.col("time") < cut), CONFIG.features)


@pytest.fixture(scope="module")
def model(sample_model):
    """train(baseline, CONFIG): the same training test_detection checks, done once per worker."""
    assert sample_model.settings == CONFIG
    return sample_model


def test_streamed_training_fits_the_same_forests_on_the_same_windows(baseline, model):
    reference_windows, reference_tables = _reference_train(baseline)
    for name, table in reference_tables.items():
        assert model.tables[name].equals(table), name
    for kind in ENTITY_KINDS:
        expected = CONFIG.scoring.make_scorer().fit(reference_windows[kind], feature_columns(kind),
                                                    tail_features=TAIL_FEATURES[kind])
        scorer = model.scorers[kind]
        assert scorer.n_training_windows == reference_windows[kind].shape[0]
        np.testing.assert_array_equal(scorer.train_scores_, expected.train_scores_)
        for state in ("feature_quantiles_", "feature_median_", "tail_top_", "train_tail_", "train_combined_"):
            np.testing.assert_array_equal(getattr(scorer, state), getattr(expected, state), err_msg=state)
        probe = reference_windows[kind][::7]
        np.testing.assert_array_equal(scorer.combined(probe)[0], expected.combined(probe)[0])


def test_training_from_a_spill_day_by_day_equals_training_from_memory_in_one_piece(baseline, model, tmp_path):
    spill = EventSpill(tmp_path / "spill", timedelta(days=1))
    # Added out of order and in pieces, as parsing several files would.
    for part in reversed(baseline.with_columns(_p=pl.int_range(pl.len()) % 3).partition_by("_p", include_key=False)):
        spill.add(part)
    # Day by day (each slice alone), against the model of the whole month's few events as one group.
    streamed = train_slices(spill.slices(), CONFIG, group_events=0)
    in_memory = model
    assert streamed.metadata == in_memory.metadata
    for name in PROFILE_SCHEMAS:
        assert streamed.tables[name].equals(in_memory.tables[name]), name
    for kind in ENTITY_KINDS:  # every array of the fitted state, the forest's nodes among them
        expected = in_memory.scorers[kind].get_state()
        for name, array in streamed.scorers[kind].get_state().items():
            np.testing.assert_array_equal(array, expected[name], err_msg=f"{kind} {name}")


def test_train_of_log_files_learns_what_train_of_their_events_does(baseline, model):
    reports: list = []
    from_files = api_train(SAMPLE, baseline_until=UNTIL, reports=reports)
    from_events = model
    assert reports and all(report.error is None for report in reports)
    assert from_files.metadata["training_events"] == baseline.height
    for name in PROFILE_SCHEMAS:
        assert from_files.tables[name].equals(from_events.tables[name]), name
    for kind in ENTITY_KINDS:
        np.testing.assert_array_equal(from_files.scorers[kind].train_scores_, from_events.scorers[kind].train_scores_)


def test_scan_without_a_model_finds_what_train_then_scan_finds(model, sample_logs):
    learned = api_scan(SAMPLE, baseline_until=UNTIL)
    # The same files, already parsed: a scan of their events gives what a scan of them gives
    # (tests/test_runner.py, tests/test_spill.py).
    trained = api_scan(sample_logs[0], model, baseline_until=UNTIL)
    try:
        assert learned.model.metadata["learned_during_scan"] is True
        for kind in ENTITY_KINDS:
            np.testing.assert_array_equal(learned.model.scorers[kind].train_scores_, model.scorers[kind].train_scores_)
        # The ids differ only because the learned model has no model id; the rest is the same.
        different = ["finding_id", "model_id", "incident_id"]
        assert learned.df.height > 0
        assert learned.df.drop(different).equals(trained.df.drop(different))
    finally:
        learned.close()
        trained.close()


def test_partial_profiles_accumulated_on_disk_merge_to_the_whole(baseline, monkeypatch):
    from detector.features import partial

    monkeypatch.setattr(partial, "COMPACT_AFTER", 3)  # compacted on disk several times over the days
    events = attribute(baseline)[0]
    accumulated = partial.Accumulated()
    days = [day.collect() for _, _, day in in_memory_slices(events, timedelta(days=1))]
    assert len(days) > 2 * 3
    for day in days[:-1]:
        accumulated.add(PartialProfiles.of(day, CONFIG.features))
    folder = Path(accumulated._directory.name)
    assert len(list(folder.iterdir())) <= 3 + 1
    # A fold's history: everything added so far and a later piece not added.
    last = PartialProfiles.of(days[-1], CONFIG.features)
    assert accumulated.merged(last).finish() == build_profiles(events, CONFIG.features)
    accumulated.add(last)
    assert accumulated.merged().finish() == build_profiles(events, CONFIG.features)
    accumulated.close()
    assert not folder.exists()


def test_partial_profiles_compacted_before_each_history_merge_to_the_whole(baseline):
    # As training does at each fold's start: the parts so far compacted into one, then merged with a
    # piece of the next slice (the fold's history); a lone merged part is read as it is.
    from detector.features import partial

    events = attribute(baseline)[0]
    days = [day.collect() for _, _, day in in_memory_slices(events, timedelta(days=1))]
    assert len(days) > 4
    accumulated = partial.Accumulated()
    folder = Path(accumulated._directory.name)
    try:
        for k, day in enumerate(days):
            if k in (2, len(days) - 1):
                cut = day["time"].min() + (day["time"].max() - day["time"].min()) / 2
                accumulated.compact()
                assert len(list(folder.iterdir())) == 1
                before = PartialProfiles.of(day.filter(pl.col("time") < cut), CONFIG.features)
                history = events.filter(pl.col("time") < cut)
                assert accumulated.merged(before).finish() == build_profiles(history, CONFIG.features)
            accumulated.add(PartialProfiles.of(day, CONFIG.features))
        accumulated.compact()
        assert len(list(folder.iterdir())) == 1
        assert accumulated.merged().finish() == build_profiles(events, CONFIG.features)
    finally:
        accumulated.close()
    assert not folder.exists()


def test_training_without_enough_windows_raises_and_leaves_no_partials_on_disk(baseline, monkeypatch, tmp_path):
    # When the fit finds too few windows, the error comes through and the partial profiles and the
    # folds' windows on disk are removed all the same.
    import tempfile

    from detector.config import ScoringConfig
    from detector.detection import NoBaselineError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config = Config(scoring=ScoringConfig(min_training_windows=10**9))
    with pytest.raises(NoBaselineError, match="not enough baseline windows"):
        train_slices(in_memory_slices(baseline, timedelta(days=1)), config)
    assert list(tmp_path.iterdir()) == []
