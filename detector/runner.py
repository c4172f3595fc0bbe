"""The scan runner: parse -> spill -> (learn) -> score -> explain, each stage a plain function, returning
:class:`~detector.result.Findings` (which writes the outputs)."""

from __future__ import annotations

import atexit
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from detector.config import Config
from detector.detection import NoBaselineError, signals_only
from detector.detection import train as _train
from detector.errors import DetectorError, InputError
from detector.findings import SEVERITIES
from detector.model_store import Model, load_model
from detector.parsers import ParsedChunk
from detector.pipeline import FileReport, ParseRun, collect_run, parse_to_spill, plan_parse
from detector.result import Findings, ProgressCallback, _tick
from detector.schema import empty_rejects
from detector.slices import SliceSource, score_slices
from detector.spill import EventSpill, in_memory_slices, slice_length
from detector.timelines import aware as _aware

# ---- parsing ---------------------------------------------------------------------------------------


@dataclass
class _TrackedRun(ParseRun):
    """A :class:`ParseRun` that reports progress in bytes as it finishes each file."""

    progress: ProgressCallback | None = None

    def chunks(self) -> Iterator[ParsedChunk]:
        if self.progress is None:
            yield from super().chunks()
            return
        sizes = [_size(p) for p in self.files]
        total, done, finished = float(sum(sizes)), 0.0, 0
        self.progress("parsing", 0.0, total)
        for chunk in super().chunks():
            # A file's report is appended when it starts, so every file before the last is done.
            while finished < len(self.reports) - 1:
                done += sizes[finished]
                finished += 1
                self.progress("parsing", done, total)
            yield chunk
        self.progress("parsing", total, total)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def plan(paths: str | Path | Sequence[str | Path], *, format: str | None = None,
         mappings: Sequence[str | Path] = (), tz: str | None = None,
         progress: ProgressCallback | None = None) -> ParseRun:
    """Resolve inputs into a :class:`~detector.pipeline.ParseRun` that reports *progress*.

    Parameters
    ----------
    paths
        Files and directories of log exports.
    format, mappings, tz
        As for :func:`read_logs`.
    progress
        Called with ``("parsing", bytes_done, bytes_total)`` as files are finished.

    Returns
    -------
    ParseRun
        Iterate ``run.chunks()`` to parse; ``run.reports`` then says what happened to each file.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    run = plan_parse(paths, format=format, mappings=mappings, tz=tz)
    return _TrackedRun(**{f.name: getattr(run, f.name) for f in fields(ParseRun)}, progress=progress)


def read_logs(paths: str | Path | Sequence[str | Path], *, format: str | None = None,
              mappings: Sequence[str | Path] = (), tz: str | None = None, strict: bool = False,
              progress: ProgressCallback | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse log exports into normalized events and the lines that could not be parsed.

    Parameters
    ----------
    paths
        Files and directories, any mix of the known formats (sniffed per file); gzip is read
        transparently, and ``*.mapping.toml`` files inside a directory describe exports beside them.
    format
        Force one format for every file instead of sniffing.
    mappings
        Mapping files (TOML) describing other CSV / JSON-lines exports.
    tz
        IANA time zone of timestamps written without an offset (e.g. ``"America/Chicago"``).
    strict
        Raise :class:`~detector.errors.ParseError` on the first rejected line or unreadable file
        instead of returning it as a reject.
    progress
        Optional :data:`ProgressCallback`.

    Returns
    -------
    events : polars.DataFrame
        In the normalized event schema (:data:`detector.schema.EVENT_SCHEMA`).
    rejects : polars.DataFrame
        ``raw_file``, ``raw_line``, ``source_format``, ``reason``, ``raw``.

    Raises
    ------
    DetectorError
        For an unknown format, a bad mapping file or time zone, or when *paths* hold no log file;
        in strict mode :class:`~detector.errors.ParseError` for the first reject.

    Examples
    --------
    >>> events, rejects = read_logs("sample_logs/", tz="UTC")  # doctest: +SKIP
    >>> events.group_by("source_format").len()                # doctest: +SKIP
    """
    events, rejects, _ = read_with_reports(paths, format=format, mappings=mappings, tz=tz, strict=strict,
                                           progress=progress)
    return events, rejects


def read_with_reports(paths: str | Path | Sequence[str | Path], *, format: str | None = None,
                      mappings: Sequence[str | Path] = (),
                      tz: str | None = None, strict: bool = False, progress: ProgressCallback | None = None
                      ) -> tuple[pl.DataFrame, pl.DataFrame, list[FileReport]]:
    """:func:`read_logs` that also returns a report per input file, and refuses an empty input.

    Raises
    ------
    InputError
        When *paths* hold no log file at all.
    """
    run = plan(paths, format=format, mappings=mappings, tz=tz, progress=progress)
    if not run.files:
        raise InputError("no log files found in the given paths")
    events, rejects = collect_run(run, strict=strict)
    return events, rejects, run.reports



def _config_of(model: Model) -> Config:
    return Config.from_dict({k: v for k, v in model.config.items() if k in ("features", "scoring")})


def _before(events: pl.DataFrame | pl.LazyFrame, until: datetime | None) -> pl.DataFrame | pl.LazyFrame:
    return events if until is None else events.filter(pl.col("time") < _aware(until))



def train(events: pl.DataFrame | pl.LazyFrame, *, config: Config | None = None, baseline_until: datetime | None = None,
          metadata: Mapping[str, Any] | None = None, progress: ProgressCallback | None = None) -> Model:
    """Learn a baseline from *events* (those before *baseline_until*, if given).

    Parameters
    ----------
    events
        Events in the normalized schema, from a period you trust.
    config
        Feature, scoring and alert settings (:class:`~detector.config.Config`); defaults otherwise.
    baseline_until
        Only events before this time (UTC if naive) are learned from.
    metadata
        Extra JSON-ready facts to keep in the model (e.g. which files it was trained on).
    progress
        Optional :data:`ProgressCallback` (stage ``"training"``).

    Returns
    -------
    Model
        Save it with :func:`detector.model_store.save_model`; its ``model_id`` is set on saving.

    Raises
    ------
    detector.detection.NoBaselineError
        When the events hold too few windows to learn from.
    """
    history = _before(events, baseline_until)
    meta = {"training_events": history.lazy().select(pl.len()).collect().item(), **(metadata or {})}
    _tick(progress, "training", 0.0, None)
    model = _train(history, config, metadata=meta)
    _tick(progress, "training", 1.0, 1.0)
    return model




def scan(paths_or_events: str | Path | Sequence[str | Path] | pl.DataFrame | pl.LazyFrame,
         model: Model | str | Path | None = None, *, config: Config | None = None,
         baseline_until: datetime | None = None, min_severity: str = "low", format: str | None = None,
         mappings: Sequence[str | Path] = (), tz: str | None = None,
         progress: ProgressCallback | None = None) -> Findings:
    """Score the behaviour windows of log files or of events, and return explained findings.

    Parameters
    ----------
    paths_or_events
        Log files / directories (parsed as by :func:`read_logs`), or events already in the
        normalized schema (a DataFrame or LazyFrame).
    model
        A :class:`~detector.model_store.Model` or the directory of one. Without a model, the
        baseline is learned from the events themselves: from those before *baseline_until* (which
        are then not scored), or from all of them.
    config
        Settings; by default the model's feature and scoring settings.
    baseline_until
        With a model, only events from this time on are scored; without one, the events before it
        are the baseline. Naive times are UTC.
    min_severity
        Lowest severity kept (``"low"``, ``"medium"``, ``"high"``, ``"critical"``).
    format, mappings, tz
        As for :func:`read_logs`, when *paths_or_events* are paths.
    progress
        Optional :data:`ProgressCallback`.

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
    if isinstance(model, (str, Path)):
        model = load_model(model)
    settings = config or (_config_of(model) if model is not None else Config())
    length = slice_length(settings.features.window_length)
    spill = None
    if isinstance(paths_or_events, (pl.DataFrame, pl.LazyFrame)):
        # A LazyFrame is collected once here, not once for the count and again for the slices.
        events: pl.DataFrame | pl.LazyFrame = (paths_or_events.collect() if isinstance(paths_or_events, pl.LazyFrame)
                                               else paths_or_events)
        rejects, reports = empty_rejects(), list[FileReport]()
        slices: SliceSource = in_memory_slices(events, length)
        total = events.height
    else:
        run = plan(paths_or_events, format=format, mappings=mappings, tz=tz, progress=progress)
        if not run.files:
            raise InputError("no log files found in the given paths")
        # Parsed events go to disk, and are scored a slice at a time (see detector.slices); they
        # stay there for explain() and timeline() until Findings.close() or the end of the process.
        spill = EventSpill.temporary(length)
        atexit.register(spill.remove)
    try:
        if spill is not None:
            rejects = parse_to_spill(run, spill)
            events, reports, slices, total = spill.scan(), run.reports, spill.slices(), spill.events
        since = _aware(baseline_until) if baseline_until is not None else None
        notes: list[str] = []
        if model is None:
            model, notes = _learn_during_scan(events, config, since, progress)
        else:
            notes += _inside_training(events, model, since)
        done = 0.0

        def tick(count: int) -> None:
            nonlocal done
            done += count
            _tick(progress, "scoring", done, float(total))

        _tick(progress, "scoring", 0.0, float(total))
        frame, scored = score_slices(slices, model, config, min_severity=min_severity, scored_from=since,
                                     on_slice=tick)
    except BaseException:
        if spill is not None:
            spill.remove()
        raise
    found = Findings(frame, events=events, model=model, rejects=rejects, reports=reports, events_scored=scored,
                     scored_from=since, spill=spill)
    found.notes = notes
    return found


def _inside_training(events: pl.DataFrame | pl.LazyFrame, model: Model, since: datetime | None) -> list[str]:
    """A note when scored events lie inside the model's own baseline: they are judged against a
    history that already holds them (nothing in them can look new)."""
    start, end = model.training_span
    scored = events.lazy() if since is None else events.lazy().filter(pl.col("time") >= since)
    inside = scored.filter(pl.col("time") <= end).select(pl.len()).collect().item()
    if not inside:
        return []
    return [f"{inside:,} of the scored events lie inside the model's baseline ({start:%Y-%m-%d} to {end:%Y-%m-%d}): "
            f"they are judged against a history that already holds them; give --baseline-until "
            f"{end:%Y-%m-%dT%H:%M:%SZ} to score only what came after"]


def _learn_during_scan(events: pl.DataFrame | pl.LazyFrame, config: Config | None, since: datetime | None,
                       progress: ProgressCallback | None) -> tuple[Model, list[str]]:
    """The baseline a scan without ``--model`` learns from its own logs, and what the analyst must
    know about it: that it overlaps what is scored, or that it is too thin for the forest (then
    security signals alone make the findings)."""
    notes = []
    if since is None:
        notes.append("the baseline was learned from the same logs that were scored, so an attack in them is part "
                      "of what counts as normal; give --baseline-until TIME (the end of a period you trust) or "
                      "train a model on older logs with `ami-detector train`")
    try:
        model = train(events, config=config, baseline_until=since, metadata={"learned_during_scan": True},
                      progress=progress)
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


