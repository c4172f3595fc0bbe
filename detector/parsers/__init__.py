"""Parsers for raw HES, DMS, Windows and VPN exports, a registry of them, and format sniffing.

``PARSERS`` maps each built-in format name to its :class:`Parser` class. A mapping file (TOML)
describing another CSV or JSON-lines export becomes a parser class too (:mod:`.mapping`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from detector.errors import FormatError, InputError
from detector.overlap import two_at_a_time
from detector.parsers.base import (
    START_LINES,
    ParseOptions,
    Parser,
    finalize,
    reject_long_lines,
    settled_rejects,
    time_field_counts,
)
from detector.parsers.cef import Cef
from detector.parsers.dms_syslog import DmsSyslog
from detector.parsers.hes_audit_csv import HesAuditCsv
from detector.parsers.hes_commands_jsonl import HesCommandsJsonl
from detector.parsers.reader import LineChunk, read_head, read_line_chunks
from detector.parsers.winevtx import Evtx, is_evtx
from detector.parsers.winsec_jsonl import WinsecJsonl
from detector.schema import REJECT_SCHEMA

# Sniffing tries formats in this order; more specific shapes come first.
PARSERS: dict[str, type[Parser]] = {
    cls.name: cls
    for cls in (HesAuditCsv, HesCommandsJsonl, WinsecJsonl, Cef, DmsSyslog, Evtx)
}


@dataclass(frozen=True)
class ParsedChunk:
    """Normalized events and rejects from one chunk of one file."""

    events: pl.DataFrame
    rejects: pl.DataFrame
    # Which field the events' times came from, and how many each (``@timestamp``, ``EventTime (--tz
    # America/Chicago)``...): the file report says it, so a user sees which clock was believed.
    time_fields: dict[str, int] = field(default_factory=dict)


def get_parser(name: str, extra: Sequence[type[Parser]] = ()) -> type[Parser]:
    known = {p.name: p for p in extra} | PARSERS
    try:
        return known[name]
    except KeyError:
        raise FormatError(f"unknown format {name!r}; known formats: {', '.join(sorted(known))}") from None


def sniff(path: str | Path, extra: Sequence[type[Parser]] = ()) -> type[Parser]:
    """The parser whose format the first lines of *path* match; mapping parsers are tried first.

    Raises
    ------
    FormatError
        When no format matches.
    InputError
        When the file cannot be read as text.
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(b"ElfFile\x00"))
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror or exc}", source=(str(path), None)) from None
    if is_evtx(magic):
        return Evtx
    head = read_head(path)
    for parser in [*extra, *PARSERS.values()]:
        if parser.sniff(head):
            return parser
    raise FormatError("unknown format: no parser recognises the first lines; name one with --format, "
                      "or describe the export with a --mapping file", source=(str(path), None))


def parse_file(path: str | Path, parser: type[Parser], options: ParseOptions | None = None
               ) -> Iterator[ParsedChunk]:
    """Parse one file chunk by chunk into normalized events and rejects.

    Timestamps without a year are placed using the file's modification time unless *options*
    gives a reference time.
    """
    path = Path(path)
    options = options or ParseOptions()
    if options.reference_time is None:
        try:
            options = ParseOptions(tz=options.tz, reference_time=datetime.fromtimestamp(path.stat().st_mtime))
        except OSError:
            pass
    instance = parser(str(path), options)

    def done(staged: pl.DataFrame, unreadable: pl.DataFrame) -> ParsedChunk:
        time_fields = _time_fields(staged)
        events, rejects = finalize(staged, source_format=parser.name, raw_file=str(path),
                                   source_system=parser.source_system, cleaned=parser.cleaned)
        unreadable = unreadable.select(
            raw_file=pl.lit(str(path)), raw_line="raw_line", source_format=pl.lit(parser.name), reason="reason",
            raw="raw").cast(REJECT_SCHEMA)
        return ParsedChunk(events, settled_rejects(pl.concat([unreadable, rejects])), time_fields)

    def parse(chunk: LineChunk) -> ParsedChunk:
        lines, too_long = reject_long_lines(chunk.lines)
        text = chunk.text if not too_long.height else None  # the text holds every line
        return done(instance.parse_chunk(lines, text), pl.concat([chunk.bad_lines, too_long]))

    # A binary format (EVTX) reads its own records; every other format is text lines.
    source = instance.read_chunks() if isinstance(instance, Evtx) else read_line_chunks(path, parser.chunk_bytes)
    if parser.independent_chunks:
        read = 0
        for chunk in source:
            read += chunk.lines.height + chunk.bad_lines.height
            if read >= START_LINES:
                yield from two_at_a_time(itertools.chain([chunk], source), parse)
                break
            # The next chunk (a last line without a newline, say) starts among the lines that ask for --tz
            # when no line before them showed an offset: parsed beside this one, whether it asks would
            # depend on which ran first.
            yield parse(chunk)
    else:
        yield from map(parse, source)
    rest = instance.finish()
    if rest is not None:
        yield done(rest, _NO_BAD_LINES)


def _time_fields(staged: pl.DataFrame) -> dict[str, int]:
    counts = time_field_counts(staged)
    return {} if counts is None else {str(name): int(n) for name, n in counts.iter_rows()}


_NO_BAD_LINES = pl.DataFrame(schema={"raw_line": pl.Int64, "reason": pl.String, "raw": pl.String})


__all__ = ["PARSERS", "ParseOptions", "ParsedChunk", "Parser", "get_parser", "parse_file", "sniff"]
