"""The scan on Apache Spark (detector.engines.spark) against the single-machine scan, in local mode.

One Spark session for the module (it takes about 20 s to start on two cores); the module is skipped
when pyspark is not installed (``pip install -e '.[spark]'``, which CI does).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

pytest.importorskip("pyspark", reason="the Spark engine needs the spark extra: pip install -e '.[spark]'")

from detector.cli import main
from detector.engines.spark import SparkEngine, _first_line
from detector.engines.spark_submit import arguments
from detector.errors import DetectorError
from detector.model_store import load_model
from detector.simulate import simulate
from detector.spill import EventSpill
from tests.conftest import recording_spills

ROOT = Path(__file__).parent.parent
MODEL = ROOT / "models" / "default"


@pytest.fixture(scope="module")
def engine():
    spark = SparkEngine("local[2]", {"spark.sql.shuffle.partitions": "4"})
    assert spark.session is not None  # started here: the command line's scans use this session
    yield spark
    spark.close()


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> tuple[Path, str]:
    """Ten simulated days (seven of baseline, all fifteen kinds of incident after) with one malformed
    line, and the time its baseline ends."""
    out = tmp_path_factory.mktemp("month")
    simulate(out, days=10, seed=11, meters=150)
    labels = json.loads((out / "labels.json").read_text())
    hes = sorted(out.glob("hes_*"))[3]
    with hes.open("a") as f:
        f.write("this line is not an export line\n")
    return out, labels["generator"]["baseline_until"]


@pytest.fixture(scope="module")
def scans(month, engine, tmp_path_factory) -> dict[str, Path]:
    """The same scan through the command line, on this process and on Spark."""
    logs, until = month
    outs = {}
    for name in ("local", "spark"):
        out = tmp_path_factory.mktemp(name)
        args = ["scan", str(logs), "--baseline-until", until, "--out", str(out / "found"),
                "--rejects", str(out / "rejects.parquet"), "--json", "--engine", name]
        if name == "spark":
            # The spill in a directory of the caller's (on a cluster: shared storage), beside a file of theirs.
            (out / "spill").mkdir()
            (out / "spill" / "keep.txt").write_text("not the scan's")
            args += ["--master", "local[2]", "--spill-dir", str(out / "spill")]
        with pytest.MonkeyPatch.context() as patch:
            made = recording_spills(patch)
            result = CliRunner().invoke(main, args)
        (out / "spills.json").write_text(json.dumps([str(spill.directory) for spill in made]))
        assert result.exit_code in (0, 1), result.output
        (out / "stdout.json").write_text(result.stdout)
        outs[name] = out
    return outs


def test_the_spark_scan_spills_where_it_is_told(scans) -> None:
    spill_dir = scans["spark"] / "spill"
    made = [Path(p) for p in json.loads((scans["spark"] / "spills.json").read_text())]
    assert made and all(p.parent == spill_dir for p in made)
    # Removed after the scan; the directory and the caller's file stay.
    assert sorted(p.name for p in spill_dir.iterdir()) == ["keep.txt"]
    assert all(Path(p).parent != spill_dir for p in json.loads((scans["local"] / "spills.json").read_text()))


def _read(out: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(out / "found" / name)


def test_spark_finds_what_the_local_scan_finds(scans) -> None:
    local, spark = _read(scans["local"], "findings.parquet"), _read(scans["spark"], "findings.parquet")
    assert local.height > 5  # the planted incidents are found
    assert spark.get_column("finding_id").to_list() == local.get_column("finding_id").to_list()
    assert spark.get_column("incident_id").to_list() == local.get_column("incident_id").to_list()
    assert (spark.get_column("score") - local.get_column("score")).abs().max() <= 1e-9
    assert spark.drop("score").equals(local.drop("score"))
    summary = {name: json.loads((out / "stdout.json").read_text()) for name, out in scans.items()}
    assert summary["spark"]["events_scored"] == summary["local"]["events_scored"] > 0
    assert summary["spark"]["files"] == summary["local"]["files"]


@pytest.mark.parametrize("name", ["evidence.parquet", "timeline.parquet", "incidents.parquet"])
def test_spark_writes_the_same_evidence_and_timelines(scans, name) -> None:
    local, spark = _read(scans["local"], name), _read(scans["spark"], name)
    assert local.height and spark.equals(local)


def test_a_malformed_line_is_kept_as_a_reject(scans) -> None:
    local = pl.read_parquet(scans["local"] / "rejects.parquet")
    spark = pl.read_parquet(scans["spark"] / "rejects.parquet")
    assert spark.height == 1 and spark.equals(local)
    row = spark.row(0, named=True)
    assert Path(row["raw_file"]).name.startswith("hes_") and row["raw_line"] > 1
    assert json.loads((scans["spark"] / "stdout.json").read_text())["rejects"] == 1


def test_a_failing_task_is_one_clear_error(engine, tmp_path) -> None:
    spill = EventSpill(tmp_path / "spill", timedelta(days=1))
    day = datetime(2026, 3, 2, tzinfo=UTC)
    index = int((day - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(days=1))
    (spill.directory / f"slice={index}").mkdir()
    (spill.directory / f"slice={index}" / "part-000001.parquet").write_bytes(b"not parquet at all")
    spill.record({index: 10})
    with pytest.raises(DetectorError, match=rf"Spark task failed while reading the slices: slice {index}: ") as info:
        engine.score(spill, load_model(MODEL), None)
    assert "Traceback" not in str(info.value) and "at org.apache" not in str(info.value)


def test_a_failing_training_task_is_one_clear_error(engine, tmp_path) -> None:
    spill = EventSpill(tmp_path / "spill", timedelta(days=1))
    index = int((datetime(2026, 3, 2, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(days=1))
    (spill.directory / f"slice={index}").mkdir()
    (spill.directory / f"slice={index}" / "part-000001.parquet").write_bytes(b"not parquet at all")
    spill.record({index: 10})
    with pytest.raises(DetectorError, match=rf"Spark task failed while reading the slices: slice {index}: ") as info:
        engine.train(spill, None)
    assert "Traceback" not in str(info.value)
    assert not (spill.directory / "_train").exists()  # its work files removed


def test_a_failed_job_is_named_by_its_python_error() -> None:
    text = ("An exception was thrown from the Python worker.\nTraceback (most recent call last):\n"
            '  File "x.py", line 1, in f\nValueError: bad value\n\tat org.apache.spark.api.python.X(X.scala:1)')
    assert _first_line(Exception(text)) == "ValueError: bad value"


def test_spark_options_need_the_spark_engine(tmp_path) -> None:
    result = CliRunner().invoke(main, ["scan", str(ROOT / "sample_logs"), "--out", str(tmp_path / "o"),
                                       "--master", "local[1]"])
    assert result.exit_code == 2 and "--master and --spark-conf need --engine spark" in result.output
    bad = CliRunner().invoke(main, ["scan", str(ROOT / "sample_logs"), "--out", str(tmp_path / "o"),
                                    "--engine", "spark", "--spark-conf", "novalue"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output and not (tmp_path / "o").exists()


def test_spark_submit_entry_implies_the_spark_engine() -> None:
    assert arguments(["scan", "logs/", "--out", "o"]) == ["scan", "--engine", "spark", "logs/", "--out", "o"]
    assert arguments(["scan", "--engine", "local", "logs/"]) == ["scan", "--engine", "local", "logs/"]


def test_events_in_memory_are_spilled_for_spark(engine, sample_logs) -> None:
    from detector import api
    events, _ = sample_logs
    start = datetime(2026, 3, 24, tzinfo=UTC)
    two_days = events.filter((pl.col("time") >= start) & (pl.col("time") < start + timedelta(days=2)))
    model = load_model(MODEL)
    local = api.scan(two_days, model, engine="local")
    spark = api.scan(two_days, model, engine=engine)
    assert local.df.height and spark.df.drop("score").equals(local.df.drop("score"))
    assert (spark.df.get_column("score") - local.df.get_column("score")).abs().max() <= 1e-9
    assert spark.events_scored == local.events_scored == two_days.height


def test_without_pyspark_the_error_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(DetectorError, match=r"pip install 'ami-detector\[spark\]'"):
        SparkEngine("local[1]").session  # noqa: B018


def test_train_on_spark_learns_the_model_a_local_train_learns(month, engine, tmp_path) -> None:
    """Parsed on Spark, learned here a slice at a time: the same profiles and forests, byte for byte."""
    logs, until = month
    dirs = {}
    for name in ("local", "spark"):
        dirs[name] = tmp_path / name
        args = ["train", str(logs), "--model-dir", str(dirs[name]), "--baseline-until", until, "-q", "--engine", name]
        result = CliRunner().invoke(main, args + (["--master", "local[2]"] if name == "spark" else []))
        assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(dirs["local"]) for p in dirs["local"].rglob("*")
                   if p.is_file() and p.suffix in (".parquet", ".npz"))
    assert files and any(f.parts[0] == "forests" for f in files)
    for name in files:
        assert (dirs["spark"] / name).read_bytes() == (dirs["local"] / name).read_bytes(), name
    spark, local = load_model(dirs["spark"]), load_model(dirs["local"])
    assert spark.model_id == local.model_id and spark.metadata["training_files"] == local.metadata["training_files"]


@pytest.fixture(scope="module")
def store(month, tmp_path_factory) -> Path:
    """The nightly job's state directory after one night that took the month's files."""
    import os
    import shutil
    import time

    from detector.nightly import NightlyConfig, run_nightly
    logs, _ = month
    work = tmp_path_factory.mktemp("nightly")
    inbox = work / "inbox"
    inbox.mkdir()
    for path in logs.iterdir():
        if path.name != "labels.json":
            shutil.copyfile(path, inbox / path.name)
            os.utime(inbox / path.name, (time.time() - 3600,) * 2)  # complete by the quiet-period rule
    run_nightly(NightlyConfig(inbox=inbox, state=work / "state", out=work / "out", model=MODEL,
                              retrain_every=None, keep=None))
    return work / "state"


def test_the_event_store_on_spark_finds_what_the_local_scan_of_it_finds(store, engine, tmp_path) -> None:
    """``scan STATE/events`` here, ``scan STATE --engine spark`` (spark.read.parquet): the same findings."""
    outs = {}
    for name, given in (("local", store / "events"), ("spark", store)):
        outs[name] = tmp_path / name
        args = ["scan", str(given), "--model", str(MODEL), "--out", str(outs[name]), "-q", "--engine", name]
        result = CliRunner().invoke(main, args + (["--master", "local[2]"] if name == "spark" else []))
        assert result.exit_code in (0, 1), result.output
    local, spark = (pl.read_parquet(outs[name] / "findings.parquet") for name in ("local", "spark"))
    assert local.height > 5
    assert spark.get_column("finding_id").to_list() == local.get_column("finding_id").to_list()
    assert (spark.get_column("score") - local.get_column("score")).abs().max() <= 1e-9
    assert spark.drop("score").equals(local.drop("score"))
    for name in ("evidence.parquet", "timeline.parquet"):
        assert pl.read_parquet(outs["spark"] / name).equals(pl.read_parquet(outs["local"] / name))


def test_train_on_spark_with_a_sample_cap(month, engine, tmp_path) -> None:
    """--train-sample: the scorers fitted on a seeded sample of the windows (drawn on the driver by
    detection.fit_model, as in a local train: tests/test_runner.py), recorded in the model."""
    logs, until = month
    result = CliRunner().invoke(main, ["train", str(logs), "--model-dir", str(tmp_path / "model"), "--baseline-until",
                                       until, "-q", "--engine", "spark", "--master", "local[2]", "--train-sample", "400"])
    assert result.exit_code == 0, result.output
    spark = load_model(tmp_path / "model")
    sampled = spark.metadata["training_sample"]
    assert sampled["cap"] == 400 and sampled["sampled"]
    assert all(spark.scorers[kind].n_training_windows == 400 < v["of"] for kind, v in sampled["sampled"].items())
    from detector import api
    found = api.scan(max(logs.glob("hes_*")), spark)  # it scores
    found.close()
    assert found.events_scored > 0
