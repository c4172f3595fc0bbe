"""Scoring a slice from state computed ahead (detector.slices), as the Spark engine does, without Spark."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from detector.activity import latest_activity
from detector.attribution import attribute
from detector.detection import profiles_of
from detector.model_store import Model, load_model
from detector.pipeline import parse_to_spill, plan_parse
from detector.signals import first_times
from detector.slices import (
    Carried,
    carried_created,
    carried_firsts,
    carried_sessions,
    created_accounts,
    ranked_findings,
    score_slice,
    score_slices,
    slice_events,
    slice_logons,
)
from detector.spill import EventSpill, slice_length

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "sample_logs"
MODEL = ROOT / "models" / "default"
UNTIL = datetime.fromisoformat(
    json.loads((SAMPLE / "labels.json").read_text())["generator"]["baseline_until"])


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Model, EventSpill]:
    """The default model and the sample logs parsed into a spill of its slices."""
    model = load_model(MODEL)
    spill = EventSpill(tmp_path_factory.mktemp("spill"), slice_length(model.settings.features.window_length))
    parse_to_spill(plan_parse([SAMPLE]), spill)
    return model, spill


def test_slices_scored_side_by_side_from_state_computed_ahead_match_the_scan(sample) -> None:
    model, spill = sample
    config = model.settings
    expected, scored = score_slices(spill.slices(), model, scored_from=UNTIL)

    profiles = profiles_of(model)
    order = sorted(spill.counts)
    events = {i: slice_events(spill.read_slice(i), UNTIL) for i in order}
    assert not events[order[0]].height  # slices before UNTIL are empty, as in the scan
    ends = {i: frame.get_column("time").max() if frame.height else None for i, frame in events.items()}
    logons = pl.concat([slice_logons(events[i]).with_columns(slice=pl.lit(i, pl.Int64)) for i in order])
    sessions = carried_sessions(logons, ends)
    assert sum(frame.height for frame in sessions.values() if frame is not None)  # sessions cross slices
    attributed = {i: attribute(events[i], sessions[i])[0] for i in order}
    latest = {i: latest_activity(attributed[i]) for i in order}
    created = pl.concat([created_accounts(attributed[i], profiles.restricted(attributed[i]), config.features.window)
                         .with_columns(slice=pl.lit(i, pl.Int64)) for i in order])
    created_before = carried_created(created, order)
    firsts = pl.concat([first_times(attributed[i], config.features.window).with_columns(slice=pl.lit(i, pl.Int64))
                        for i in order])
    firsts_before = carried_firsts(firsts, order)
    assert sum(frame.height for frame in firsts_before.values())  # firsts cross slices

    with tempfile.TemporaryDirectory() as work:
        parts = []
        for position, i in enumerate(order):
            last_seen = {}
            for kind, own in latest[i].items():
                before = [latest[j][kind] for j in order[:position]]
                if before:
                    last_seen[kind] = (pl.concat(before).group_by("entity_id").agg(pl.col("last_seen").max())
                                       .join(own.select("entity_id"), on="entity_id", how="semi"))
            found = score_slice(events[i], Carried(last_seen, sessions[i], created_before[i], firsts_before[i]), model, profiles)
            if found.height:
                parts.append(Path(work) / f"{position:06d}.parquet")
                found.write_parquet(parts[-1])
        got = ranked_findings(parts)
    assert expected.height and sum(frame.height for frame in events.values()) == scored
    assert got.equals(expected)


def test_slices_scored_in_two_runs_with_the_state_carried_between_them_match_one_run(sample) -> None:
    model, spill = sample
    slices = [(start, count, events) for start, count, events in spill.slices() if start >= UNTIL]
    assert len(slices) >= 3
    whole = Carried()
    expected, _ = score_slices(slices, model, carried=whole)

    # The nightly job's way: a first run, then a second one starting from what the first carried out.
    carried = Carried()
    first, _ = score_slices(slices[:2], model, carried=carried)
    assert carried.sessions is not None and carried.last_seen and carried.firsts.height
    second, _ = score_slices(slices[2:], model, carried=carried)
    later = expected.filter(pl.col("window_start") >= slices[2][0])
    assert later.height and first.height + second.height == expected.height
    # Incidents group what each run scored, so their ids follow the run.
    assert second.drop("incident_id").equals(later.drop("incident_id"))
    for name in ("created", "firsts", "sessions"):
        assert getattr(carried, name).equals(getattr(whole, name)), name
    assert carried.last_seen.keys() == whole.last_seen.keys()
    for kind, frame in whole.last_seen.items():
        assert carried.last_seen[kind].sort("entity_id").equals(frame.sort("entity_id")), kind
