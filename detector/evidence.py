"""The events and raw log lines behind findings: where they are cited, read back by line number, and
kept beside saved findings (``evidence.parquet``) so that a finding can be explained after the logs
have rotated away."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import polars as pl

from detector.atomic import atomic_write
from detector.errors import DetectorError
from detector.overlap import two_at_a_time
from detector.parsers.reader import detached, read_line_chunks
from detector.schema import REJECT_RAW_BYTES

EVIDENCE_FILE: Final = "evidence.parquet"


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
                    text = detached(hit.get_column("raw").str.slice(0, max_chars + 1))
                    found.append(hit.with_columns(text, raw_file=pl.lit(path, pl.String)))
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


