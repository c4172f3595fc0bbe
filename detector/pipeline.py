"""The stages as a Python API: the command line and notebooks both call these functions.

Parsing walks files and directories, sniffs each file's format (or takes the one it is told),
streams chunks through the parsers, and keeps a per-file report so that nothing is lost silently:
every line is an event, a reject, or blank, and every unreadable file is named with its reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import polars as pl

from detector.atomic import AtomicParquet
from detector.errors import DetectorError, InputError, ParseError
from detector.model_store import Model
from detector.overlap import ahead, two_at_a_time
from detector.parsers import ParsedChunk, ParseOptions, Parser, get_parser, parse_file, sniff
from detector.parsers.mapping import load_mapping
from detector.parsers.reader import CHUNK_BYTES, GZIP_MAGIC
from detector.parsers.together import parse_together
from detector.schema import EVENT_SCHEMA, REJECT_RAW_BYTES, REJECT_SCHEMA, empty_events, empty_rejects
from detector.spill import EventSpill

# Files in a scanned directory that are documentation or labels, not log exports.
_NOT_LOGS = (".md", ".txt.license", ".toml", ".ipynb", ".py", ".png", ".html")
_NOT_LOG_NAMES = ("labels.json", "README", "LICENSE")
MAPPING_SUFFIX = ".mapping.toml"
# Files up to this size on disk are parsed whole, two at a time (ParseRun._files): few enough bytes that
# two of them, even gzipped ten to one, sit in memory with ease.
SMALL_FILE_BYTES = 4 << 20
# So is an uncompressed file up to one reader's chunk: parsed whole or alone, it is one chunk in memory
# either way, and a day's command log of 10-16 MiB would otherwise be parsed with one core idle.
ONE_CHUNK_BYTES = CHUNK_BYTES
# Parsed events are written to the spill at least this many at a time (see parse_to_spill).
SPILL_ROWS = 1 << 16


@dataclass
class FileReport:
    """What happened to one input file."""

    path: str
    format: str | None = None
    events: int = 0
    rejects: int = 0
    error: str | None = None
    # How many events took their time from which field (see ParsedChunk.time_fields).
    time_fields: dict[str, int] = field(default_factory=dict)

    @property
    def time_note(self) -> str | None:
        """``times from @timestamp (2,486), EventTime (--tz America/Chicago) (12)``; None when the
        file gave no events or its format has a single time field."""
        if not self.time_fields:
            return None
        parts = sorted(self.time_fields.items(), key=lambda kv: (-kv[1], kv[0]))
        return "times from " + ", ".join(f"{name} ({n:,})" for name, n in parts)


@dataclass
class ParseRun:
    """The inputs of one parse and, once :meth:`chunks` has been consumed, a report per file."""

    files: list[Path]
    parsers: list[type[Parser]] = field(default_factory=list)  # mapping parsers, tried first
    forced: type[Parser] | None = None
    options: ParseOptions = field(default_factory=ParseOptions)
    reports: list[FileReport] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes of input on disk (compressed files as they are)."""
        return sum(_size(path) for path in self.files)

    def chunks(self) -> Iterator[ParsedChunk]:
        for report, parsed in self._files():
            self.reports.append(report)
            yield from parsed

    def _files(self) -> Iterator[tuple[FileReport, Iterable[ParsedChunk]]]:
        """Each file's report and chunks, in order. Runs of small files are parsed two batches at a time,
        whole: a small file's cost is mostly fixed (sniffing, some hundred small polars queries, much of it
        outside the GIL), so an export of many small files would otherwise keep one core busy; so are
        uncompressed files of one chunk, whose chunks could not be parsed side by side. Consecutive small
        files of one format are parsed as one chunk where the format allows (:mod:`.parsers.together`).
        A larger file streams chunk by chunk (its chunks already two at a time, see :func:`parse_file`)."""
        for small, paths in itertools.groupby(self.files, key=_parsed_whole):
            if small:
                for parsed in two_at_a_time(self._batches(paths), self._parse_batch):
                    yield from parsed
            else:
                for path in paths:
                    report = FileReport(str(path))
                    yield report, self._parse(path, report)

    def _batches(self, paths: Iterable[Path]) -> Iterator[list[tuple[Path, type[Parser] | None]]]:
        """Runs of consecutive small files of one format that may be parsed together, up to a chunk of
        that format in all; every other file alone. A file whose format is not known (sniffing failed)
        is alone, and its parse reports why."""
        batch: list[tuple[Path, type[Parser] | None]] = []
        size = 0
        for path in paths:
            parser = self._format(path)
            together = parser is not None and parser.together and not _gzipped(path)
            if batch and not (together and parser is batch[0][1]
                              and size + _size(path) <= parser.chunk_bytes):  # type: ignore[union-attr]
                yield batch
                batch, size = [], 0
            batch.append((path, parser))
            size += _size(path)
            if not together:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _format(self, path: Path) -> type[Parser] | None:
        try:
            return self.forced or sniff(path, self.parsers)
        except DetectorError:
            return None

    def _parse_batch(self, batch: list[tuple[Path, type[Parser] | None]]) -> list[tuple[FileReport, list[ParsedChunk]]]:
        parser = batch[0][1]
        if len(batch) > 1 and parser is not None:
            parsed = parse_together([path for path, _ in batch], parser, self.options)
            if parsed is not None:
                files = []
                for (path, _), (events, rejects, time_fields) in zip(batch, parsed, strict=True):
                    report = FileReport(str(path), format=parser.name)
                    chunk = ParsedChunk(events, rejects, time_fields)
                    _count(report, chunk)
                    files.append((report, [chunk]))
                return files
        files = []
        for path, known in batch:
            report = FileReport(str(path))
            files.append((report, list(self._parse(path, report, known))))
        return files

    def _parse(self, path: Path, report: FileReport, parser: type[Parser] | None = None) -> Iterator[ParsedChunk]:
        try:
            parser = parser or self.forced or sniff(path, self.parsers)
            report.format = parser.name
            for chunk in parse_file(path, parser, self.options):
                _count(report, chunk)
                yield chunk
        except DetectorError as exc:
            report.error = exc.message
            # Whatever the file yielded before the failure stays; this row says where it stopped.
            line = exc.source[1] if exc.source else None
            stop = pl.DataFrame([{"raw_file": str(path), "raw_line": line, "source_format": report.format or "unknown",
                                  "reason": f"file not read (further): {exc.message}"[:REJECT_RAW_BYTES], "raw": None}],
                                schema=REJECT_SCHEMA)
            report.rejects += 1
            yield ParsedChunk(empty_events(), stop)

    @property
    def failed(self) -> list[FileReport]:
        return [r for r in self.reports if r.error]


def _count(report: FileReport, chunk: ParsedChunk) -> None:
    report.events += chunk.events.height
    report.rejects += chunk.rejects.height
    for name, n in chunk.time_fields.items():
        report.time_fields[name] = report.time_fields.get(name, 0) + n


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """Files to parse, and mapping files found in the given directories.

    A directory is walked recursively in sorted order; hidden files, documentation and labels are
    skipped. Mapping files (``*.mapping.toml``) inside a directory describe exports in it.
    """
    files: list[Path] = []
    mappings: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            files.append(path)
            continue
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = child.relative_to(path)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if child.name.endswith(MAPPING_SUFFIX):
                mappings.append(child)
            elif not (child.name.endswith(_NOT_LOGS) or child.name.startswith(_NOT_LOG_NAMES)):
                files.append(child)
    return files, mappings


def plan_parse(paths: Sequence[str | Path], *, format: str | None = None, mappings: Sequence[str | Path] = (),
               tz: str | None = None) -> ParseRun:
    """Resolve inputs, mapping files and the forced format into a :class:`ParseRun`.

    Raises
    ------
    DetectorError
        For a bad mapping file, an unknown ``format`` or an unknown time zone.
    """
    files, found = expand_paths(paths)
    parsers = [load_mapping(m) for m in [*mappings, *found]]
    forced = get_parser(format, parsers) if format else None
    return ParseRun(files=files, parsers=parsers, forced=forced, options=ParseOptions(tz=tz))


def collect_run(run: ParseRun, *, strict: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every event and reject of a parse run in memory (raising on the first reject if *strict*)."""
    events, rejects = [empty_events()], [empty_rejects()]
    for chunk in run.chunks():
        if strict and chunk.rejects.height:
            first = chunk.rejects.row(0, named=True)
            raise ParseError(first["reason"], source=(first["raw_file"], first["raw_line"]))
        events.append(chunk.events)
        rejects.append(chunk.rejects)
    # One contiguous chunk: the window group-bys downstream run faster on it.
    return pl.concat(events).rechunk(), pl.concat(rejects)


ProgressCallback = Callable[[str, float, float | None], None]
"""``progress(stage, done, total)``: *total* is None for a stage whose length is unknown.

Stages are ``"parsing"`` (done and total in bytes of input), ``"training"``, ``"scoring"`` and
``"report"`` (0 of None when they start, 1 of 1 when they end).
"""


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


def _parsed_whole(path: Path) -> bool:
    """Whether *path* is small enough to be parsed whole, beside another file (see SMALL_FILE_BYTES)."""
    size = _size(path)
    return size <= SMALL_FILE_BYTES or (size <= ONE_CHUNK_BYTES and not _gzipped(path))


def _gzipped(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def plan(paths: str | Path | Sequence[str | Path], *, format: str | None = None,
         mappings: Sequence[str | Path] = (), tz: str | None = None,
         progress: ProgressCallback | None = None) -> ParseRun:
    """Resolve inputs into a :class:`ParseRun` that reports *progress*.

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



def parse_to_spill(run: ParseRun, spill: EventSpill) -> pl.DataFrame:
    """Stream a parse into *spill*; the rejects are returned (they are few, or the input is not a log)."""
    rejects = [empty_rejects()]
    # Chunks of small files wait to be written together: a part file costs a couple of milliseconds
    # however few its events (a file of 1,372 Windows events: 1.9 ms). Held and written in order,
    # they leave every slice's events in the order chunk-by-chunk writing gives.
    waiting: list[pl.DataFrame] = []
    rows = 0
    # The next chunk is parsed while this one is written.
    for chunk in ahead(run.chunks()):
        waiting.append(chunk.events)
        rows += chunk.events.height
        if rows >= SPILL_ROWS:
            spill.add(pl.concat(waiting))
            waiting, rows = [], 0
        if chunk.rejects.height:
            rejects.append(chunk.rejects)
    if rows:
        spill.add(pl.concat(waiting))
    return pl.concat(rejects)


def parse_to_parquet(run: ParseRun, events_out: Path, rejects_out: Path | None) -> list[FileReport]:
    """Stream a parse into Parquet files, written under temporary names and renamed when complete."""
    with AtomicParquet(events_out, EVENT_SCHEMA) as events, AtomicParquet(rejects_out, REJECT_SCHEMA) as rejects:
        for chunk in run.chunks():
            events.write(chunk.events)
            rejects.write(chunk.rejects)
    return run.reports


# ---- models ------------------------------------------------------------------------------------

def write_model_card(model: Model, directory: Path, command: str) -> Path:
    """A short human-readable description of a saved model (informative; nothing loads it)."""
    start, end = model.training_span
    lines = [
        f"# Model card: {model.model_id}", "",
        f"- created: {model.created}",
        (f"- trained on events from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC "
         f"({model.metadata.get('training_events', '?')} events)"),
        f"- regenerate with: `{command}`",
        "- scorers: " + ", ".join(f"{k} ({s.n_training_windows} training windows, {len(s.feature_names_)} features)"
                                  for k, s in sorted(model.scorers.items())),
        f"- severity thresholds on the calibrated score: {model.config.get('scoring', {}).get('severity')}",
        f"- library versions: {model.library_versions}", "",
        "Isolation forests over per-account and per-device windows, with a tail component for first-ever",
        "security signals; scores read as \"rarer than this share of the baseline windows\". A model",
        "trained on one utility's logs describes that utility's routine only.", "",
    ]
    skipped = model.metadata.get("skipped_kinds") or {}
    for kind, why in skipped.items():
        lines.append(f"- no {kind} scorer: {why}")
    path = directory / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path
