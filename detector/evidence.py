"""The events and raw log lines behind findings: where they are cited, read back by line number, and
kept beside saved findings (``evidence.parquet``) so that a finding can be explained after the logs
have rotated away."""

from __future__ import annotations

import codecs
import itertools
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from detector.atomic import atomic_write
from detector.errors import DetectorError
from detector.overlap import two_at_a_time
from detector.parsers.reader import CONTROL_TEXT, GZIP_MAGIC, detached, read_line_chunks
from detector.schema import REJECT_RAW_BYTES

EVIDENCE_FILE: Final = "evidence.parquet"


def evidence_locations(evidence: pl.Series | Sequence[str]) -> pl.DataFrame:
    """``raw_file:raw_line`` strings as a (raw_file, raw_line) table; the last colon splits."""
    values = evidence if isinstance(evidence, pl.Series) else pl.Series("evidence", list(evidence), dtype=pl.String)
    return (pl.DataFrame({"evidence": values.cast(pl.String)})
            .select(**evidence_location_columns(pl.col("evidence")))
            .drop_nulls().unique(maintain_order=True))


def evidence_location_columns(evidence: pl.Expr) -> dict[str, pl.Expr]:
    """``raw_file`` and ``raw_line`` of ``raw_file:raw_line`` strings (null when not one)."""
    return {"raw_file": evidence.str.extract(r"^(.*):\d+$", 1),
            "raw_line": evidence.str.extract(r":(\d+)$", 1).cast(pl.Int64)}


def read_raw_lines(locations: pl.DataFrame, *, max_chars: int = REJECT_RAW_BYTES) -> pl.DataFrame:
    """The raw text of the given lines of log files, read by line number.

    Each file is read once, a bounded block at a time, and only up to the last line asked for;
    nothing else is kept. Plain UTF-8 files are read as bytes whose newlines are counted (only the
    cited lines are decoded: several times faster than splitting every line into text); gzip and
    UTF-16 files are read as the parsers read them. Either way lines are numbered as the parsers
    number them. Two files are read at once.

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
    raw = pl.concat([pl.DataFrame(schema=_TEXTS), *(text for _, text in _texts(wanted, max_chars))])
    return wanted.join(raw, on=["raw_file", "raw_line"], how="left", maintain_order="left").with_columns(
        truncated=pl.col("raw").str.len_chars().fill_null(0) > max_chars,
        raw=pl.col("raw").str.slice(0, max_chars))


def _texts(locations: pl.DataFrame, max_chars: int) -> Iterator[tuple[str, pl.DataFrame]]:
    """Each file of *locations* (in the order they first appear) with ``raw_file``, ``raw_line``, ``raw``
    (up to *max_chars* + 1 characters) of its readable lines among them; two files are read at once."""
    files = (locations.select("raw_file", "raw_line").unique().sort("raw_line")
             .partition_by("raw_file", as_dict=True, include_key=False))
    order = locations.get_column("raw_file").unique(maintain_order=True).to_list()

    def read(path: str) -> tuple[str, pl.DataFrame]:
        numbers = files[(path,)].get_column("raw_line")
        try:
            hit = _plain_lines(path, numbers, max_chars)
            if hit is None:
                hit = _decoded_lines(path, numbers, max_chars)
        except (DetectorError, OSError):
            return path, pl.DataFrame(schema=_TEXTS)  # the file has moved or changed: its lines stay null
        return path, hit.select(pl.lit(path, pl.String).alias("raw_file"), "raw_line", "raw")

    return two_at_a_time(iter(order), read)


_LINES: Final = {"raw_line": pl.Int64, "raw": pl.String}
_TEXTS: Final = {"raw_file": pl.String, **_LINES}
_BLOCK_BYTES: Final = 1 << 20  # small enough to stop soon after the last line wanted
_CONTROL: Final = re.compile(CONTROL_TEXT)  # as the reader: such a line is not text


def _decoded_lines(path: str, numbers: pl.Series, max_chars: int) -> pl.DataFrame:
    """Lines *numbers* of any file the parsers read (gzip, UTF-16), through their reader."""
    last = numbers.max()
    found = [pl.DataFrame(schema=_LINES)]
    for chunk in read_line_chunks(path):
        hit = chunk.lines.filter(pl.col("raw_line").is_in(numbers.implode()))
        if hit.height:
            found.append(hit.with_columns(detached(hit.get_column("raw").str.slice(0, max_chars + 1))))
        if chunk.lines.height and chunk.lines.get_column("raw_line").max() >= last:  # type: ignore[operator]
            break
    return pl.concat(found)


def _plain_lines(path: str, numbers: pl.Series, max_chars: int, *, block_bytes: int = _BLOCK_BYTES
                 ) -> pl.DataFrame | None:
    """Lines *numbers* (sorted, 1-based) of a plain UTF-8 file, or None for a gzip or UTF-16 file.

    Numbered as :func:`~detector.parsers.reader.read_line_chunks` numbers them (every newline ends
    a line, a UTF-8 byte-order mark and a line's final carriage return dropped); a line that is not
    valid text (undecodable, control bytes) is left out, as the reader leaves it out of its lines.
    """
    want = numbers.to_numpy()
    got_lines: list[int] = []
    got_text: list[str] = []
    with open(path, "rb") as fh:
        head = fh.read(3)
        if head.startswith((GZIP_MAGIC, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return None
        fh.seek(3 if head == codecs.BOM_UTF8 else 0)
        first = 1  # the number of the first line in *data*
        carry = b""
        at = 0  # how many of *want* are done
        while at < len(want):
            block = fh.read(block_bytes)
            data = carry + block if carry else block
            newlines = _Newlines(data, last=not block)
            upto = at + int(np.searchsorted(want[at:], first + newlines.lines))
            index = want[at:upto] - first
            # The newline before each line and the one ending it, looked up together (sorted).
            ends = newlines.at(np.stack([np.maximum(index - 1, 0), index], axis=1).ravel()).reshape(-1, 2)
            starts = np.where(index > 0, ends[:, 0] + 1, 0)
            for number, start, stop in zip(want[at:upto].tolist(), starts.tolist(), ends[:, 1].tolist(), strict=True):
                text = _text(data[start:stop])
                if text is not None:
                    got_lines.append(number)
                    got_text.append(text[:max_chars + 1])
            at = upto
            if not block:
                break
            carry = data[data.rfind(b"\n") + 1:]
            first += newlines.lines
    return pl.DataFrame({"raw_line": got_lines, "raw": got_text}, schema=_LINES)


class _Newlines:
    """Where the newlines of *data* are, all found in one numpy pass: the lines a scan's findings cite
    are spread over whole files, so counting newlines a piece at a time and then placing them in the
    pieces asked about went over nearly every byte twice.

    With *last* (the end of the file), text after the last newline is one more line, ending at the end.
    """

    def __init__(self, data: bytes, *, last: bool) -> None:
        self.size = len(data)
        self.ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        self.unended = last and bool(data) and not data.endswith(b"\n")
        self.lines = len(self.ends) + self.unended

    def at(self, index: np.ndarray) -> np.ndarray:
        """The offset of the newline that ends each line *index* (0-based, all below :attr:`lines`)."""
        found = np.full(len(index), self.size, np.int64)  # a last line without its newline
        ended = index < len(self.ends)
        found[ended] = self.ends[index[ended]]
        return found


def _text(line: bytes) -> str | None:
    try:
        text = line.removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


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
    # The line numbers first (integers: a cheap lookup that most events fail), then the locations.
    lines = locations.get_column("raw_line").cast(pl.Int64).unique().implode()
    return (events.lazy().filter(pl.col("raw_line").is_in(lines)).filter(location.is_in(wanted))
            .collect(engine="streaming").sort("time", "raw_file", "raw_line"))


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
    """Write :func:`cited_events` to the Parquet file *path* (atomically), a few log files at a time.

    Hundreds of thousands of findings cite millions of events; with their raw lines those would not
    fit beside the findings, so the log files' cited lines are read and go to disk with their events
    in batches of about :data:`BATCH_BYTES` of raw text (one batch, the usual case, is the file itself).
    The rows come grouped by log file, in time order within each.
    """
    behind = _behind(events, findings)

    def write(tmp: Path) -> None:
        if not behind.height:
            _with_raw(behind).write_parquet(tmp)  # no rows: the columns only
            return
        if _has_raw(behind):
            behind.write_parquet(tmp)
            return
        # Each file's rows where the file first appears, in time order: batches are runs of whole files.
        grouped = (behind.drop("raw", strict=False).with_row_index("_first")
                   .with_columns(pl.col("_first").min().over("raw_file"))
                   .sort("_first", maintain_order=True).drop("_first"))
        rows = dict(grouped.group_by("raw_file").len().iter_rows())
        batches = _batches(_texts(grouped.select("raw_file", "raw_line"), REJECT_RAW_BYTES))
        first = next(batches)
        second = next(batches, None)
        if second is None:
            _joined(grouped, first[1]).write_parquet(tmp)
            return
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".evidence-") as parts:
            done = 0
            for i, (files, texts) in enumerate(itertools.chain([first, second], batches)):
                n = sum(rows[f] for f in files)
                _joined(grouped.slice(done, n), texts).write_parquet(Path(parts) / f"{i:08d}.parquet")
                done += n
            pl.scan_parquet(Path(parts) / "*.parquet").sink_parquet(tmp)

    atomic_write(path, write)


def _joined(events: pl.DataFrame, texts: pl.DataFrame) -> pl.DataFrame:
    """*events* with the raw lines of *texts* (cut to the stored length) in a ``raw`` column."""
    return events.join(texts.with_columns(pl.col("raw").str.slice(0, REJECT_RAW_BYTES)), on=["raw_file", "raw_line"],
                       how="left", maintain_order="left")


BATCH_BYTES: Final = 64 << 20
"""About how much raw text :func:`write_cited_events` holds before writing it out."""


def _batches(parts: Iterator[tuple[str, pl.DataFrame]]) -> Iterator[tuple[list[str], pl.DataFrame]]:
    """Files' raw lines (*parts*) together, in order, in batches of about :data:`BATCH_BYTES` of text:
    the files of each batch and their lines."""
    files: list[str] = []
    held: list[pl.DataFrame] = []
    size = 0
    for file, part in parts:
        files.append(file)
        held.append(part)
        size += int(part.get_column("raw").str.len_bytes().sum() or 0)
        if size >= BATCH_BYTES:
            yield files, pl.concat(held)
            files, held, size = [], [], 0
    if files:
        yield files, pl.concat(held)
