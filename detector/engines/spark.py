"""The scan's heavy stages on Apache Spark: the same parsers and the same per-slice scoring, run in tasks.

* **parse**: the file list is spread over tasks; each task runs the existing parsers on its files,
  one at a time, and writes the events into the scan's spill directory (:mod:`detector.spill` layout,
  so the driver's ``Findings`` reads evidence and timelines as in a local scan), and returns each
  file's report and rejects.
* **score**: what a slice carries in from the slices before it (:class:`detector.slices.Carried`) is
  computed first: the open logon sessions and the accounts created from two small passes over the
  slices, each entity's last activity as a Spark window over per-slice maxima. Then every slice is
  scored in its own task by :func:`detector.slices.score_slice`, the model read once per worker
  from a model directory beside the spill (the model format, nothing pickled on disk), and the
  driver ranks the findings and assigns incidents.

The spill directory must be on storage that the driver and every executor see (it is the system's
temporary directory by default: right for ``local[*]``, not for a cluster). A slice (a day) is one
task: it must fit one executor's memory. Failures inside a task come back as one
:class:`~detector.errors.DetectorError`.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from detector.errors import DetectorError
from detector.pipeline import FileReport, ParseRun
from detector.schema import REJECT_SCHEMA, empty_rejects
from detector.spill import EventSpill

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

    from detector.config import Config
    from detector.event_store import EventStore
    from detector.model_store import Model
    from detector.slices import Carried, SliceSource

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INSTALL_HINT = "the Spark engine needs pyspark and Java 17+: pip install 'ami-detector[spark]'"

def _schema(**columns: pa.DataType) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in columns.items()])


_PARSED = _schema(file=pa.int64(), report=pa.string(), rejects=pa.binary(), counts=pa.string(), error=pa.string())
_STORED = _schema(counts=pa.string(), error=pa.string())
# Times the driver collects go as microseconds since the epoch: Spark hands timestamps to Python as
# naive local times.
_SUMMARY = _schema(slice=pa.int64(), events=pa.int64(), start=pa.int64(), end=pa.int64(), logons=pa.binary(),
                   error=pa.string())
_ACTIVITY = _schema(slice=pa.int64(), kind=pa.string(), entity_id=pa.string(), last_seen=pa.timestamp("us", "UTC"),
                    created=pa.binary(), firsts=pa.binary(), error=pa.string())
_SCORED = _schema(slice=pa.int64(), events=pa.int64(), findings=pa.binary(), error=pa.string())
_DDL = {pa.int64(): "long", pa.string(): "string", pa.binary(): "binary", pa.timestamp("us", "UTC"): "timestamp"}


def _ddl(schema: pa.Schema) -> str:
    """The Spark schema (DDL) of the Arrow *schema* a task yields."""
    return ", ".join(f"{field.name} {_DDL[field.type]}" for field in schema)


class SparkEngine:
    """The parse and score stages on a Spark session.

    Parameters
    ----------
    master
        The Spark master URL (``local[*]``, ``yarn``, ``spark://host:7077``, ``k8s://...``); None
        leaves it to ``spark-submit`` or an existing session.
    conf
        Spark settings (``spark.executor.memory``...).
    session
        A session to use instead of building one (it is not stopped by :meth:`close`).
    """

    name = "spark"

    def __init__(self, master: str | None = "local[*]", conf: Mapping[str, str] | None = None, *,
                 session: SparkSession | None = None) -> None:
        self.master = master
        self.conf = dict(conf or {})
        self._session = session
        self._own = session is None

    @property
    def session(self) -> SparkSession:
        if self._session is None:
            self._session, self._own = _build_session(self.master, self.conf)
        return self._session

    def close(self) -> None:
        if self._own and self._session is not None:
            self._session.stop()
        self._session = None

    # ---- parse -----------------------------------------------------------------------------------

    def parse(self, run: ParseRun, spill: EventSpill) -> pl.DataFrame:
        """Parse *run.files* into *spill* in Spark tasks; fill *run.reports* (in file order); return the rejects."""
        if not run.files:
            return empty_rejects()
        parse_files = _parse_task(run, str(spill.directory), spill.length)
        # A few files per task: a task costs a few tens of milliseconds however small its file.
        tasks = min(len(run.files), 4 * self.session.sparkContext.defaultParallelism)
        frame = self.session.range(len(run.files), numPartitions=tasks).mapInArrow(parse_files, _ddl(_PARSED))
        rows = sorted(_collect(frame, "parsing"), key=lambda row: row["file"])
        _raise_first(rows, "parsing")
        rejects = [empty_rejects()]
        for row in rows:
            run.reports.append(FileReport(**json.loads(row["report"])))
            spill.record({int(k): v for k, v in json.loads(row["counts"]).items()})
            rejects.append(_from_ipc(row["rejects"]))
        return pl.concat(rejects)

    # ---- read an event store ----------------------------------------------------------------------

    def read_store(self, store: EventStore, spill: EventSpill) -> None:
        """Read *store* with ``spark.read.parquet`` into *spill* in Spark tasks, in the store's order.

        Each task writes its rows into the spill under names that sort as the store's parts and
        rows do (part, then row index in the part), so every slice holds its events in the order
        the local engine reads them.
        """
        from pyspark.sql import functions as F
        frame = (self.session.read.schema(_EVENT_DDL).parquet(*[str(part) for part in store.parts])
                 .select("*", F.col("_metadata.file_path").alias("_file"), F.col("_metadata.row_index").alias("_row")))
        task = _store_task({store.key(part): i for i, part in enumerate(store.parts)}, str(spill.directory),
                           spill.length)
        rows = _collect(frame.mapInArrow(task, _ddl(_STORED)), "reading the event store")
        _raise_first(rows, "reading the event store")
        for row in rows:
            spill.record({int(k): v for k, v in json.loads(row["counts"]).items()})

    # ---- train -----------------------------------------------------------------------------------

    def train(self, spill: EventSpill, config: Config | None, *, until: datetime | None = None,
              metadata: Mapping[str, Any] | None = None, sample: int | None = None) -> Model:
        """The model a local train learns from *spill*, each day's work in Spark tasks
        (:mod:`detector.engines.spark_train`); *spill* must be on storage the executors see."""
        from detector.engines.spark_train import train_on_spark
        return train_on_spark(self.session, spill, config, until=until, metadata=metadata, sample=sample)

    # ---- score -----------------------------------------------------------------------------------

    def score(self, slices: SliceSource | EventSpill, model: Model, config: Config | None, *,
              min_severity: str = "low", scored_from: datetime | None = None,
              on_slice: Callable[[int], None] | None = None,
              carried: Carried | None = None) -> tuple[pl.DataFrame, int]:
        """Ranked findings of every slice of *slices* and the number of events scored.

        *slices* must be an :class:`EventSpill` on storage the executors see (events in memory are
        spilled first by the caller, as :func:`detector.api.scan` does). A scan on Spark starts
        from nothing carried in (*carried*, the nightly job's state between nights, is the local
        engine's).
        """
        from detector.slices import ranked_findings

        if carried is not None:
            raise DetectorError("the Spark engine scores a scan from its first slice: it takes no carried state")
        if not isinstance(slices, EventSpill):
            raise TypeError("the Spark engine scores an EventSpill (spill in-memory slices first)")
        counts = slices.counts
        if not counts:
            return ranked_findings([]), 0
        job = _ScoreJob(str(slices.directory), slices.length, str(_model_directory(model, slices.directory)),
                        model.model_id, config, min_severity, scored_from)
        # The two passes before scoring are light: a few slices per task.
        order = sorted(counts)
        tasks = min(len(order), 2 * self.session.sparkContext.defaultParallelism)
        indices = self.session.createDataFrame([(i,) for i in order], "slice long").repartition(tasks)
        job.sessions = _carried_sessions(_summaries(indices, job))
        rows = _scored_slices(indices, job, order)
        with tempfile.TemporaryDirectory(prefix="ami-detector-spark-") as work:
            parts: list[Path] = []
            for row in rows:
                if row["findings"] is not None:
                    parts.append(Path(work) / f"{len(parts):06d}.parquet")
                    _from_ipc(row["findings"]).write_parquet(parts[-1], compression="lz4", statistics=False)
                if on_slice is not None:
                    on_slice(counts[row["slice"]])
            return ranked_findings(parts), sum(row["events"] for row in rows)


def _summaries(indices: SparkFrame, job: _ScoreJob) -> list[dict[str, Any]]:
    """Each slice's event count, first and last event (microseconds since the epoch) and logons."""
    summary = _collect(indices.mapInArrow(job.summary, _ddl(_SUMMARY)), "reading the slices")
    _raise_first(summary, "reading the slices")
    return summary


def _carried_sessions(summary: list[dict[str, Any]]) -> dict[int, bytes | None]:
    """The logon sessions each slice carries in (Arrow IPC), from every slice's logons and last event."""
    from detector.slices import carried_sessions
    ends = {row["slice"]: _EPOCH + timedelta(microseconds=row["end"]) if row["end"] is not None else None
            for row in summary}
    logons = pl.concat([_from_ipc(row["logons"]).with_columns(slice=pl.lit(row["slice"], pl.Int64))
                        for row in sorted(summary, key=lambda r: r["slice"])])
    return {index: _to_ipc(frame) if frame is not None else None
            for index, frame in carried_sessions(logons, ends).items()}


def _scored_slices(indices: SparkFrame, job: _ScoreJob, order: list[int]) -> list[dict[str, Any]]:
    """Each slice's scored row (in slice order): the accounts created and each entity's last activity
    are computed per slice (after attribution), carried forward, and every slice scored in its own task."""
    from detector.slices import carried_created, carried_firsts
    activity = indices.mapInArrow(job.activity, _ddl(_ACTIVITY)).cache()
    try:
        notes = _collect(activity.filter("kind is null"), "attributing the slices")
        _raise_first(notes, "attributing the slices")
        created = pl.concat([_from_ipc(row["created"]).with_columns(slice=pl.lit(row["slice"], pl.Int64))
                             for row in notes])
        job.created = {index: _to_ipc(frame) for index, frame in carried_created(created, order).items()}
        firsts = pl.concat([_from_ipc(row["firsts"]).with_columns(slice=pl.lit(row["slice"], pl.Int64))
                            for row in notes])
        job.firsts = {index: _to_ipc(frame) for index, frame in carried_firsts(firsts, order).items()}
        earlier = _earlier_activity(activity.filter("kind is not null"), indices)
        rows = _collect(earlier.groupBy("slice").applyInArrow(job.score_group, _ddl(_SCORED)), "scoring")
    finally:
        activity.unpersist()
    _raise_first(rows, "scoring")
    return sorted(rows, key=lambda row: row["slice"])


def _build_session(master: str | None, conf: Mapping[str, str]) -> tuple[SparkSession, bool]:
    """A Spark session, and whether it is ours to stop (not when one was already running in this
    process, as in a notebook on Databricks: it is used as it is)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise DetectorError(INSTALL_HINT) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    # The workers must run this interpreter (with this package and its dependencies).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("ami-detector")
    if master:
        builder = builder.master(master)
    # Arrow batches between the JVM and the Python workers; a slice's findings can be large.
    builder = builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    # Times cross between the JVM and the workers as instants; UTC keeps them as the events have them.
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - Java missing or too old, a bad master URL, a bad setting
        raise DetectorError(f"could not start Spark ({_first_line(exc)}); {INSTALL_HINT}") from None
    # Failures reach the caller as one DetectorError; the JVM's own log of them would bury it.
    session.sparkContext.setLogLevel("FATAL")
    return session, True


def _collect(frame: SparkFrame, stage: str) -> list[dict[str, Any]]:
    """The rows of *frame* as dicts; a failed job becomes one DetectorError (not a JVM stack trace)."""
    try:
        return [row.asDict() for row in frame.collect()]
    except DetectorError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure inside Spark becomes one clear error
        raise DetectorError(f"Spark job failed while {stage}: {_first_line(exc)}") from None


def _raise_first(rows: list[dict[str, Any]], stage: str) -> None:
    """Tasks report their own errors in an ``error`` column: the first one is raised."""
    for row in rows:
        if row.get("error"):
            raise DetectorError(f"Spark task failed while {stage}: {row['error']}")


def _first_line(exc: BaseException) -> str:
    """The Python error inside a Spark failure when there is one, else the exception's first line."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.split(":", 1)[0].endswith(("Error", "Exception")) and "Traceback" not in line:
            return line[:500]
    return (lines[0] if lines else type(exc).__name__)[:500]


def _task_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _to_ipc(frame: pl.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.write_ipc(sink, compression="lz4")
    return sink.getvalue()


def _from_ipc(data: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(data))


def _batch(schema: pa.Schema, row: dict[str, Any]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([row], schema=schema)


def _parse_task(run: ParseRun, directory: str, length: Any) -> Callable[[Iterator[pa.RecordBatch]],
                                                                         Iterator[pa.RecordBatch]]:
    """The function each parse task runs on its batch of ``(file, path)`` rows."""
    parsers, forced, options, paths = run.parsers, run.forced, run.options, [str(path) for path in run.files]

    def parse_files(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for index in batch.column("id").to_pylist():
                if index is None:
                    continue
                item = {"file": index, "path": paths[index]}
                try:
                    one = ParseRun(files=[Path(paths[index])], parsers=parsers, forced=forced, options=options)
                    # Named by file, the parts are read in the order a local scan writes them.
                    spill = EventSpill(Path(directory), length, part_prefix=f"f{index:08d}-")
                    rejects = [empty_rejects()]
                    for chunk in one.chunks():
                        spill.add(chunk.events)
                        rejects.append(chunk.rejects)
                    yield _batch(_PARSED, {
                        "file": item["file"], "report": json.dumps(dataclasses.asdict(one.reports[0])),
                        "rejects": _to_ipc(pl.concat(rejects).cast(REJECT_SCHEMA)),
                        "counts": json.dumps({str(k): v for k, v in spill.counts.items()}), "error": None})
                except Exception as exc:  # noqa: BLE001 - reported to the driver as one error
                    yield _batch(_PARSED, {"file": item["file"], "report": "{}", "rejects": b"", "counts": "{}",
                                           "error": f"{item['path']}: {_task_error(exc)}"})

    return parse_files


def _store_task(keys: dict[str, int], directory: str, length: Any) -> Callable[[Iterator[pa.RecordBatch]],
                                                                             Iterator[pa.RecordBatch]]:
    """The function each task reading a store runs on its rows (the events, ``_file`` and ``_row``)."""

    def write_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from urllib.parse import unquote, urlparse

        from detector.event_store import conform
        for batch in batches:
            try:
                frame = pl.DataFrame(pl.from_arrow(batch))
                counts: dict[int, int] = {}
                for (file,), rows in frame.partition_by("_file", as_dict=True, maintain_order=True).items():
                    path = Path(unquote(urlparse(str(file)).path))
                    rows = rows.sort("_row")
                    first = rows.get_column("_row")[0]
                    spill = EventSpill(Path(directory), length,
                                       part_prefix=f"s{keys[f'{path.parent.name}/{path.name}']:08d}-{first:012d}-")
                    spill.add(conform(rows.drop("_file", "_row"), str(path)))
                    for index, n in spill.counts.items():
                        counts[index] = counts.get(index, 0) + n
                yield _batch(_STORED, {"counts": json.dumps({str(k): v for k, v in counts.items()}), "error": None})
            except Exception as exc:  # noqa: BLE001 - reported to the driver as one error
                yield _batch(_STORED, {"counts": "{}", "error": _task_error(exc)})

    return write_rows


def _event_ddl() -> str:
    """The normalized event schema as Spark reads it from a store (enums as strings)."""
    from detector.schema import EVENT_SCHEMA
    kinds = {pl.Int32: "int", pl.Int64: "long", pl.Datetime: "timestamp"}
    columns = []
    for name, dtype in EVENT_SCHEMA.items():
        if isinstance(dtype, pl.List):
            kind = "array<struct<key: string, value: string>>"
        else:
            kind = next((ddl for base, ddl in kinds.items() if isinstance(dtype, base)), "string")
        columns.append(f"`{name}` {kind}")
    return ", ".join(columns)


_EVENT_DDL = _event_ddl()


# Per worker process: the model read once, not once per slice (Spark reuses its Python workers).
_MODELS: dict[str, tuple[Any, Any]] = {}


@dataclasses.dataclass
class _ScoreJob:
    """What the scoring tasks share (sent to the executors with each task's function)."""

    spill: str
    length: Any
    model_dir: str
    model_id: str
    config: Config | None
    min_severity: str
    scored_from: datetime | None
    until: datetime | None = None  # training: only the events before it
    sessions: dict[int, bytes | None] = dataclasses.field(default_factory=dict)
    created: dict[int, bytes] = dataclasses.field(default_factory=dict)
    firsts: dict[int, bytes] = dataclasses.field(default_factory=dict)

    def _model(self) -> tuple[Model, Any]:
        if self.model_dir not in _MODELS:
            from detector.detection import profiles_of
            from detector.model_store import load_model
            model = load_model(self.model_dir)
            # The findings name the scan's model, saved here only to reach the executors.
            model.model_id = self.model_id
            _MODELS.clear()
            _MODELS[self.model_dir] = (model, profiles_of(model))
        return _MODELS[self.model_dir]

    def _events(self, index: int) -> pl.DataFrame:
        from detector.slices import slice_events
        events = EventSpill(Path(self.spill), self.length).read_slice(index)
        if self.until is not None:
            events = events.filter(pl.col("time") < self.until)
        return slice_events(events, self.scored_from)

    def _sessions(self, index: int) -> pl.DataFrame | None:
        data = self.sessions.get(index)
        return _from_ipc(data) if data is not None else None

    def summary(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Each slice's event count, last event and interactive logons."""
        from detector.slices import slice_logons
        for index in _slices_of(batches):
            try:
                events = self._events(index)
                start, end = (events.select(pl.col("time").min().dt.epoch("us").alias("start"),
                                            pl.col("time").max().dt.epoch("us").alias("end"))
                              .row(0) if events.height else (None, None))
                yield _batch(_SUMMARY, {"slice": index, "events": events.height, "start": start, "end": end,
                                        "logons": _to_ipc(slice_logons(events)), "error": None})
            except Exception as exc:  # noqa: BLE001
                yield _batch(_SUMMARY, {"slice": index, "events": 0, "start": None, "end": None, "logons": b"",
                                        "error": f"slice {index}: {_task_error(exc)}"})

    def activity(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Each slice's entities' last activity (one row each) and accounts created (one row, no kind)."""
        from detector.activity import latest_activity
        from detector.attribution import attribute
        from detector.signals import CREATED_SCHEMA, FIRSTS_SCHEMA, first_times
        from detector.slices import created_accounts
        for index in _slices_of(batches):
            try:
                model, profiles = self._model()
                events, _ = attribute(self._events(index), self._sessions(index))
                window = (self.config or model.settings).features.window
                created = created_accounts(events, profiles.restricted(events), window) if events.height else None
                firsts = first_times(events, window) if events.height else pl.DataFrame(schema=FIRSTS_SCHEMA)
                for kind, latest in (latest_activity(events).items() if events.height else ()):
                    table = latest.select(pl.lit(index, pl.Int64).alias("slice"), pl.lit(kind).alias("kind"),
                                          "entity_id", "last_seen", pl.lit(None, pl.Binary).alias("created"),
                                          pl.lit(None, pl.Binary).alias("firsts"),
                                          pl.lit(None, pl.String).alias("error"))
                    yield from table.to_arrow().cast(_ACTIVITY).to_batches()
                created = created if created is not None else pl.DataFrame(schema=CREATED_SCHEMA)
                yield _batch(_ACTIVITY, {"slice": index, "kind": None, "entity_id": None, "last_seen": None,
                                         "created": _to_ipc(created), "firsts": _to_ipc(firsts), "error": None})
            except Exception as exc:  # noqa: BLE001
                yield _batch(_ACTIVITY, {"slice": index, "kind": None, "entity_id": None, "last_seen": None,
                                         "created": b"", "firsts": b"",
                                         "error": f"slice {index}: {_task_error(exc)}"})

    @property
    def score_group(self) -> Callable[[pa.Table], pa.Table]:
        # A plain one-argument function: Spark passes the group's key too to a two-argument one.
        def score(table: pa.Table) -> pa.Table:
            return self.score(table)
        return score

    def score(self, table: pa.Table) -> pa.Table:
        """One slice's findings, given its entities' earlier activity (*table*: one group of slice)."""
        from detector.slices import Carried, score_slice
        index = int(table.column("slice")[0].as_py())
        try:
            model, profiles = self._model()
            earlier = pl.DataFrame(pl.from_arrow(table)).drop_nulls("kind").with_columns(
                pl.col("last_seen").dt.convert_time_zone("UTC"))
            last_seen = {kind: part.select("entity_id", "last_seen")
                         for (kind,), part in earlier.partition_by("kind", as_dict=True).items()}
            carried = Carried(last_seen=last_seen, sessions=self._sessions(index),
                              created=_from_ipc(self.created[index]), firsts=_from_ipc(self.firsts[index]))
            events = self._events(index)
            found = score_slice(events, carried, model, profiles, self.config, min_severity=self.min_severity)
            row: dict[str, Any] = {"slice": index, "events": events.height, "error": None,
                                   "findings": _to_ipc(found) if found.height else None}
        except Exception as exc:  # noqa: BLE001
            row = {"slice": index, "events": 0, "findings": None, "error": f"slice {index}: {_task_error(exc)}"}
        return pa.Table.from_pylist([row], schema=_SCORED)


def _slices_of(batches: Iterator[pa.RecordBatch]) -> Iterator[int]:
    for batch in batches:
        yield from (int(v) for v in batch.column("slice").to_pylist() if v is not None)


def _earlier_activity(activity: SparkFrame, indices: SparkFrame) -> SparkFrame:
    """Per slice, the latest activity before it of each of its entities (``slice, kind, entity_id,
    last_seen``), with one row without a kind for every slice (so that each slice has a group)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    before = (Window.partitionBy("kind", "entity_id").orderBy("slice")
              .rowsBetween(Window.unboundedPreceding, -1))
    earlier = (activity.select("slice", "kind", "entity_id", F.max("last_seen").over(before).alias("last_seen"))
               .where(F.col("last_seen").isNotNull()))
    anchors = indices.select("slice", F.lit(None).cast("string").alias("kind"),
                             F.lit(None).cast("string").alias("entity_id"),
                             F.lit(None).cast("timestamp").alias("last_seen"))
    return earlier.unionByName(anchors)


def _model_directory(model: Model, spill: Path) -> Path:
    """*model* written beside the spill for the executors (a copy: saving names the model)."""
    from detector.model_store import save_model
    directory = spill / "_model"
    save_model(copy.copy(model), directory)
    return directory
