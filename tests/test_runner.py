"""The scan runner and its engines: the same findings whichever way the stages are run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from detector import api, pipeline, runner
from detector.engines import Engine, engine_named
from detector.engines.local import LocalEngine
from detector.errors import DetectorError, InputError
from detector.lazy_sklearn import NUMPY_WALK_ROWS
from detector.model_store import load_model
from detector.spill import EventSpill
from tests.conftest import recording_spills

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "sample_logs"
MODEL = ROOT / "models" / "default"


class Recording(LocalEngine):
    """The local engine under another name, noting what it was given."""

    name = "recording"

    def __init__(self) -> None:
        self.scored: list[object] = []
        self.closed = False

    def score(self, slices, model, config, **kwargs):  # type: ignore[no-untyped-def, override]
        self.scored.append(slices)
        return super().score(slices, model, config, **kwargs)

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def sample() -> tuple[pl.DataFrame, object]:
    # Two days of the sample's files: enough for findings, and quick to parse.
    files = sorted(p for day in ("2026-03-27", "2026-03-28") for p in SAMPLE.glob(f"*{day}*"))
    events, _ = api.read_logs(files)
    return events, load_model(MODEL)


def test_engines_by_name() -> None:
    assert isinstance(engine_named("local"), LocalEngine)
    with pytest.raises(DetectorError, match="unknown engine 'dask'; known: local, spark"):
        engine_named("dask")


def test_a_caller_made_engine_gives_the_same_findings_and_stays_open(sample) -> None:
    events, model = sample
    plain = runner.scan(events, model)
    assert plain.df.height > 0
    engine = Recording()
    assert isinstance(engine, Engine)  # structurally: what the runner needs
    other = runner.scan(events, model, engine=engine)
    assert_frame_equal(other.df, plain.df)
    assert other.settings == model.settings and not engine.closed
    # Not the local engine: in-memory events are spilled to disk first, as a cluster engine reads files.
    assert len(engine.scored) == 1 and isinstance(engine.scored[0], EventSpill)
    other.close()
    assert not engine.scored[0].directory.exists()


def test_the_stages_compose_into_the_scan(sample) -> None:
    events, model = sample
    engine = LocalEngine()
    length = timedelta(days=1)
    scanned = runner.take_events(events.lazy(), length)
    assert scanned.total == events.height and scanned.spill is None
    found_model, notes = runner.baseline(scanned.events, model, None, None, None)
    assert found_model is model and notes == []  # days after the model's baseline: nothing to warn about
    frame, scored = runner.score(scanned, engine, model, None, min_severity="low", scored_from=None, progress=None)
    assert scored == events.height
    assert_frame_equal(api.Findings(frame).df, runner.scan(events, model).df)


def test_one_read_logs_refuses_an_input_without_log_files(tmp_path) -> None:
    assert api.read_logs is pipeline.read_logs is runner.read_logs
    (tmp_path / "README.md").write_text("not a log")
    with pytest.raises(InputError, match="no log files found"):
        api.read_logs(tmp_path)
    with pytest.raises(InputError, match="no log files found"):
        api.scan(tmp_path, load_model(MODEL))


def test_saved_findings_are_read_back_whole_or_refused(tmp_path) -> None:
    from detector.findings import FINDINGS_SCHEMA, write_findings
    from detector.saved import read_saved

    write_findings(pl.DataFrame(schema=FINDINGS_SCHEMA), tmp_path)
    saved = read_saved(tmp_path)
    assert saved.findings.columns == list(FINDINGS_SCHEMA) and saved.incidents is not None
    assert saved.evidence is None and saved.timelines is None
    assert read_saved(tmp_path / "findings.parquet", incidents=False).incidents is None
    (tmp_path / "evidence.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="cannot read evidence"):
        read_saved(tmp_path)
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "findings.parquet")
    with pytest.raises(InputError, match="not a findings table"):
        read_saved(tmp_path)


def test_spill_dir_holds_the_spill_and_is_left_as_it_was(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from detector.cli import main

    files = [str(p) for p in sorted(SAMPLE.glob("*2026-03-27*"))]
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "someone-elses.txt").write_text("kept")
    plain = CliRunner().invoke(main, ["scan", *files, "--model", str(MODEL), "--out", str(tmp_path / "plain"), "-q"])
    made = recording_spills(monkeypatch)
    result = CliRunner().invoke(main, ["scan", *files, "--model", str(MODEL), "--out", str(tmp_path / "spilled"),
                                       "-q", "--spill-dir", str(shared)])
    assert result.exit_code == plain.exit_code and result.exit_code in (0, 1), result.output
    assert len(made) == 1 and made[0].directory.parent == shared and made[0].events > 0
    assert sorted(p.name for p in shared.iterdir()) == ["someone-elses.txt"]  # the scan's subdirectory removed
    assert_frame_equal(pl.read_parquet(tmp_path / "spilled" / "findings.parquet"),
                       pl.read_parquet(tmp_path / "plain" / "findings.parquet"))
    file_given = CliRunner().invoke(main, ["train", str(SAMPLE), "--model-dir", str(tmp_path / "m2"),
                                           "--spill-dir", str(shared / "someone-elses.txt")])
    assert file_given.exit_code == 2 and "--spill-dir" in file_given.output


def _store(root: Path, events: pl.DataFrame, batch: str) -> list[str]:
    """*events* written as a nightly event store's parts of one batch (day=D/part-BATCH.parquet)."""
    days = []
    for (day,), part in events.with_columns(_day=pl.col("time").dt.date()).partition_by(
            "_day", as_dict=True, include_key=False).items():
        (root / f"day={day}").mkdir(parents=True, exist_ok=True)
        part.write_parquet(root / f"day={day}" / f"part-{batch}.parquet")
        days.append(str(day))
    return sorted(days)


def test_an_event_store_is_scanned_as_the_events_it_holds(sample, tmp_path) -> None:
    events, model = sample
    store = tmp_path / "events"
    _store(store, events, "b1")
    plain = runner.scan(events, model)
    stored = runner.scan(store, model)
    try:
        assert plain.df.height and stored.events_scored == events.height
        assert_frame_equal(stored.df, plain.df)
        assert stored.reports == [] and stored.rejects.height == 0
    finally:
        stored.close()
    # The same learned from it: train on the store gives the model a train on the events gives.
    from detector.model_store import save_model
    save_model(runner.train(store), tmp_path / "from-store")
    save_model(api.train(events), tmp_path / "from-events")
    assert load_model(tmp_path / "from-store").model_id == load_model(tmp_path / "from-events").model_id


def test_a_nightly_state_is_read_as_its_committed_batches(sample, tmp_path) -> None:
    import json

    from detector.event_store import event_store_of
    events, _ = sample
    state = tmp_path / "state"
    days = _store(state / "events", events.head(1000), "committed")
    _store(state / "events", events.tail(10), "crashed")  # a batch a killed run left uncommitted
    (state / "state.json").write_text(json.dumps({"version": 1, "batches": {"committed": {"days": days}}}))
    for given in (state, state / "events"):
        found = event_store_of([given])
        assert found is not None and found.directory == state / "events"
        assert [p.name for p in found.parts] == ["part-committed.parquet"] * len(days)
    with pytest.raises(InputError, match="give one store, or log files, not both"):
        event_store_of([state, SAMPLE])
    with pytest.raises(InputError, match="apply to log files only"):
        runner.scan(state, load_model(MODEL), format="cef")
    assert event_store_of([SAMPLE]) is None
    (tmp_path / "bad" / "day=2026-03-02").mkdir(parents=True)
    (tmp_path / "bad" / "day=2026-03-02" / "part-x.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match=r"part-x.parquet: not a readable Parquet part"):
        runner.scan(tmp_path / "bad", load_model(MODEL))
    assert not list((Path(os.environ["TMPDIR"])).glob("ami-detector-spill-*"))  # removed on failure


def test_train_sample_caps_the_training_windows_reproducibly(tmp_path, monkeypatch) -> None:
    import json

    import numpy as np
    from click.testing import CliRunner

    from detector.cli import main
    from detector.detection import _sampled
    from detector.scoring import TrainingColumns
    made = recording_spills(monkeypatch)
    fresh = tmp_path / "new" / "spill"  # --spill-dir: a directory that does not exist yet is made (and kept, empty)
    # The sample's first eight days (its baseline ends within the last): windows enough to cap.
    week = [str(p) for p in sorted(SAMPLE.iterdir()) if p.suffix != ".md" and "2026-03-0" in p.name]
    result = CliRunner().invoke(main, ["train", *week, "--model-dir", str(tmp_path / "b"), "--json",
                                       "--baseline-until", "2026-03-09", "--train-sample", "300",
                                       "--spill-dir", str(fresh)])
    assert result.exit_code == 0, result.output
    assert made[-1].directory.parent == fresh and list(fresh.iterdir()) == []
    summary = json.loads(result.stdout)
    model = load_model(tmp_path / "b")
    # The same rows each time for one seed, in their order; others for another seed.
    rows = TrainingColumns.of(np.arange(1000.0).reshape(-1, 1))
    first, again, other = (_sampled(rows, 50, seed).column(0) for seed in (0, 0, 1))
    assert first.tolist() == again.tolist() != other.tolist() and (np.diff(first) > 0).all()
    sampled = model.metadata["training_sample"]
    assert sampled["cap"] == 300 and sampled["seed"] == 0 and summary["training_sample"] == sampled
    assert sampled["sampled"] and all(v["windows"] == 300 < v["of"] for v in sampled["sampled"].values())
    for kind in sampled["sampled"]:
        assert model.scorers[kind].n_training_windows == summary["scorers"][kind]["training_windows"] == 300
    assert "--train-sample 300" in (tmp_path / "b" / "MODEL_CARD.md").read_text()
    files = sorted(SAMPLE.glob("*2026-03-27*"))
    found = api.scan(files, model)
    found.close()
    assert found.events_scored > 0 and found.df.height > 0
    assert "training_sample" not in api.train(api.read_logs(files)[0]).metadata


@pytest.mark.parametrize("threshold, imported", [(None, False), (0, True)])
def test_only_a_scan_of_large_logs_starts_importing_scikit_learn_ahead(tmp_path, threshold, imported) -> None:
    # A small scan walks its forests in numpy and never imports scikit-learn; logs beyond
    # IMPORT_AHEAD_BYTES start its import beside the parse. Each case in a fresh interpreter.
    for path in sorted(SAMPLE.glob("*2026-03-27*")):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    script = f"""
import json, sys
from detector import api, lazy_sklearn, runner
if {threshold!r} is not None:
    runner.IMPORT_AHEAD_BYTES = {threshold!r}
found = api.scan({str(tmp_path)!r}, {str(MODEL)!r})
print(json.dumps({{"started": lazy_sklearn._started.is_set(), "loaded": "sklearn" in sys.modules,
                  "walked_in_numpy": lazy_sklearn._walked, "findings": found.df.height}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["started"] is imported and result["findings"] > 0
    if not imported:  # the day's few thousand cells were walked in numpy
        assert not result["loaded"] and 0 < result["walked_in_numpy"] <= NUMPY_WALK_ROWS
