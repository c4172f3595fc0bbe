"""The notebook API: every stage as a function over polars tables, and findings that explain themselves.

::

    import detector

    events, rejects = detector.read_logs("sample_logs/")        # polars DataFrames
    model = detector.load_model("models/default")
    findings = detector.scan(events, model)                      # a Findings
    findings.df.head()                                           # the findings contract
    ex = findings.explain(findings.df["finding_id"][0])          # reasons, events, raw lines
    findings.timeline("eprice")                                  # hourly activity around its windows
    findings.plot_timeline("eprice")                             # the same as a matplotlib Figure
    findings.to_arrow()                                          # pyarrow.Table, without copying

:class:`Findings` keeps the events it was scored from (a DataFrame or a LazyFrame, not a copy), so
``explain`` and ``timeline`` can go back to the events and raw lines behind a finding. Raw lines
are read from the log files by line number only when asked for, a chunk at a time, and only up to
the last line cited. Everything that came from a log is attacker-controlled: the HTML
representations here escape it, and :mod:`detector.report` does the same for the report.
"""

from __future__ import annotations

import atexit
import re
import html
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import polars as pl

from detector.config import Config
from detector.incidents import incidents_of
from detector.detection import NoBaselineError, profiles_of, signals_only
from detector.detection import train as _train
from detector.detection import train_slices as _train_slices
from detector.errors import DetectorError, InputError
from detector.features import DEVICE_TARGET_TYPES, FEATURE_DESCRIPTIONS, build_profiles
from detector.features import build_features as _build_features
from detector.findings import (
    FINDINGS_SCHEMA,
    REQUIRED_COLUMNS,
    conform,
    SEVERITIES,
    TOP_FEATURE,
    atomic_write,
    rank,
    severity_at_least,
    write_findings,
)
from detector.model_store import Model, load_model
from detector.overlap import two_at_a_time
from detector.parsers import ParsedChunk
from detector.parsers.reader import detached, read_line_chunks
from detector.pipeline import FileReport, ParseRun, collect_run, parse_to_spill, plan_parse
from detector.safe_text import for_terminal
from detector.slices import SliceSource, score_slices
from detector.spill import EventSpill, in_memory_slices, slice_length
from detector.schema import CATEGORIES, EVENT_SCHEMA, REJECT_RAW_BYTES, UTC_US, empty_rejects

if TYPE_CHECKING:
    import pyarrow as pa
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CONTEXT",
    "EVIDENCE_FILE",
    "TIMELINE_FILE",
    "TIMELINE_SCHEMA",
    "Explanation",
    "Findings",
    "FindingNotFound",
    "ProgressCallback",
    "build_features",
    "cited_events",
    "entity_timeline",
    "escape_html",
    "evidence_locations",
    "load_model",
    "plan",
    "read_logs",
    "read_raw_lines",
    "read_with_reports",
    "scan",
    "timeline_counts",
    "train",
]

ProgressCallback = Callable[[str, float, float | None], None]
"""``progress(stage, done, total)``: *total* is None for a stage whose length is unknown.

Stages are ``"parsing"`` (done and total in bytes of input), ``"training"``, ``"scoring"`` and
``"report"`` (0 of None when they start, 1 of 1 when they end).
"""

EVIDENCE_FILE: Final = "evidence.parquet"
TIMELINE_FILE: Final = "timeline.parquet"
CONTEXT: Final = timedelta(hours=12)
"""How far either side of a finding's window its timeline reaches (and the activity saved with it)."""

EntityKind = Literal["account", "device"]

# One colour per event category, shared by the plots and the HTML report (colour-blind-safe
# Okabe-Ito first, then muted tones).
CATEGORY_COLORS: Final[dict[str, str]] = dict(zip(CATEGORIES, (
    "#0072B2", "#D55E00", "#CC79A7", "#E69F00", "#009E73", "#56B4E9", "#F0E442", "#000000",
    "#B2182B", "#999999", "#8C6D31", "#5E3C99", "#1B7837", "#762A83"), strict=True))


class FindingNotFound(DetectorError, KeyError):
    """No finding (or more than one) has the given id or id prefix."""

    def __str__(self) -> str:  # KeyError would quote the message
        return DetectorError.__str__(self)


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


# ---- features, training, scoring ----------------------------------------------------------------------


def _config_of(model: Model) -> Config:
    return Config.from_dict({k: v for k, v in model.config.items() if k in ("features", "scoring")})


def build_features(events: pl.DataFrame | pl.LazyFrame, model: Model | None = None, *,
                   config: Config | None = None) -> dict[str, pl.LazyFrame]:
    """The behaviour windows of *events*: one row per entity and window, with its features.

    Parameters
    ----------
    events
        Events in the normalized schema.
    model
        Compare each window with this model's baseline profiles (what scoring does). Without a
        model, the events are their own baseline: each window is compared with the rest of the
        events of its entity (leave-window-out), which is what training does.
    config
        Feature settings; by default the model's, or the defaults.

    Returns
    -------
    dict[str, polars.LazyFrame]
        ``{"account": ..., "device": ...}``; nothing is computed until you ``.collect()``.
        ``detector.features.feature_columns(kind)`` lists the model's input columns and
        ``detector.features.FEATURE_DESCRIPTIONS`` says what each one means.
    """
    if config is None:
        config = _config_of(model) if model is not None else Config()
    profiles = profiles_of(model) if model is not None else build_profiles(events, config.features)
    return _build_features(events, profiles, config.features)


def _before(events: pl.DataFrame | pl.LazyFrame, until: datetime | None) -> pl.DataFrame | pl.LazyFrame:
    return events if until is None else events.filter(pl.col("time") < _aware(until))


def _aware(moment: datetime) -> datetime:
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def train(events: str | Path | Sequence[str | Path] | pl.DataFrame | pl.LazyFrame, *, config: Config | None = None,
          baseline_until: datetime | None = None, metadata: Mapping[str, Any] | None = None,
          progress: ProgressCallback | None = None, format: str | None = None, mappings: Sequence[str | Path] = (),
          tz: str | None = None, reports: list[FileReport] | None = None) -> Model:
    """Learn a baseline from *events* (those before *baseline_until*, if given).

    Parameters
    ----------
    events
        Events in the normalized schema, from a period you trust; or log files / directories, parsed
        as by :func:`read_logs` (*format*, *mappings*, *tz*) into a temporary spill on disk and learned
        from a day at a time, so that memory follows a day of logs and the profiles, not the baseline.
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
        model = _train(history, config, metadata=meta)
        _tick(progress, "training", 1.0, 1.0)
        return model
    run = plan(events, format=format, mappings=mappings, tz=tz, progress=progress)
    if not run.files:
        raise InputError("no log files found in the given paths")
    with EventSpill.temporary(slice_length((config or Config()).features.window_length)) as spill:
        parse_to_spill(run, spill)
        if reports is not None:
            reports.extend(run.reports)
        return _train_spill(spill, config, baseline_until, metadata, progress)


def _train_spill(spill: EventSpill, config: Config | None, until: datetime | None,
                 metadata: Mapping[str, Any] | None, progress: ProgressCallback | None) -> Model:
    """:func:`train` on the events of a spill, a slice at a time (:func:`detector.detection.train_slices`)."""
    since = _aware(until) if until is not None else None
    slices = [(start, count, _before(events, since)) for start, count, events in spill.slices()
              if since is None or start < since]
    training_events = sum(frame.item() for frame in pl.collect_all([lf.select(pl.len()) for _, _, lf in slices]))
    _tick(progress, "training", 0.0, None)
    model = _train_slices(slices, config, metadata={"training_events": training_events, **(metadata or {})})
    _tick(progress, "training", 1.0, 1.0)
    return model


def _tick(progress: ProgressCallback | None, stage: str, done: float, total: float | None) -> None:
    if progress is not None:
        progress(stage, done, total)


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
            model, notes = _learn_during_scan(events, config, since, progress, spill)
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
                       progress: ProgressCallback | None, spill: EventSpill | None = None) -> tuple[Model, list[str]]:
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
        model = (_train_spill(spill, config, since, metadata, progress) if spill is not None else
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


# ---- evidence, raw lines, timelines ------------------------------------------------------------------


def evidence_locations(evidence: pl.Series | Sequence[str]) -> pl.DataFrame:
    """``raw_file:raw_line`` strings as a (raw_file, raw_line) table; the last colon splits."""
    values = evidence if isinstance(evidence, pl.Series) else pl.Series("evidence", list(evidence), dtype=pl.String)
    return (pl.DataFrame({"evidence": values.cast(pl.String)})
            .select(raw_file=pl.col("evidence").str.extract(r"^(.*):\d+$", 1),
                    raw_line=pl.col("evidence").str.extract(r":(\d+)$", 1).cast(pl.Int64))
            .drop_nulls().unique(maintain_order=True))


def read_raw_lines(locations: pl.DataFrame, *, max_chars: int = REJECT_RAW_BYTES) -> pl.DataFrame:
    """The raw text of the given lines of log files, read by line number.

    Each file is read once, a bounded chunk at a time (gzip and UTF-16 as the parsers read them),
    and only up to the last line asked for; nothing else is kept.

    Parameters
    ----------
    locations
        ``raw_file`` (String) and ``raw_line`` (Int64) columns.
    max_chars
        Longer lines are cut to this many characters (``truncated`` says so).

    Returns
    -------
    polars.DataFrame
        ``raw_file``, ``raw_line``, ``raw`` (null when the file or line could not be read) and
        ``truncated``, in the order of *locations*.
    """
    wanted = locations.select(pl.col("raw_file").cast(pl.String), pl.col("raw_line").cast(pl.Int64)).unique(
        maintain_order=True)
    found = []
    for (path,), lines in wanted.group_by("raw_file", maintain_order=True):
        numbers = lines.get_column("raw_line")
        last = numbers.max()
        try:
            for chunk in read_line_chunks(str(path)):
                hit = chunk.lines.filter(pl.col("raw_line").is_in(numbers.implode()))
                if hit.height:
                    raw = detached(hit.get_column("raw").str.slice(0, max_chars + 1))
                    found.append(hit.with_columns(raw, raw_file=pl.lit(path, pl.String)))
                if chunk.lines.height and chunk.lines.get_column("raw_line").max() >= last:  # type: ignore[operator]
                    break
        except (DetectorError, OSError):
            continue  # the file has moved or changed: the line stays null, the location still shows
    raw = pl.concat(found) if found else pl.DataFrame(schema={"raw_line": pl.Int64, "raw": pl.String,
                                                               "raw_file": pl.String})
    return wanted.join(raw.select("raw_file", "raw_line", "raw"), on=["raw_file", "raw_line"], how="left",
                       maintain_order="left").with_columns(
        truncated=pl.col("raw").str.len_chars().fill_null(0) > max_chars,
        raw=pl.col("raw").str.slice(0, max_chars))


def entity_filter(kind: str | None, entity_id: str) -> pl.Expr:
    """Events that belong to an entity's windows (as the feature stage assigns them)."""
    account = pl.col("account") == entity_id
    device = pl.col("target_type").is_in(DEVICE_TARGET_TYPES) & (pl.col("target_id") == entity_id)
    if kind == "account":
        return account.fill_null(False)
    if kind == "device":
        return device.fill_null(False)
    return (account.fill_null(False)) | (device.fill_null(False))


_TIMELINE_COLUMNS: Final[dict[str, Any]] = {"entity_kind": pl.String, "entity_id": pl.String, "time": UTC_US,
                                            "category": pl.String, "events": pl.Int64}
TIMELINE_SCHEMA: Final = pl.Schema(_TIMELINE_COLUMNS)
"""Hourly activity kept with saved findings (``timeline.parquet``): events per entity, hour and category."""


def _wide(counts: pl.DataFrame, start: datetime, end: datetime, every: str,
          flagged: Sequence[tuple[datetime, datetime]]) -> pl.DataFrame:
    """(time, category, events) rows as one row per bucket of [start, end) and a column per category."""
    buckets = pl.DataFrame({"time": pl.datetime_range(pl.lit(start, UTC_US).dt.truncate(every), end, every,
                                                      closed="left", time_unit="us", time_zone="UTC", eager=True)})
    counts = counts.group_by(pl.col("time").dt.truncate(every), "category").agg(pl.col("events").sum())
    present = [c for c in CATEGORIES if c in set(counts.get_column("category").to_list())]
    wide = (counts.pivot("category", index="time", values="events") if counts.height
            else pl.DataFrame(schema={"time": UTC_US}))
    table = buckets.join(wide, on="time", how="left").select(
        "time", *[pl.col(c).fill_null(0).cast(pl.Int64) for c in present])
    step = table.get_column("time")
    after = step.dt.offset_by(every)
    flag = pl.repeat(False, table.height, eager=True)
    for lo, hi in flagged:
        flag = flag | ((step < _aware(hi)) & (after > _aware(lo)))
    return table.with_columns(total=pl.sum_horizontal(*present) if present else pl.lit(0, pl.Int64),
                              flagged=flag)


def entity_timeline(events: pl.DataFrame | pl.LazyFrame, kind: str | None, entity_id: str, start: datetime,
                    end: datetime, *, every: str = "1h", flagged: Sequence[tuple[datetime, datetime]] = ()
                    ) -> pl.DataFrame:
    """Event counts of one entity per time bucket and category, from *start* to *end*.

    Parameters
    ----------
    events
        Events in the normalized schema, or hourly counts in :data:`TIMELINE_SCHEMA` (as saved
        beside findings; then *every* must be whole hours).
    kind, entity_id
        The entity (``"account"`` or ``"device"``; None matches either).
    start, end
        The span, UTC if naive.
    every
        Bucket length, a polars duration (``"1h"``, ``"15m"``, ``"1d"``).
    flagged
        Windows to mark.

    Returns
    -------
    polars.DataFrame
        ``time`` (bucket start, UTC), one column per category the entity was active in (in the
        schema's category order), ``total``, and ``flagged`` (the bucket overlaps a window in
        *flagged*). Every bucket of the span has a row, quiet ones with zeros.
    """
    start, end = _aware(start), _aware(end)
    lf = events.lazy()
    if "events" in lf.collect_schema().names():  # saved hourly counts
        who = pl.col("entity_id") == entity_id
        if kind is not None:
            who = who & (pl.col("entity_kind") == kind)
        counts = lf.filter(who & pl.col("time").is_between(start, end, closed="left")).select(
            "time", "category", "events").collect()
    else:
        counts = (lf.filter(entity_filter(kind, entity_id) & pl.col("time").is_between(start, end, closed="left"))
                  .group_by(time=pl.col("time").dt.truncate(every), category=pl.col("category").cast(pl.String))
                  .agg(events=pl.len().cast(pl.Int64))
                  .collect())
    return _wide(counts, start, end, every, flagged)


def _spans(findings: pl.DataFrame, around: timedelta) -> pl.DataFrame:
    """Per entity, the union of [window_start - around, window_end + around) over its findings.

    Merging overlapping spans first means each event joins at most one span, however many
    findings an entity has in a row.
    """
    spans = findings.select("entity_kind", "entity_id", _lo=pl.col("window_start") - around,
                            _hi=pl.col("window_end") + around).sort("entity_kind", "entity_id", "_lo")
    by = ["entity_kind", "entity_id"]
    return (spans.with_columns(_reach=pl.col("_hi").cum_max().shift(1).over(by))
            .with_columns(_part=(pl.col("_reach").is_null() | (pl.col("_lo") > pl.col("_reach"))).cum_sum().over(by))
            .group_by(*by, "_part").agg(pl.col("_lo").min(), pl.col("_hi").max()).drop("_part"))


def _entity_rows(events: pl.LazyFrame, findings: pl.DataFrame, around: timedelta) -> pl.LazyFrame:
    """Events of the findings' entities within their spans, with ``entity_kind`` and ``entity_id``."""
    spans = _spans(findings, around)
    parts = []
    for kind, key, rows in (("account", "account", events),
                            ("device", "target_id", events.filter(pl.col("target_type").is_in(DEVICE_TARGET_TYPES)))):
        wanted = spans.filter(pl.col("entity_kind") == kind).lazy()
        parts.append(rows.join(wanted, left_on=key, right_on="entity_id")
                     .filter(pl.col("time").is_between(pl.col("_lo"), pl.col("_hi"), closed="left"))
                     .with_columns(entity_id=pl.col(key)).drop("_lo", "_hi"))
    return pl.concat(parts)


def timeline_counts(events: pl.DataFrame | pl.LazyFrame, findings: pl.DataFrame, *,
                    around: timedelta = CONTEXT) -> pl.DataFrame:
    """Hourly activity of each finding's entity from *around* before its window to *around* after.

    A few hundred rows per finding whatever the volume of the logs: this is what a timeline needs,
    and what ``Findings.write`` keeps beside the findings (``timeline.parquet``).

    Returns
    -------
    polars.DataFrame
        In :data:`TIMELINE_SCHEMA`.
    """
    lf = events.lazy()
    if "events" in lf.collect_schema().names():  # already counts
        return lf.collect().select(list(TIMELINE_SCHEMA)).cast(TIMELINE_SCHEMA)
    rows = _entity_rows(lf.select("time", "account", "target_type", "target_id", "category"), findings, around)
    return (rows.group_by("entity_kind", "entity_id", time=pl.col("time").dt.truncate("1h"),
                          category=pl.col("category").cast(pl.String))
            .agg(events=pl.len().cast(pl.Int64))
            .sort("entity_kind", "entity_id", "time", "category")
            .collect(engine="streaming").select(list(TIMELINE_SCHEMA)))


def _behind(events: pl.DataFrame | pl.LazyFrame, findings: pl.DataFrame) -> pl.DataFrame:
    """The events the findings cite, in time order (their ``raw`` column, if any, as it is)."""
    return events_at(events, evidence_locations(findings.get_column("evidence").explode().drop_nulls()))


def events_at(events: pl.DataFrame | pl.LazyFrame, locations: pl.DataFrame) -> pl.DataFrame:
    """The events at the given ``raw_file``/``raw_line`` *locations*, in time order.

    Streaming: *events* may be a scan's whole spill on disk, of which only these rows are kept. A
    filter streams; a semi join would hold most of the events (3 GiB more at 50M events).
    """
    location = pl.struct(pl.col("raw_file").cast(pl.String), pl.col("raw_line").cast(pl.Int64))
    wanted = locations.select(location).to_series().implode()
    return (events.lazy().filter(location.is_in(wanted)).collect(engine="streaming")
            .sort("time", "raw_file", "raw_line"))


def _has_raw(events: pl.DataFrame) -> bool:
    return "raw" in events.columns and not events.get_column("raw").null_count()


def _with_raw(events: pl.DataFrame) -> pl.DataFrame:
    """*events* with a ``raw`` column read from their log files."""
    raw = read_raw_lines(events.select("raw_file", "raw_line").unique(maintain_order=True)).select(
        "raw_file", "raw_line", "raw")
    return events.drop("raw", strict=False).join(raw, on=["raw_file", "raw_line"], how="left",
                                                  maintain_order="left")


def cited_events(events: pl.DataFrame | pl.LazyFrame, findings: pl.DataFrame) -> pl.DataFrame:
    """The events the findings cite as evidence, with their raw lines in a ``raw`` column.

    What ``Findings.write`` keeps beside the findings (``evidence.parquet``), so that a finding can
    still be explained, and its report rebuilt, after the logs have rotated away.
    """
    behind = _behind(events, findings)
    return behind if _has_raw(behind) else _with_raw(behind)


def write_cited_events(events: pl.DataFrame | pl.LazyFrame, findings: pl.DataFrame, path: Path) -> None:
    """Write :func:`cited_events` to the Parquet file *path* (atomically), one log file at a time.

    Hundreds of thousands of findings cite millions of events; with their raw lines those would not
    fit beside the findings, so each log file's cited events get their raw lines and go to disk
    before the files after the next are read. The rows come grouped by log file, in time order within each.
    """
    behind = _behind(events, findings)

    def write(tmp: Path) -> None:
        if not behind.height:
            _with_raw(behind).write_parquet(tmp)  # no rows: the columns only
            return
        if _has_raw(behind):
            behind.write_parquet(tmp)
            return
        by_file = (part for _, part in behind.drop("raw", strict=False).group_by("raw_file", maintain_order=True))
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".evidence-") as parts:
            # Two files' lines are read at once: reading one keeps about one core busy.
            for i, part in enumerate(two_at_a_time(by_file, _with_raw)):
                part.write_parquet(Path(parts) / f"{i:08d}.parquet")
            pl.scan_parquet(Path(parts) / "*.parquet").sink_parquet(tmp)

    atomic_write(path, write)


# ---- findings --------------------------------------------------------------------------------------


def escape_html(value: object) -> str:
    """Log content for HTML: control and bidi characters made visible, then HTML-escaped (quotes too)."""
    return html.escape(for_terminal("" if value is None else value), quote=True)


_esc = escape_html


@dataclass(frozen=True, repr=False)
class Explanation:
    """Why a finding was raised and what lies behind it.

    Attributes
    ----------
    finding
        The finding's row (the findings contract) as a dict.
    reasons
        The sentences a person reads.
    top_features
        ``feature``, ``description``, ``value``, ``baseline``, ``contribution``: the model's view.
    events
        The normalized events cited as evidence, in time order (empty when the findings were
        read without their events).
    raw_lines
        ``raw_file``, ``raw_line``, ``raw``, ``truncated``: the raw log lines cited as evidence.
        ``raw`` is null for a file that can no longer be read.
    """

    finding: dict[str, Any]
    reasons: list[str]
    top_features: pl.DataFrame
    events: pl.DataFrame
    raw_lines: pl.DataFrame

    @property
    def finding_id(self) -> str:
        return str(self.finding["finding_id"])

    def __repr__(self) -> str:
        return (f"<Explanation of finding {self.finding_id}: {len(self.reasons)} reasons, {self.events.height} events, "
                f"{self.raw_lines.height} raw lines; print() it to read>")

    def __str__(self) -> str:
        f = self.finding
        lines = [f"{f['severity']} {f['score']:.4f}  {f['entity_kind']} {for_terminal(f['entity_id'])}  "
                 f"{f['window_start']:%Y-%m-%d %H:%M}-{f['window_end']:%H:%M} UTC  ({f['event_count']} events)"]
        lines += [f"  - {for_terminal(r)}" for r in self.reasons]
        lines.append("evidence:")
        for row in self.raw_lines.iter_rows(named=True):
            text = "(file not readable)" if row["raw"] is None else row["raw"]
            lines.append(f"  {for_terminal(row['raw_file'])}:{row['raw_line']}: {for_terminal(text)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        f = self.finding
        reasons = "".join(f"<li>{_esc(r)}</li>" for r in self.reasons)
        raw = "".join(f"<tr><td><code>{_esc(r['raw_file'])}:{r['raw_line']}</code></td>"
                      f"<td><pre style='margin:0;white-space:pre-wrap'>{_esc(r['raw'] or '(file not readable)')}"
                      f"</pre></td></tr>" for r in self.raw_lines.iter_rows(named=True))
        return (f"<div><b>{_esc(f['severity'])}</b> {f['score']:.4f} &middot; {_esc(f['entity_kind'])} "
                f"<b>{_esc(f['entity_id'])}</b> &middot; {f['window_start']:%Y-%m-%d %H:%M} UTC"
                f"<ul>{reasons}</ul><table>{raw}</table></div>")


class Findings:
    """Ranked, explained findings together with the events they were scored from.

    Parameters
    ----------
    frame
        Findings in the contract schema (:data:`detector.findings.FINDINGS_SCHEMA`).
    events
        The events the findings were scored from (DataFrame or LazyFrame; not copied), or, for
        saved findings, the events they cite (``evidence.parquet``, with a ``raw`` column). Without
        events, ``explain`` still gives reasons and raw lines (read from the files).
    timelines
        Hourly activity of the findings' entities (:data:`TIMELINE_SCHEMA`, ``timeline.parquet``);
        timelines are drawn from it instead of from *events* when given.
    model
        The model that scored them, if known.
    rejects, reports
        The lines that could not be parsed and a report per input file, when the findings come
        from a scan of files.
    events_scored
        How many events were scored.
    scored_from
        With a model and ``baseline_until``: the time scoring started from.
    """

    def __init__(self, frame: pl.DataFrame, *, events: pl.DataFrame | pl.LazyFrame | None = None,
                 timelines: pl.DataFrame | None = None, model: Model | None = None,
                 rejects: pl.DataFrame | None = None, reports: Sequence[FileReport] = (),
                 events_scored: int | None = None, scored_from: datetime | None = None,
                 spill: EventSpill | None = None) -> None:
        self.df = rank(conform(frame))
        self.events = events
        self._spill = spill  # the parsed events behind a LazyFrame *events*, kept while they are needed
        self.timelines = timelines
        self.model = model
        self.rejects = rejects if rejects is not None else empty_rejects()
        self.reports = list(reports)
        self.events_scored = events_scored
        self.scored_from = scored_from
        # What the analyst must know about how these findings were made (a thin or overlapping
        # baseline, say); the command line prints them on stderr.
        self.notes: list[str] = []

    @property
    def incidents(self) -> pl.DataFrame:
        """The incidents of these findings, most severe first (:data:`detector.incidents.INCIDENTS_SCHEMA`)."""
        return incidents_of(self.df)

    def close(self) -> None:
        """Delete the parsed events a scan of files keeps on disk for ``explain`` and ``timeline``
        (otherwise deleted when Python exits); the findings themselves stay usable."""
        if self._spill is not None:
            self._spill.remove()
            self.events = None

    # -- the table ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.df.height

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.severity_counts().items() if n)
        return f"<Findings: {self.df.height} ({counts or 'none'}), model {self.model_id or '?'}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{_esc(r['severity'])}</td><td>{r['score']:.4f}</td><td>{_esc(r['entity_kind'])}</td>"
            f"<td>{_esc(r['entity_id'])}</td><td>{r['window_start']:%Y-%m-%d %H:%M}</td>"
            f"<td>{_esc(r['reasons'][0] if r['reasons'] else '')}</td><td><code>{_esc(r['finding_id'])}</code></td></tr>"
            for r in self.df.head(20).iter_rows(named=True))
        more = f"<p>... and {self.df.height - 20} more (<code>.df</code>)</p>" if self.df.height > 20 else ""
        return (f"<p>{_esc(repr(self))}</p><table><tr><th>severity</th><th>score</th><th>kind</th><th>entity</th>"
                f"<th>window (UTC)</th><th>reason</th><th>finding_id</th></tr>{rows}</table>{more}")

    @property
    def model_id(self) -> str:
        if self.model is not None and self.model.model_id:
            return self.model.model_id
        ids = self.df.get_column("model_id").drop_nulls().unique().sort().to_list()
        return ",".join(ids)

    def severity_counts(self) -> dict[str, int]:
        """Findings per severity, most severe first."""
        counts = dict(self.df.get_column("severity").cast(pl.String).value_counts().iter_rows())
        return {s: int(counts.get(s, 0)) for s in reversed(SEVERITIES)}

    def to_arrow(self, *, compat_level: pl.CompatLevel | None = None) -> pa.Table:
        """The findings as a :class:`pyarrow.Table`.

        By default strings are exported as Arrow string views, which shares polars' buffers instead
        of copying them; pass ``compat_level=polars.CompatLevel.oldest()`` for ``large_string``
        columns (a copy of the text) for consumers that do not read string views yet.
        """
        return self.df.to_arrow(compat_level=compat_level if compat_level is not None else pl.CompatLevel.newest())

    def filter(self, *predicates: pl.Expr | bool, **constraints: Any) -> Findings:
        """The findings that match (as :meth:`polars.DataFrame.filter`), with the same events."""
        return self._with(self.df.filter(*predicates, **constraints))

    def at_least(self, severity: str) -> Findings:
        """The findings at *severity* or above."""
        return self._with(severity_at_least(self.df, severity))

    def _with(self, frame: pl.DataFrame) -> Findings:
        return Findings(frame, events=self.events, timelines=self.timelines, model=self.model, rejects=self.rejects,
                        reports=self.reports, events_scored=self.events_scored, scored_from=self.scored_from,
                        spill=self._spill)

    def finding(self, finding_id: str) -> dict[str, Any]:
        """The row of one finding, by its id or a unique prefix of it."""
        match = self.df.filter(pl.col("finding_id").str.starts_with(finding_id))
        if match.height != 1:
            raise FindingNotFound(f"{'no' if match.height == 0 else 'more than one'} finding with id "
                                  f"{for_terminal(finding_id)!r}" + (" (use a longer prefix)" if match.height else ""))
        return match.row(0, named=True)

    # -- explanation ----------------------------------------------------------------------------------

    def explain(self, finding_id: str) -> Explanation:
        """Reasons, model features, and the events and raw lines behind one finding.

        Parameters
        ----------
        finding_id
            The finding's id, or a unique prefix of it (as the terminal table shows).

        Returns
        -------
        Explanation
            Displays as text (``print``) and as HTML in a notebook, escaped.

        Raises
        ------
        FindingNotFound
            When no finding, or more than one, has that id (prefix).
        """
        row = self.finding(finding_id)
        top = pl.DataFrame(row["top_features"] or [], schema=TOP_FEATURE.to_schema()
                           ).with_columns(description=pl.col("feature").replace_strict(
                               FEATURE_DESCRIPTIONS, default=None, return_dtype=pl.String)).select(
            "feature", "description", "value", "baseline", "contribution")
        where = evidence_locations(row["evidence"] or [])
        if self.events is not None:
            behind = events_at(self.events, where)
        else:
            behind = pl.DataFrame(schema=EVENT_SCHEMA)
        if "raw" in behind.columns:  # saved evidence carries its raw lines
            raw = where.join(behind.select("raw_file", "raw_line", "raw").unique(["raw_file", "raw_line"]),
                             on=["raw_file", "raw_line"], how="left", maintain_order="left").with_columns(
                truncated=pl.lit(False))
            if raw.get_column("raw").null_count():
                raw = read_raw_lines(where)
            behind = behind.drop("raw")
        else:
            raw = read_raw_lines(where)
        return Explanation(finding=row, reasons=list(row["reasons"] or []), top_features=top, events=behind,
                           raw_lines=raw)

    # -- timelines ------------------------------------------------------------------------------------

    def _span(self, entity_id: str, kind: str | None, finding_id: str | None, around: timedelta,
              start: datetime | None, end: datetime | None
              ) -> tuple[str | None, str, datetime, datetime, list[tuple[datetime, datetime]]]:
        if finding_id is not None:
            rows = [self.finding(finding_id)]
            entity_id = rows[0]["entity_id"]
        else:
            mine = self.df.filter(pl.col("entity_id") == entity_id)
            if kind is not None:
                mine = mine.filter(pl.col("entity_kind") == kind)
            rows = mine.to_dicts()
        if kind is None and rows:
            kind = rows[0]["entity_kind"]
        windows = [(r["window_start"], r["window_end"]) for r in rows]
        if start is None or end is None:
            if windows:
                lo, hi = min(w[0] for w in windows) - around, max(w[1] for w in windows) + around
            elif self.events is not None and self.timelines is None:
                lo, hi = (self.events.lazy().filter(entity_filter(kind, entity_id))
                          .select(pl.col("time").min(), pl.col("time").max() + pl.duration(microseconds=1))
                          .collect().row(0))
                if lo is None:
                    raise FindingNotFound(f"no events of {for_terminal(entity_id)!r}")
            else:
                raise FindingNotFound(f"no finding for {for_terminal(entity_id)!r}; give start and end")
            start, end = start or lo, end or hi
        return kind, entity_id, start, end, windows

    def timeline(self, entity_id: str, *, kind: EntityKind | None = None, finding_id: str | None = None,
                 around: timedelta = CONTEXT, start: datetime | None = None, end: datetime | None = None,
                 every: str = "1h") -> pl.DataFrame:
        """An entity's activity around its findings, per time bucket and event category.

        Parameters
        ----------
        entity_id
            An account name or device id (ignored when *finding_id* is given).
        kind
            ``"account"`` or ``"device"``; by default the kind of the entity's findings.
        finding_id
            Centre on this one finding (id or unique prefix) instead of all of the entity's.
        around
            How far before the first and after the last finding window to reach.
        start, end
            An explicit span instead (UTC if naive).
        every
            Bucket length (a polars duration string: ``"1h"``, ``"15m"``, ``"1d"``).

        Returns
        -------
        polars.DataFrame
            ``time``, a count column per event category, ``total`` and ``flagged`` (the bucket
            overlaps one of the entity's finding windows).
        """
        return self._timeline(entity_id, kind, finding_id, around, start, end, every)[2]

    def _timeline(self, entity_id: str, kind: str | None, finding_id: str | None, around: timedelta,
                  start: datetime | None, end: datetime | None, every: str) -> tuple[str | None, str, pl.DataFrame]:
        source = self.timelines if self.timelines is not None else self.events
        if source is None:
            raise DetectorError("these findings carry no events; scan again, or read them with their "
                                f"{TIMELINE_FILE}")
        kind, entity_id, lo, hi, windows = self._span(entity_id, kind, finding_id, around, start, end)
        return kind, entity_id, entity_timeline(source, kind, entity_id, lo, hi, every=every, flagged=windows)

    def plot_timeline(self, entity_id: str, *, kind: EntityKind | None = None, finding_id: str | None = None,
                      around: timedelta = CONTEXT, start: datetime | None = None, end: datetime | None = None,
                      every: str = "1h", ax: Axes | None = None) -> Figure:
        """:meth:`timeline` as a stacked bar chart (matplotlib), finding windows shaded.

        Needs matplotlib (``pip install 'ami-detector[notebook]'``). Returns the Figure, which a
        notebook displays; pass *ax* to draw into an existing one.
        """
        try:
            import matplotlib.dates as mdates
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            raise DetectorError("plotting needs matplotlib: pip install 'ami-detector[notebook]'") from None
        found_kind, entity_id, table = self._timeline(entity_id, kind, finding_id, around, start, end, every)
        if ax is None:
            fig = Figure(figsize=(10, 3.2), layout="constrained")
            ax = fig.add_subplot()
        else:
            fig = ax.get_figure()  # type: ignore[assignment]
        times = table.get_column("time").dt.replace_time_zone(None).to_list()
        width = _bucket_days(every)
        bottom = [0] * table.height
        for category in [c for c in CATEGORIES if c in table.columns]:
            values = table.get_column(category).to_list()
            ax.bar(times, values, width=width * 0.9, bottom=bottom, align="edge", color=CATEGORY_COLORS[category],
                   label=category, linewidth=0, zorder=2)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for flagged_at, length in _runs(table):
            lo = float(mdates.date2num(flagged_at))
            ax.axvspan(lo, lo + width * length, color="#d62728", alpha=0.15, lw=0, zorder=1)
            ax.axvspan(lo, lo + width * length, ymax=0.03, color="#d62728", lw=0, zorder=3)
        # Log content must not be read as mathtext (a "$" in an account name would be).
        ax.set_title(f"{found_kind or 'entity'} {entity_id}: events per {every} (UTC), finding windows shaded",
                     loc="left", fontsize=10, parse_math=False)
        ax.set_ylabel("events")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        if table.height and len(ax.get_legend_handles_labels()[0]):
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        return fig

    # -- files ----------------------------------------------------------------------------------------

    def write(self, out_dir: str | Path, *, csv: bool = False, report: bool = True, evidence: bool = True,
              title: str | None = None, summary: Mapping[str, object] | None = None,
              progress: ProgressCallback | None = None, display_tz: str = "UTC") -> list[Path]:
        """Write the findings, what explains them, and the HTML report into *out_dir*.

        - ``findings.parquet``, ``findings.jsonl`` (and ``findings.csv``): the findings contract,
          as :func:`detector.findings.write_findings` writes it;
        - ``evidence.parquet``: the events the findings cite, with their raw lines (``raw``);
        - ``timeline.parquet``: hourly activity of each finding's entity, 12 h either side of its
          window (:data:`TIMELINE_SCHEMA`);
        - ``report.html``: :func:`detector.report.render_report`, times shown in *display_tz*.

        The two evidence files are small (bounded by the findings, not the logs) and let
        :meth:`read`, ``explain`` and ``ami-detector report`` work after the logs have rotated
        away. Every file appears complete or not at all.
        """
        out = Path(out_dir)
        _tick(progress, "report", 0.0, None)
        written = write_findings(self.df, out, csv=csv)
        # The report details only the first findings and draws what it shows of them from these.
        events, timelines = self.events, self.timelines
        if evidence and self.events is not None:
            write_cited_events(self.events, self.df, out / EVIDENCE_FILE)
            written.append(out / EVIDENCE_FILE)
            events = pl.scan_parquet(out / EVIDENCE_FILE)
        if evidence and (self.timelines is not None or self.events is not None):
            timelines = self.timeline_counts()
            atomic_write(out / TIMELINE_FILE, timelines.write_parquet)
            written.append(out / TIMELINE_FILE)
        if report:
            from detector.report import write_report

            path = out / "report.html"
            write_report(self.df, path, events=events, timelines=timelines,
                         incidents=getattr(self, "incidents", None), title=title, summary=summary or self.summary(),
                         display_tz=display_tz)
            written.append(path)
        _tick(progress, "report", 1.0, 1.0)
        return written

    def evidence_events(self) -> pl.DataFrame:
        """The events the findings cite, with a ``raw`` column (see :func:`cited_events`)."""
        if self.events is None:
            return pl.DataFrame(schema={**EVENT_SCHEMA, "raw": pl.String})
        return cited_events(self.events, self.df)

    def timeline_counts(self, *, around: timedelta = CONTEXT) -> pl.DataFrame:
        """Hourly activity around every finding (see :func:`timeline_counts`)."""
        source = self.timelines if self.timelines is not None else self.events
        if source is None:
            return pl.DataFrame(schema=TIMELINE_SCHEMA)
        return timeline_counts(source, self.df, around=around)

    def summary(self) -> dict[str, object]:
        """Facts about the run for the report header, in display order."""
        facts: dict[str, object] = {}
        if self.events_scored is not None:
            facts["events scored"] = f"{self.events_scored:,}"
        if self.scored_from is not None:
            facts["scored from"] = f"{self.scored_from:%Y-%m-%d %H:%M} UTC"
        if self.reports:
            facts["files read"] = f"{sum(1 for r in self.reports if not r.error):,} of {len(self.reports):,}"
            facts["lines rejected"] = f"{self.rejects.height:,}"
        if self.model is not None:
            start, end = self.model.training_span
            facts["model"] = self.model.model_id or "(learned from these logs)"
            facts["baseline"] = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
        return facts

    @classmethod
    def read(cls, directory: str | Path) -> Findings:
        """Findings written by ``scan`` / :meth:`write`, with their evidence and timelines when present.

        Parameters
        ----------
        directory
            The output directory of a scan, or its ``findings.parquet``.

        Raises
        ------
        InputError
            When there is no readable findings table.
        """
        root = Path(directory)
        path = root / "findings.parquet" if root.is_dir() else root
        try:
            frame = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"cannot read findings: {exc}", source=(str(path), None)) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise InputError(f"not a findings table (missing {', '.join(missing)})", source=(str(path), None))
        evidence, timelines = path.parent / EVIDENCE_FILE, path.parent / TIMELINE_FILE
        return cls(frame, events=pl.read_parquet(evidence) if evidence.exists() else None,
                   timelines=pl.read_parquet(timelines) if timelines.exists() else None)


def _bucket_days(every: str) -> float:
    """The length of a bucket in days (matplotlib's date unit)."""
    start = datetime(2000, 1, 3)
    one = pl.select(pl.lit(start).dt.offset_by(every)).item() - start
    return one.total_seconds() / 86_400


def _runs(table: pl.DataFrame) -> Iterator[tuple[datetime, int]]:
    """Runs of flagged buckets: (first bucket start, number of buckets)."""
    times = table.get_column("time").dt.replace_time_zone(None).to_list()
    flags = table.get_column("flagged").to_list()
    i = 0
    while i < len(flags):
        if flags[i]:
            j = i
            while j < len(flags) and flags[j]:
                j += 1
            yield times[i], j - i
            i = j
        else:
            i += 1

