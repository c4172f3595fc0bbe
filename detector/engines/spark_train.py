"""Training on Spark: each day's share of the work in Spark tasks, the merge and the fit on the driver.

The algorithm of :func:`detector.detection.train_slices`, cut along days:

1. a light pass over the days (the scan's): each day's event count, first and last event and
   interactive logons, from which the driver computes the logon sessions each day carries in (as
   the Spark scan does) and the folds' bounds;
2. each day in its own task: its events attributed, their partial profiles
   (:class:`~detector.features.partial.PartialProfiles`) and, for a fold that starts in the day,
   those of its events before the fold, written beside the spill; and the latest activity of each
   entity in each fold's piece of the day (one row each, back to the driver's Spark plan);
3. on the driver: the partial profiles merged, a few days at a time, as a local train merges them:
   the baseline's profiles, and each fold's history, written beside the spill;
4. each (fold, day) in its own task: the fold's training windows of the day
   (:func:`~detector.detection.fold_windows`), built against the fold's history with its entities'
   last activity earlier in the fold (a Spark window, as the scan carries dormancy), written
   beside the spill;
5. on the driver: the forests fitted on those windows (:func:`~detector.detection.fit_model`),
   with ``sample`` on a reproducible sample of them.

The driver reads one day's partial profiles at a time and holds the merged profiles, and the
fit reads the windows a column at a time: what must fit the driver is the profiles and one
feature column of the training windows (``sample`` bounds the latter). The model is byte for byte
the one a local train learns (``tests/test_spark.py``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from detector.config import Config
from detector.engines.spark import (
    _EPOCH,
    _batch,
    _carried_sessions,
    _collect,
    _ddl,
    _from_ipc,
    _raise_first,
    _schema,
    _ScoreJob,
    _slices_of,
    _summaries,
    _task_error,
)
from detector.features import ENTITY_KINDS, Profiles
from detector.features.partial import Accumulated, PartialProfiles
from detector.spill import EventSpill

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

    from detector.detection import FoldWindows
    from detector.model_store import Model

_PROFILED = _schema(slice=pa.int64(), fold=pa.int64(), kind=pa.string(), entity_id=pa.string(),
                    last_seen=pa.timestamp("us", "UTC"), pieces=pa.string(), error=pa.string())
_WINDOWED = _schema(slice=pa.int64(), fold=pa.int64(), rows=pa.string(), error=pa.string())


def train_on_spark(session: SparkSession, spill: EventSpill, config: Config | None, *, until: datetime | None,
                   metadata: Mapping[str, Any] | None, sample: int | None) -> Model:
    """The model learned from the events of *spill* before *until* (see the module docstring).

    Raises
    ------
    NoBaselineError
        As a local train does (no events, or too few windows).
    DetectorError
        When a task fails (naming the stage and the day).
    """
    from detector.detection import NoBaselineError, fit_model, fold_bounds

    config = config or Config()
    order = sorted(i for i in spill.counts if until is None or _start(i, spill.length) < until)
    if not order:
        raise NoBaselineError("no events to learn a baseline from")
    work = spill.directory / "_train"
    job = _TrainJob(str(spill.directory), spill.length, until, config, str(work))
    try:
        tasks = min(len(order), 2 * session.sparkContext.defaultParallelism)
        indices = session.createDataFrame([(i,) for i in order], "slice long").repartition(tasks)
        # The scan's first pass (it needs no model): counts, first and last events, logons.
        reader = _ScoreJob(job.spill, job.length, "", "", config, "low", None, until=until)
        summary = {row["slice"]: row for row in _summaries(indices, reader)}
        job.sessions = _carried_sessions(list(summary.values()))
        events = {index: summary[index]["events"] for index in order}
        starts = [summary[i]["start"] for i in order if summary[i]["start"] is not None]
        ends = [summary[i]["end"] for i in order if summary[i]["end"] is not None]
        if not starts:
            raise NoBaselineError("no events to learn a baseline from")
        job.bounds = fold_bounds(_time(min(starts)), _time(max(ends)))
        for k, (lower, _) in enumerate(job.bounds):
            # A fold starts in the first day whose last event reaches its lower bound (as train_slices has it).
            first = next(i for i in order if events[i] and _time(summary[i]["end"]) >= lower)
            job.starts.setdefault(first, []).append(k)
        activity = indices.mapInArrow(job.profile, _ddl(_PROFILED)).cache()
        try:
            notes = _collect(activity.filter("kind is null"), "profiling the days")
            _raise_first(notes, "profiling the days")
            pieces = {row["slice"]: {int(k): n for k, n in json.loads(row["pieces"]).items()} for row in notes}
            profiles, histories = _merged(job, [i for i in order if events[i]])
            for k, history in histories.items():
                history.write(job.history(k))
            job.folds = sorted(histories)
            windowed = _fold_windows(session, job, activity.filter("kind is not null"), pieces)
        finally:
            activity.unpersist()
        folds = _fold_files(job, windowed)
        return fit_model(profiles, folds, config, {"training_events": sum(events.values()), **(metadata or {})},
                         sample)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _start(index: int, length: timedelta) -> datetime:
    return _EPOCH + length * index


def _time(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _merged(job: _TrainJob, days: list[int]) -> tuple[Profiles, dict[int, Profiles]]:
    """The baseline's profiles and each fold's history (folds with a baseline only), merged from the
    days' partial profiles in the order :func:`detector.detection.train_slices` merges them."""
    baseline = Accumulated()
    histories: dict[int, Profiles] = {}
    for index in days:
        for k in job.starts.get(index, []):
            history = baseline.merged(_load_partial(job.partial(index, f"before{k}"), job.config)).finish()
            if history.has_baseline:
                histories[k] = history
        baseline.add(_load_partial(job.partial(index, "whole"), job.config))
    return baseline.merged().finish(), histories


def _fold_windows(session: SparkSession, job: _TrainJob, activity: SparkFrame,
                  pieces: dict[int, dict[int, int]]) -> list[dict[str, Any]]:
    """Each (fold, day)'s training windows built in its own task; their row counts by kind."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    wanted = [(k, index) for index, by_fold in sorted(pieces.items()) for k in by_fold if k in job.folds]
    if not wanted:
        return []
    before = (Window.partitionBy("fold", "kind", "entity_id").orderBy("slice")
              .rowsBetween(Window.unboundedPreceding, -1))
    earlier = (activity.where(F.col("fold").isin(job.folds))
               .select("fold", "slice", "kind", "entity_id", F.max("last_seen").over(before).alias("last_seen"))
               .where(F.col("last_seen").isNotNull()))
    anchors = session.createDataFrame(wanted, "fold long, slice long").select(
        "fold", "slice", F.lit(None).cast("string").alias("kind"), F.lit(None).cast("string").alias("entity_id"),
        F.lit(None).cast("timestamp").alias("last_seen"))
    grouped = earlier.unionByName(anchors).groupBy("fold", "slice")
    rows = _collect(grouped.applyInArrow(job.windows_group, _ddl(_WINDOWED)), "building training windows")
    _raise_first(rows, "building training windows")
    return rows


def _fold_files(job: _TrainJob, rows: list[dict[str, Any]]) -> list[FoldWindows]:
    """Each fold's window files, a day after the other (the order a local train writes them)."""
    from detector.detection import FoldWindows
    folds = [FoldWindows() for _ in job.bounds]
    for row in sorted(rows, key=lambda r: (r["fold"], r["slice"])):
        counts = json.loads(row["rows"])
        for kind in ENTITY_KINDS:
            folds[row["fold"]].add_file(kind, job.windows(row["fold"], kind, row["slice"]), counts[kind])
    return folds


@dataclasses.dataclass
class _TrainJob:
    """What the training tasks share (sent to the executors with each task's function)."""

    spill: str
    length: Any
    until: datetime | None
    config: Config
    work: str  # beside the spill, on the same shared storage
    bounds: list[tuple[datetime, datetime | None]] = dataclasses.field(default_factory=list)
    starts: dict[int, list[int]] = dataclasses.field(default_factory=dict)  # day -> folds starting in it
    sessions: dict[int, bytes | None] = dataclasses.field(default_factory=dict)
    folds: list[int] = dataclasses.field(default_factory=list)  # folds with a history to build windows against

    def partial(self, index: int, what: str) -> Path:
        return Path(self.work) / "partial" / f"{index}" / what

    def history(self, fold: int) -> Path:
        return Path(self.work) / "history" / f"fold{fold}"

    def windows(self, fold: int, kind: str, index: int) -> Path:
        return Path(self.work) / "windows" / f"fold{fold}" / kind / f"{index:012d}.parquet"

    def _attributed(self, index: int) -> pl.DataFrame:
        from detector.attribution import attribute
        events = EventSpill(Path(self.spill), self.length).read_slice(index)
        if self.until is not None:
            events = events.filter(pl.col("time") < self.until)
        carried = self.sessions.get(index)
        return attribute(events.collect(), _from_ipc(carried) if carried is not None else None)[0]

    def profile(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Each day's partial profiles (to files) and its fold pieces' latest activity (rows)."""
        from detector.activity import latest_activity
        from detector.detection import fold_piece
        for index in _slices_of(batches):
            try:
                frame = self._attributed(index)
                pieces: dict[int, int] = {}
                if frame.height:
                    _save_partial(PartialProfiles.of(frame, self.config.features), self.partial(index, "whole"))
                    for k in self.starts.get(index, []):
                        before = frame.filter(pl.col("time") < self.bounds[k][0])
                        _save_partial(PartialProfiles.of(before, self.config.features),
                                      self.partial(index, f"before{k}"))
                    for k, (lower, upper) in enumerate(self.bounds):
                        piece = fold_piece(frame, lower, upper)
                        if not piece.height:
                            continue
                        pieces[k] = piece.height
                        for kind, latest in latest_activity(piece).items():
                            table = latest.select(pl.lit(index, pl.Int64).alias("slice"), pl.lit(k, pl.Int64).alias("fold"),
                                                  pl.lit(kind).alias("kind"), "entity_id", "last_seen",
                                                  pl.lit(None, pl.String).alias("pieces"),
                                                  pl.lit(None, pl.String).alias("error"))
                            yield from table.to_arrow().cast(_PROFILED).to_batches()
                yield _batch(_PROFILED, {"slice": index, "fold": None, "kind": None, "entity_id": None,
                                         "last_seen": None, "pieces": json.dumps(pieces), "error": None})
            except Exception as exc:  # noqa: BLE001 - reported to the driver as one error
                yield _batch(_PROFILED, {"slice": index, "fold": None, "kind": None, "entity_id": None,
                                         "last_seen": None, "pieces": "{}", "error": f"slice {index}: {_task_error(exc)}"})

    @property
    def windows_group(self) -> Any:
        # A plain one-argument function: Spark passes the group's key too to a two-argument one.
        def build(table: pa.Table) -> pa.Table:
            return self.build_windows(table)
        return build

    def build_windows(self, table: pa.Table) -> pa.Table:
        """One fold's training windows of one day (*table*: the group's earlier activity rows)."""
        from detector.detection import fold_piece, fold_windows
        index, k = int(table.column("slice")[0].as_py()), int(table.column("fold")[0].as_py())
        try:
            earlier = pl.DataFrame(pl.from_arrow(table)).drop_nulls("kind").with_columns(
                pl.col("last_seen").dt.convert_time_zone("UTC"))
            last_seen = {kind: part.select("entity_id", "last_seen")
                         for (kind,), part in earlier.partition_by("kind", as_dict=True).items()}
            piece = fold_piece(self._attributed(index), *self.bounds[k])
            rows = {}
            for kind, windows in fold_windows(piece, _history(self.history(k)), self.config, last_seen).items():
                path = self.windows(k, kind, index)
                path.parent.mkdir(parents=True, exist_ok=True)
                windows.write_parquet(path, compression="lz4", statistics=False)
                rows[kind] = windows.height
            row: dict[str, Any] = {"slice": index, "fold": k, "rows": json.dumps(rows), "error": None}
        except Exception as exc:  # noqa: BLE001
            row = {"slice": index, "fold": k, "rows": "{}", "error": f"slice {index}, fold {k}: {_task_error(exc)}"}
        return pa.Table.from_pylist([row], schema=_WINDOWED)


# ---- the tables tasks and the driver hand each other on the shared storage (partial profiles as Arrow
# IPC, every polars type kept exactly; a fold's history as a model's profiles are kept; nothing pickled) ----

def _save_partial(partial: PartialProfiles, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, table in partial.tables.items():
        table.write_ipc(directory / f"{name}.arrow")


def _load_partial(directory: Path, config: Config) -> PartialProfiles:
    tables = {path.stem: _from_ipc(path.read_bytes()) for path in sorted(directory.glob("*.arrow"))}
    return PartialProfiles(tables, config.features)


# Per worker process: each fold's history read once, not once per day (Spark reuses its Python
# workers); those of an earlier training are let go.
_HISTORIES: dict[str, Profiles] = {}


def _history(directory: Path) -> Profiles:
    """A fold's history profiles, as the driver wrote them (:meth:`Profiles.write`)."""
    if str(directory) not in _HISTORIES:
        for key in [key for key in _HISTORIES if Path(key).parent != directory.parent]:
            del _HISTORIES[key]
        _HISTORIES[str(directory)] = Profiles.read(directory)
    return _HISTORIES[str(directory)]
