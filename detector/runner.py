"""The scan runner: parse -> spill -> baseline -> score (-> explain, inside scoring) -> a result.

Each stage is a plain function over polars tables; an engine (:mod:`detector.engines`) runs the
two heavy ones, parsing and scoring, and the runner does the rest the same way whatever the engine.
The result, :class:`~detector.result.Findings`, writes the outputs (findings, evidence, timelines,
report) when asked.
"""

from __future__ import annotations

import atexit
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, overload

import polars as pl

from detector.config import Config
from detector.detection import NoBaselineError, signals_only
from detector.detection import train as _train
from detector.engines import Engine, running
from detector.engines.local import LocalEngine
from detector.errors import DetectorError, InputError
from detector.event_store import EventStore, event_store_of
from detector.features import prepare
from detector.findings import SEVERITIES
from detector.lazy_sklearn import import_ahead
from detector.model_store import Model, ModelLoading
from detector.pipeline import (
    FileReport,
    ParseRun,
    ProgressCallback,
    plan,
    read_logs,
    read_with_reports,
)
from detector.result import Findings, _tick
from detector.schema import empty_rejects
from detector.slices import Carried, SliceSource
from detector.spill import EventSpill, in_memory_slices, slice_length
from detector.timelines import aware as _aware

__all__ = ["Scanned", "baseline", "parse", "plan", "read_logs", "read_store", "read_with_reports", "scan", "score",
           "take_events", "train"]

_T = TypeVar("_T")

# Logs beyond this size on disk will walk more forest cells than are walked in numpy (the sample month's
# 8 MB walk 11,784; a 92 MB week of one utility 56,816): their scan imports scikit-learn for its
# compiled walk in the background while it parses (detector.lazy_sklearn).
IMPORT_AHEAD_BYTES = 32 << 20


# A lazy frame filtered stays lazy (a spill's slices).
@overload
def _before(events: pl.LazyFrame, until: datetime | None) -> pl.LazyFrame: ...
@overload
def _before(events: pl.DataFrame | pl.LazyFrame, until: datetime | None) -> pl.DataFrame | pl.LazyFrame: ...
def _before(events: pl.DataFrame | pl.LazyFrame, until: datetime | None) -> pl.DataFrame | pl.LazyFrame:
    return events if until is None else events.filter(pl.col("time") < _aware(until))



def train(events: str | Path | Sequence[str | Path] | pl.DataFrame | pl.LazyFrame, *, config: Config | None = None,
          baseline_until: datetime | None = None, metadata: Mapping[str, Any] | None = None,
          progress: ProgressCallback | None = None, format: str | None = None, mappings: Sequence[str | Path] = (),
          tz: str | None = None, reports: list[FileReport] | None = None, engine: str | Engine = "local",
          spill_dir: str | Path | None = None, sample: int | None = None) -> Model:
    """Learn a baseline from *events* (those before *baseline_until*, if given).

    Parameters
    ----------
    events
        Events in the normalized schema, from a period you trust; or log files / directories, parsed
        as by :func:`read_logs` (*format*, *mappings*, *tz*) into a temporary spill on disk and learned
        from a day at a time, so that memory follows a day of logs and the profiles, not the baseline;
        or the nightly job's event store (read into the spill as it is, as for :func:`scan`).
    config
        Feature, scoring and alert settings (:class:`~detector.config.Config`); defaults otherwise.
    baseline_until
        Only events before this time (UTC if naive) are learned from.
    metadata
        Extra JSON-ready facts to keep in the model (e.g. which files it was trained on).
    progress
        Optional :data:`ProgressCallback` (stages ``"parsing"`` for files, then ``"training"``).
    reports
        For log files: a list that receives a :class:`~detector.pipeline.FileReport` per file.
    engine
        What parses log files and learns from them: ``"local"`` (here, a slice at a time), ``"spark"``
        (each day's profiles and training windows in Spark tasks, the merge and the fit on the driver)
        or an :class:`~detector.engines.Engine` (as for :func:`scan`). The same model either way.
    sample
        For log files or a store: at most this many training windows per scorer, sampled reproducibly
        (:func:`detector.detection.fit_model`); for a baseline whose windows do not fit the driver.
    spill_dir
        Where the parsed events are spilled (as for :func:`scan`).

    Returns
    -------
    Model
        Save it with :func:`detector.model_store.save_model`; its ``model_id`` is set on saving.

    Raises
    ------
    detector.detection.NoBaselineError
        When the events hold too few windows to learn from.
    detector.errors.InputError
        When log paths hold no log file at all.
    """
    if isinstance(events, (pl.DataFrame, pl.LazyFrame)):
        history = _before(events, baseline_until)
        meta = {"training_events": history.lazy().select(pl.len()).collect().item(), **(metadata or {})}
        _tick(progress, "training", 0.0, None)
        model = _train(history, config, metadata=meta, sample=sample)
        _tick(progress, "training", 1.0, 1.0)
        return model
    length = slice_length((config or Config()).features.window_length)
    store = _store_in(events, format, mappings, tz)
    run = plan(events, format=format, mappings=mappings, tz=tz, progress=progress) if store is None else None
    if run is not None and not run.files:
        raise InputError("no log files found in the given paths")
    with running(engine) as runner, EventSpill.temporary(length, spill_dir) as spill:
        if run is not None:
            runner.parse(run, spill)
            if reports is not None:
                reports.extend(run.reports)
        else:
            assert store is not None
            runner.read_store(store, spill)
        return _train_spill(spill, config, baseline_until, metadata, progress, runner, sample)


def _store_in(paths: str | Path | Sequence[str | Path], format: str | None, mappings: Sequence[str | Path],
              tz: str | None) -> EventStore | None:
    """The event store *paths* name (:mod:`detector.event_store`), or None for log files."""
    store = event_store_of([paths] if isinstance(paths, (str, Path)) else list(paths))
    if store is not None and (format or mappings or tz):
        raise InputError(f"{store.directory} is an event store of parsed events: --format, --mapping and --tz "
                         "apply to log files only")
    return store


def _train_spill(spill: EventSpill, config: Config | None, until: datetime | None,
                 metadata: Mapping[str, Any] | None, progress: ProgressCallback | None,
                 engine: Engine | None = None, sample: int | None = None) -> Model:
    """:func:`train` on the events of a spill, by *engine* (default: here, a slice at a time)."""
    since = _aware(until) if until is not None else None
    _tick(progress, "training", 0.0, None)
    model = (engine or LocalEngine()).train(spill, config, until=since, metadata=metadata, sample=sample)
    _tick(progress, "training", 1.0, 1.0)
    return model




def scan(paths_or_events: str | Path | Sequence[str | Path] | pl.DataFrame | pl.LazyFrame,
         model: Model | str | Path | None = None, *, config: Config | None = None,
         baseline_until: datetime | None = None, min_severity: str = "low", format: str | None = None,
         mappings: Sequence[str | Path] = (), tz: str | None = None,
         progress: ProgressCallback | None = None, engine: str | Engine = "local",
         spill_dir: str | Path | None = None) -> Findings:
    """Score the behaviour windows of log files or of events, and return explained findings.

    Parameters
    ----------
    paths_or_events
        Log files / directories (parsed as by :func:`read_logs`), the nightly job's event store
        (``STATE/events/`` or ``STATE/``, read as it is: :mod:`detector.event_store`), or events
        already in the normalized schema (a DataFrame or LazyFrame).
    model
        A :class:`~detector.model_store.Model` or the directory of one. Without a model, the
        baseline is learned from the events themselves: from those before *baseline_until* (which
        are then not scored), or from all of them.
    config
        Settings; by default the model's (:attr:`~detector.model_store.Model.settings`).
    baseline_until
        With a model, only events from this time on are scored; without one, the events before it
        are the baseline. Naive times are UTC.
    min_severity
        Lowest severity kept (``"low"``, ``"medium"``, ``"high"``, ``"critical"``).
    format, mappings, tz
        As for :func:`read_logs`, when *paths_or_events* are paths.
    progress
        Optional :data:`ProgressCallback`.
    engine
        ``"local"`` (this process), ``"spark"``, or an :class:`~detector.engines.Engine` made by the
        caller (who then closes it); an engine named here is closed when the scan ends.
    spill_dir
        Where the parsed events are spilled: a new subdirectory of it, removed when the findings are
        closed (the directory itself and anything else in it are left alone). Default: the system's
        temporary directory. On a Spark cluster it must be storage the driver and every executor see.

    Returns
    -------
    Findings
        Most anomalous first, with the events they were scored from.

    Examples
    --------
    >>> findings = scan("sample_logs/", load_model("models/default"))  # doctest: +SKIP
    >>> findings.at_least("high").df.select("entity_id", "severity", "reasons")  # doctest: +SKIP
    """
    if min_severity not in SEVERITIES:
        raise DetectorError(f"min_severity must be one of {', '.join(SEVERITIES)}, not {min_severity!r}")
    # A model named by its directory is read while the logs are parsed (its settings at once), and
    # what windows derive from its profiles alone is computed there too.
    loading = ModelLoading(model, then=_prepare_profiles) if isinstance(model, (str, Path)) else None
    given = model if isinstance(model, Model) else None
    settings = loading.settings if loading is not None else given.settings if given is not None else Config()
    length = slice_length((config or settings).features.window_length)
    with loading or nullcontext(), running(engine) as runner:
        if isinstance(paths_or_events, (pl.DataFrame, pl.LazyFrame)):
            scanned = take_events(paths_or_events, length, spill=runner.name != "local", spill_dir=spill_dir)
        elif (store := _store_in(paths_or_events, format, mappings, tz)) is not None:
            scanned = read_store(store, runner, length, spill_dir)
        else:
            run = plan(paths_or_events, format=format, mappings=mappings, tz=tz, progress=progress)
            if run.size > IMPORT_AHEAD_BYTES:
                import_ahead()
            scanned = parse(run, runner, length, spill_dir)
        try:
            if loading is not None:
                given = loading.result()
            since = _aware(baseline_until) if baseline_until is not None else None
            on_disk = scanned.slices if isinstance(scanned.slices, EventSpill) else None
            scoring, notes = baseline(scanned.events, given, config, since, progress, on_disk, runner)
            frame, count = score(scanned, runner, scoring, config, min_severity=min_severity, scored_from=since,
                                 progress=progress)
        except BaseException:
            if scanned.spill is not None:
                scanned.spill.remove()
            raise
        finally:
            if isinstance(scanned.slices, EventSpill) and scanned.slices is not scanned.spill:
                scanned.slices.remove()  # events given in memory, spilled only for the engine to read
    found = Findings(frame, events=scanned.events, model=scoring, rejects=scanned.rejects, reports=scanned.reports,
                     events_scored=count, scored_from=since, spill=scanned.spill, settings=config or scoring.settings)
    found.notes = notes
    return found


def _prepare_profiles(model: Model) -> None:
    prepare(model.profiles)


@dataclass(frozen=True)
class Scanned:
    """The events of a scan, parsed or given, and how they came."""

    events: pl.DataFrame | pl.LazyFrame  # all of them (a LazyFrame over the spill when parsed)
    slices: SliceSource | EventSpill  # what the engine scores
    total: int  # how many
    rejects: pl.DataFrame
    reports: list[FileReport]
    spill: EventSpill | None  # the events on disk, kept for explain() until Findings.close()


def parse(run: ParseRun, engine: Engine, length: timedelta, spill_dir: str | Path | None = None) -> Scanned:
    """Parse *run* with *engine* into a temporary spill of slices of *length* (a new directory under
    *spill_dir*, default the system's temporary directory).

    The spill stays for ``explain()`` and ``timeline()`` until :meth:`Findings.close` or the end of
    the process; it is removed at once if parsing fails.

    Raises
    ------
    InputError
        When *run* has no file to parse.
    """
    if not run.files:
        raise InputError("no log files found in the given paths")
    spill, rejects = _filled(length, spill_dir, lambda spill: engine.parse(run, spill))
    return Scanned(spill.scan(), spill, spill.events, rejects, run.reports, spill)


def read_store(store: EventStore, engine: Engine, length: timedelta, spill_dir: str | Path | None = None) -> Scanned:
    """The events of an event store read by *engine* into a temporary spill (as :func:`parse` makes)."""
    spill, _ = _filled(length, spill_dir, lambda spill: engine.read_store(store, spill))
    return Scanned(spill.scan(), spill, spill.events, empty_rejects(), [], spill)


def _filled(length: timedelta, spill_dir: str | Path | None, fill: Callable[[EventSpill], _T]) -> tuple[EventSpill, _T]:
    """A new temporary spill of slices of *length* under *spill_dir* and what *fill* returns once it has
    filled it. The spill is removed at the end of the process at the latest, at once if filling fails."""
    spill = EventSpill.temporary(length, spill_dir)
    atexit.register(spill.remove)
    try:
        return spill, fill(spill)
    except BaseException:
        spill.remove()
        raise


def take_events(events: pl.DataFrame | pl.LazyFrame, length: timedelta, *, spill: bool = False,
                spill_dir: str | Path | None = None) -> Scanned:
    """Events already parsed, cut into slices of *length* in memory (or, with *spill*, on disk under
    *spill_dir*, for an engine that reads its slices from files)."""
    # A LazyFrame is collected once here, not once for the count and again for the slices.
    frame = events.collect() if isinstance(events, pl.LazyFrame) else events
    if not spill:
        return Scanned(frame, in_memory_slices(frame, length), frame.height, empty_rejects(), [], None)
    disk, _ = _filled(length, spill_dir, lambda disk: disk.add(frame))
    # The findings keep the events in memory: the spill is only the engine's input (removed after scoring).
    return Scanned(frame, disk, frame.height, empty_rejects(), [], None)


def baseline(events: pl.DataFrame | pl.LazyFrame, model: Model | None, config: Config | None,
             since: datetime | None, progress: ProgressCallback | None,
             spill: EventSpill | None = None, engine: Engine | None = None) -> tuple[Model, list[str]]:
    """The model to score with (*model*, or one learned from *events* before *since*, from *spill* by
    *engine* when they are on disk), and what the analyst must know about its baseline."""
    if model is None:
        return _learn_during_scan(events, config, since, progress, spill, engine)
    return model, _inside_training(events, model, since)


def score(scanned: Scanned, engine: Engine, model: Model, config: Config | None, *, min_severity: str,
          scored_from: datetime | None, progress: ProgressCallback | None,
          carried: Carried | None = None) -> tuple[pl.DataFrame, int]:
    """The ranked, explained findings of *scanned* (with incident ids) and the number of events scored.

    *carried*: what the first slice carries in from events scored before (the nightly job's earlier
    nights), updated in place to what comes after the last slice; a scan starts from nothing.
    """
    done = 0.0

    def tick(count: int) -> None:
        nonlocal done
        done += count
        _tick(progress, "scoring", done, float(scanned.total))

    _tick(progress, "scoring", 0.0, float(scanned.total))
    return engine.score(scanned.slices, model, config, min_severity=min_severity, scored_from=scored_from,
                        on_slice=tick, carried=carried)


def _inside_training(events: pl.DataFrame | pl.LazyFrame, model: Model, since: datetime | None) -> list[str]:
    """A note when scored events lie inside the model's own baseline: they are judged against a
    history that already holds them (nothing in them can look new)."""
    start, end = model.training_span
    scored = events.lazy() if since is None else events.lazy().filter(pl.col("time") >= since)
    inside = scored.filter(pl.col("time") <= end).select(pl.len()).collect().item()
    if not inside:
        return []
    return [(f"{inside:,} of the scored events lie inside the model's baseline ({start:%Y-%m-%d} to {end:%Y-%m-%d}): "
             f"they are judged against a history that already holds them; give --baseline-until "
             f"{end:%Y-%m-%dT%H:%M:%SZ} to score only what came after")]


def _learn_during_scan(events: pl.DataFrame | pl.LazyFrame, config: Config | None, since: datetime | None,
                       progress: ProgressCallback | None, spill: EventSpill | None = None,
                       engine: Engine | None = None) -> tuple[Model, list[str]]:
    """The baseline a scan without ``--model`` learns from its own logs (from *spill* a slice at a
    time when the logs were parsed into one), and what the analyst must know about it: that it
    overlaps what is scored, or that it is too thin for the forest (then security signals alone make
    the findings)."""
    notes = []
    if since is None:
        notes.append("the baseline was learned from the same logs that were scored, so an attack in them is part "
                      "of what counts as normal; give --baseline-until TIME (the end of a period you trust) or "
                      "train a model on older logs with `ami-detector train`")
    try:
        metadata = {"learned_during_scan": True}
        model = (_train_spill(spill, config, since, metadata, progress, engine) if spill is not None else
                 train(events, config=config, baseline_until=since, metadata=metadata, progress=progress))
    except NoBaselineError as exc:
        history = _before(events, since)
        model = signals_only(history, config, reason=str(exc))
        days = _baseline_days(model)
        why = re.sub(r";? ?train on a longer span.*?severity\)|, at least \d+ are needed to calibrate scores", "",
                     str(exc)).removeprefix("not enough baseline windows to train any scorer: ")
        notes.append(f"the baseline ({days}) is too thin for the anomaly model ({why}); findings come from "
                     "security signals alone")
        return model, notes
    skipped = model.metadata.get("skipped_kinds") or {}
    for kind, why in skipped.items():
        notes.append(f"{kind} windows are judged by security signals alone: {why}")
    days = _baseline_days(model)
    if days.startswith(("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 ")):
        notes.append(f"the baseline covers only {days}; with less than a week, hours and weekdays an account "
                     "keeps are compared with everyone's, and severities stay conservative")
    return model, notes


def _baseline_days(model: Model) -> str:
    span = model.metadata.get("profiles", {})
    start, end = span.get("baseline_start"), span.get("baseline_end")
    if not start or not end:
        return "an empty baseline"
    days = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 86_400
    return f"{days:.0f} day{'s' if round(days) != 1 else ''} of baseline"


