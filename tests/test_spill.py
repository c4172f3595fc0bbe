"""Parsed events on disk by time slice (detector.spill), and scoring slice by slice (detector.slices)."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from detector import api
from detector.cli import main
from detector.detection import lean_windows, profiles_of, score
from detector.engines import local
from detector.features import Profiles, entity_of
from detector.model_store import load_model
from detector.schema import EVENT_SCHEMA
from detector.slices import score_slices
from detector.spill import EventSpill, grouped, in_memory_slices, slice_length

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "sample_logs"
MODEL = ROOT / "models" / "default"
UNTIL = datetime.fromisoformat(
    json.loads((SAMPLE / "labels.json").read_text())["generator"]["baseline_until"])


def _events(times: list[datetime]) -> pl.DataFrame:
    return pl.DataFrame({"time": times, "raw_line": list(range(1, len(times) + 1))}).with_columns(
        *[pl.lit(None, dtype).alias(name) for name, dtype in EVENT_SCHEMA.items() if name not in ("time", "raw_line")],
    ).with_columns(raw_file=pl.lit("x.log")).select(list(EVENT_SCHEMA)).cast(dict(EVENT_SCHEMA))


@pytest.mark.parametrize(("window", "expected"), [
    (timedelta(hours=1), timedelta(days=1)), (timedelta(hours=7), timedelta(hours=21)),
    (timedelta(minutes=5), timedelta(days=1)), (timedelta(days=2), timedelta(days=2)),
])
def test_a_slice_is_a_whole_number_of_windows_up_to_a_day(window, expected) -> None:
    assert slice_length(window) == expected and slice_length(window) % window == timedelta(0)


def test_spill_keeps_every_event_and_returns_slices_in_time_order(tmp_path) -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    late = _events([day + timedelta(days=2, hours=5), day + timedelta(hours=23, minutes=59)])
    early = _events([day + timedelta(hours=1), day + timedelta(days=2)])
    with EventSpill(tmp_path / "spill", timedelta(days=1)) as spill:
        spill.add(late)
        spill.add(early.clear())  # nothing to write
        spill.add(early)
        got = list(spill.slices())
        assert [start for start, _, _ in got] == [day, day + timedelta(days=2)]
        assert [count for _, count, _ in got] == [2, 2] and spill.events == 4
        for start, _, frame in got:
            times = frame.collect().get_column("time")
            assert times.min() >= start and times.max() < start + timedelta(days=1)
        everything = spill.scan().collect()
        assert everything.schema == EVENT_SCHEMA
        assert sorted(everything.get_column("time")) == sorted([*late.get_column("time"), *early.get_column("time")])
        memory = [(start, count) for start, count, _ in in_memory_slices(pl.concat([late, early]), spill.length)]
        assert memory == [(start, count) for start, count, _ in got]
    assert not (tmp_path / "spill").exists()


def test_parts_leave_out_empty_columns_and_read_back_in_the_event_schema(tmp_path) -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    events = _events([day + timedelta(hours=h) for h in (25, 1, 3, 49, 2)]).with_columns(
        account=pl.Series(["a", None, "b", None, None]))
    with EventSpill(tmp_path / "spill", timedelta(days=1)) as spill:
        spill.add(events)
        spill.add(_events([day + timedelta(hours=4)]))  # no account at all
        parts = sorted(spill.directory.glob("slice=*/*.parquet"))
        written = {tuple(pl.read_parquet_schema(p)) for p in parts}
        assert ("time", "account", "raw_file", "raw_line") in written and ("time", "raw_file", "raw_line") in written
        got = [frame.collect() for _, _, frame in spill.slices()]
        assert all(frame.schema == EVENT_SCHEMA for frame in got)
        # Out of time order, each slice keeps the events' order; the empty columns come back null.
        assert [f.get_column("raw_line").to_list() for f in got] == [[2, 3, 5, 1], [1], [4]]
        assert got[0].get_column("account").to_list() == [None, "b", None, None]
        assert got[1].get_column("account").to_list() == ["a"]
        assert spill.scan().collect().height == 6


def test_events_in_time_order_are_cut_into_slices_as_out_of_order_ones(tmp_path) -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    times = [day + timedelta(hours=h) for h in (1, 5, 23, 24, 30, 71)]
    cut = {}
    for name, order in (("sorted", times), ("shuffled", [times[i] for i in (3, 0, 5, 1, 4, 2)])):
        with EventSpill(tmp_path / name, timedelta(days=1)) as spill:
            spill.add(_events(order))
            cut[name] = [(start, n, frame.collect().sort("time")) for start, n, frame in spill.slices()]
    assert [(s, n) for s, n, _ in cut["sorted"]] == [(day, 3), (day + timedelta(days=1), 2), (day + timedelta(days=2), 1)]
    assert [(s, n) for s, n, _ in cut["sorted"]] == [(s, n) for s, n, _ in cut["shuffled"]]
    for (_, _, a), (_, _, b) in zip(cut["sorted"], cut["shuffled"], strict=True):
        assert a.get_column("time").equals(b.get_column("time"))


@pytest.mark.parametrize("files", [3, 600])
def test_each_slice_keeps_the_events_order_however_many_runs_of_time_order_they_come_in(tmp_path, files) -> None:
    # Files read together, each in time order over three days: a few runs of time order, or (600 files
    # of two events) more runs than are cut as views.
    day = datetime(2026, 3, 2, tzinfo=UTC)
    per_file = 1200 // files
    hours = [(i % per_file) * 71.5 / per_file + (i // per_file) * 0.0001 for i in range(1200)]
    events = _events([day + timedelta(hours=h) for h in hours])
    with EventSpill(tmp_path / "spill", timedelta(days=1)) as spill:
        spill.add(events)
        got = {start: frame.collect().get_column("raw_line").to_list() for start, _, frame in spill.slices()}
    for start, lines in got.items():
        expected = events.filter((pl.col("time") >= start) & (pl.col("time") < start + timedelta(days=1)))
        assert lines == expected.get_column("raw_line").to_list()
    assert sum(map(len, got.values())) == events.height
    assert len(got) == events.select((pl.col("time").dt.date()).n_unique()).item() > 1


@pytest.fixture(scope="module")
def sample(sample_logs) -> tuple[pl.DataFrame, object]:
    events, _ = sample_logs
    return events.filter(pl.col("time") >= UNTIL - timedelta(days=3)), load_model(MODEL)


def test_scoring_slice_by_slice_gives_the_findings_of_scoring_everything_at_once(sample) -> None:
    events, model = sample
    whole = score(events, model)
    sliced, scored = score_slices(in_memory_slices(events, timedelta(days=1)), model, group_events=0)
    assert scored == events.height and whole.height > 20
    assert sliced.equals(whole)


def test_slices_scored_in_groups_give_the_findings_of_each_slice_alone(sample) -> None:
    events, model = sample
    days = [count for _, count, _ in in_memory_slices(events, timedelta(days=1))]
    alone, _ = score_slices(in_memory_slices(events, timedelta(days=1)), model, group_events=0)
    # Days in twos or so (as many as fit the first two's events), and, by default, the days' few thousand
    # events all as one.
    pairs, _ = score_slices(in_memory_slices(events, timedelta(days=1)), model, group_events=days[0] + days[1])
    together, scored = score_slices(in_memory_slices(events, timedelta(days=1)), model)
    assert len(days) > 2 and sum(days) < 250_000 and scored == events.height
    assert pairs.equals(alone) and together.equals(alone)


def test_consecutive_slices_are_grouped_up_to_a_number_of_events() -> None:
    day, first = timedelta(days=1), datetime(2026, 3, 1, tzinfo=UTC)
    slices = [(first + i * day, n, pl.LazyFrame({"day": [i] * n})) for i, n in enumerate([5, 3, 4, 10, 1, 1])]
    groups = list(grouped(iter(slices), 8))
    # A group ends before the slice that would take it past 8 events; a larger slice stands alone.
    assert [(start, count) for start, count, _ in groups] == [
        (first, 8), (first + 2 * day, 4), (first + 3 * day, 10), (first + 4 * day, 2)]
    assert [events.collect()["day"].to_list() for _, _, events in groups] == [
        [0] * 5 + [1] * 3, [2] * 4, [3] * 10, [4, 5]]
    assert [count for _, count, _ in grouped(iter(slices), 0)] == [5, 3, 4, 10, 1, 1]
    assert list(grouped(iter([]), 8)) == []


def test_dormancy_carries_the_last_activity_of_earlier_slices(sample) -> None:
    _, model = sample
    known = model.tables["account_activity"].row(0, named=True)

    def previous(at: datetime, earlier: dict[str, datetime]) -> dict[str, datetime | None]:
        events = _events([at, at]).with_columns(account=pl.Series([known["account"], "newcomer"]))
        carried = {"account": pl.DataFrame({"entity_id": list(earlier), "last_seen": list(earlier.values())},
                                           schema={"entity_id": pl.String, "last_seen": EVENT_SCHEMA["time"]})}
        windows = lean_windows(events, model, earlier=carried)["account"]
        return dict(windows.select("entity_id", "previous_activity").iter_rows())

    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    seen = previous(at, {known["account"]: at - timedelta(hours=3), "newcomer": at - timedelta(days=1)})
    assert seen[known["account"]] == at - timedelta(hours=3)  # later than its baseline last_seen
    assert seen["newcomer"] == at - timedelta(days=1)  # unknown to the baseline
    assert previous(at, {})["newcomer"] is None
    # Inside the baseline period: its last_seen counts only when it lies before the window.
    older = {known["account"]: known["last_seen"] - timedelta(days=1)}
    assert previous(known["last_seen"] + timedelta(hours=1), older)[known["account"]] == known["last_seen"]
    assert previous(known["last_seen"], older)[known["account"]] == known["last_seen"] - timedelta(days=1)


def test_a_scan_leaves_no_parsed_events_behind(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    for path in sorted(SAMPLE.glob("*2026-03-2[67]*")):
        (logs / path.name).write_bytes(path.read_bytes())
    result = CliRunner().invoke(main, ["scan", str(logs), "--model", str(MODEL), "--out", str(tmp_path / "out"),
                                       "--quiet"])
    assert result.exit_code in (0, 1), result.output
    assert (tmp_path / "out" / "findings.parquet").exists()
    assert list((tmp_path / "tmp").iterdir()) == []
    # Also when scoring fails after parsing.
    def broken(*args, **kwargs):
        raise RuntimeError("scoring failed")
    monkeypatch.setattr(local, "score_slices", broken)
    with pytest.raises(RuntimeError):
        api.scan(logs, MODEL)
    assert list((tmp_path / "tmp").iterdir()) == []


# ---- the same findings however the work is cut (issue 17: speed must not move a finding) ----------


@pytest.fixture(scope="module")
def month(sample_logs) -> tuple[pl.DataFrame, object]:
    """The whole simulated month of sample_logs (baseline days included: leave-window-out is exercised)."""
    events, _ = sample_logs
    return events, load_model(MODEL)


def assert_same_findings(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Finding ids, severities and incident ids equal, in the same order; scores to 1e-9; every other
    column equal."""
    assert got.height == want.height > 100
    for column in ("finding_id", "severity", "incident_id"):
        assert got.get_column(column).to_list() == want.get_column(column).to_list(), column
    assert (got.get_column("score") - want.get_column("score")).abs().max() <= 1e-9
    assert got.drop("score").equals(want.drop("score"))


def test_profiles_cut_to_a_slices_devices_give_the_findings_of_the_whole_profiles(month, monkeypatch) -> None:
    events, model = month
    cut, scored = score_slices(in_memory_slices(events, timedelta(days=1)), model)
    assert scored == events.height
    with monkeypatch.context() as patched:
        patched.setattr(Profiles, "restricted", lambda self, events: self)  # the whole tables, as before
        whole, _ = score_slices(in_memory_slices(events, timedelta(days=1)), model)
    assert_same_findings(cut, whole)
    assert whole.filter(pl.col("severity") >= "medium").height > 10


def test_restricted_profiles_keep_the_slices_devices_and_derive_from_the_whole(month) -> None:
    events, model = month
    profiles = profiles_of(model)
    day = events.filter(pl.col("time").dt.date() == UNTIL.date())
    cut = profiles.restricted(day)
    devices = set(day.select(entity_of("device")).to_series().drop_nulls())
    assert 0 < cut.device_activity.height < profiles.device_activity.height
    assert set(cut.device_activity.get_column("device_id")) == devices & set(profiles.device_activity["device_id"])
    assert cut.device_issuers.equals(profiles.device_issuers.filter(pl.col("device_id").is_in(list(devices))))
    assert cut.account_targets.equals(profiles.account_targets.filter(pl.col("target_id").is_in(list(devices))))
    assert cut.account_activity.equals(profiles.account_activity)  # account tables stay whole
    # Asked first of the cut profiles, a derived table is still the whole's.
    devices_in = cut.derived("devices_in_test", lambda p: p.device_activity.lazy().select(pl.len()))
    assert devices_in.item() == profiles.device_activity.height
    assert cut.restricted(day.head(50)).derived("devices_in_test", lambda p: p.device_activity.lazy()).height == 1
    windows = lean_windows(day, model, profiles=cut)
    assert all(frame.equals(lean_windows(day, model, profiles=profiles)[kind]) for kind, frame in windows.items())
