"""Several small files of one format parsed as one chunk, with the output each would give alone.

A small file's parse is mostly fixed cost: some hundred polars queries over a few lines each. The
lines of a run of small files are numbered ``file index << FILE_SHIFT | line`` and staged, finalized
and counted in one pass, then split back into one :class:`ParsedChunk` per file, each equal to what
:func:`~detector.parsers.parse_file` gives for that file (rows, order, columns, rejects, time fields).

Only parsers that declare ``together`` take part, and they raise :class:`~.base.FilesApart` where a
line's reading depends on the rest of its own file; then, and whenever a file is not plain clean
text (damaged lines, over-long lines, unreadable), the caller parses the files one by one, which
also reports each file's own error as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl

from detector.errors import DetectorError
from detector.parsers.base import (
    FILE_OF_LINE,
    FILE_SHIFT,
    ParseOptions,
    Parser,
    finalize,
    reject_long_lines,
    settled_rejects,
    time_field_counts,
)
from detector.parsers.reader import read_line_chunks
from detector.schema import EVENT_SCHEMA, REJECT_SCHEMA


def parse_together(paths: Sequence[Path], parser: type[Parser], options: ParseOptions
                   ) -> list[tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]] | None:
    """Each file's ``(events, rejects, time_fields)`` from one parse of all their lines, or None when
    the files are to be parsed one by one (see the module docstring)."""
    lines: list[pl.DataFrame] = []
    texts: list[bytes] = []
    references: list[datetime] = []
    for index, path in enumerate(paths):
        try:
            references.append(options.reference_time or datetime.fromtimestamp(path.stat().st_mtime))
            chunks = list(read_line_chunks(path, parser.chunk_bytes))
        except (OSError, DetectorError):
            return None
        for chunk in chunks:
            kept, too_long = reject_long_lines(chunk.lines)
            if chunk.bad_lines.height or too_long.height or chunk.text is None:
                return None
            lines.append(kept.with_columns(pl.col("raw_line") + (index << FILE_SHIFT)))
            texts.append(chunk.text if chunk.text.endswith(b"\n") else chunk.text + b"\n")
    # Yearless stamps take their file's year: files of different years are not read as one.
    if len({ref.year for ref in references}) > 1:
        return None
    instance = parser(str(paths[0]), ParseOptions(tz=options.tz, reference_time=min(references)))
    instance.files_together = True
    try:
        staged = instance.parse_chunk(pl.concat(lines), b"".join(texts))
        if instance.finish() is not None:
            return None
        events, rejects = finalize(staged, source_format=parser.name, raw_file="",
                                   source_system=parser.source_system, cleaned=parser.cleaned)
        time_fields = _time_fields(staged)
    except Exception:  # noqa: BLE001 - whatever it is, each file parsed alone meets it (or not) as usual
        return None
    events_of = _by_file(events)
    rejects_of = _by_file(rejects)
    parsed = []
    for index, path in enumerate(paths):
        file_events = _in_file(events_of.get(index, events.clear()), path).cast(EVENT_SCHEMA)
        file_rejects = settled_rejects(_in_file(rejects_of.get(index, rejects.clear()), path).cast(REJECT_SCHEMA))
        parsed.append((file_events, file_rejects, time_fields.get(index, {})))
    return parsed


def _time_fields(staged: pl.DataFrame) -> dict[int, dict[str, int]]:
    """Each file's count of kept events per time field."""
    counts = time_field_counts(staged, FILE_OF_LINE)
    fields: dict[int, dict[str, int]] = {}
    for index, name, n in counts.iter_rows() if counts is not None else ():
        fields.setdefault(int(index), {})[str(name)] = int(n)
    return fields


def _by_file(frame: pl.DataFrame) -> dict[int, pl.DataFrame]:
    parts = frame.with_columns(FILE_OF_LINE).partition_by(
        "_file", as_dict=True, include_key=False, maintain_order=True)
    return {int(key[0]): part for key, part in parts.items()}


def _in_file(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    return frame.with_columns(raw_file=pl.lit(str(path), pl.String), raw_line=pl.col("raw_line") % (1 << FILE_SHIFT))
