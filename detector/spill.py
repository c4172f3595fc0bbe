"""Parsed events on disk, one directory per time slice, so that a scan never holds them all at once.

A scan parses its inputs chunk by chunk into a spill, then scores it one slice at a time
(:mod:`detector.slices`). Slices are whole numbers of feature windows (a day of 1-hour windows by
default), aligned like the windows, so every window lies inside exactly one slice however the
input files are ordered. Files are Parquet (lz4: cheap to write and read back); a part leaves out the
columns that none of its events fill (a command log's events fill 16 of 25: writing its part takes
17 instead of 23 ms), and :func:`scan_parts` puts them back as nulls.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Self

import polars as pl

from detector.schema import EVENT_SCHEMA

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def slice_length(window: timedelta) -> timedelta:
    """The longest whole number of *window* that fits in a day (at least one window)."""
    return window * max(1, timedelta(days=1) // window)


# Consecutive slices with few events are read as one while together they hold at most this many: building
# a slice's windows and profiles runs a few hundred polars queries whatever its size (about 0.15 s to
# score one), so a small utility's months of day slices cost more in queries than in events. A day of
# the benchmarks' large utilities (about 300,000 events) stays a slice of its own, and memory follows a
# group as it follows a slice.
GROUP_EVENTS: Final = 250_000


def slice_index(length: timedelta) -> pl.Expr:
    """The slice of each event's ``time``: microseconds since the epoch, floor-divided by *length*."""
    return pl.col("time").dt.epoch("us") // (length // _MICROSECOND)


def slice_start(index: int, length: timedelta) -> datetime:
    return _EPOCH + length * index


class EventSpill:
    """Events in the normalized schema, written as they are parsed and read back slice by slice.

    Parameters
    ----------
    directory
        Where the slices go (created if needed). :meth:`temporary` makes a private one that
        :meth:`remove` (or leaving a ``with`` block) deletes.
    length
        The slice length (see :func:`slice_length`).
    part_prefix
        Put in the name of each part file, so that several writers (the Spark engine's tasks, one
        per input file) can fill one directory; parts are read in name order.
    """

    def __init__(self, directory: Path, length: timedelta, *, part_prefix: str = "") -> None:
        self.directory = Path(directory)
        self.length = length
        self.events = 0
        self._counts: dict[int, int] = {}
        self._parts = 0
        self._prefix = part_prefix
        self.directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def temporary(cls, length: timedelta, parent: str | Path | None = None) -> EventSpill:
        """A spill in a new private directory under *parent* (default: the system's temporary directory).

        *parent* is created if missing and never removed: :meth:`remove` deletes only the new
        directory, so a shared spill directory (``--spill-dir``) may hold other runs and files.
        """
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix="ami-detector-spill-", dir=parent)), length)

    def add(self, events: pl.DataFrame) -> None:
        """Append parsed events (any time order)."""
        if not events.height:
            return
        for index, part in _by_slice(events, self.length):
            folder = self.directory / f"slice={index}"
            folder.mkdir(exist_ok=True)
            self._parts += 1
            name = f"part-{self._prefix}{self._parts:06d}.parquet"
            filled = [c for c in part.columns if c == "time" or part.get_column(c).null_count() < part.height]
            part.select(filled).write_parquet(folder / name, compression="lz4", statistics=False)
            self._counts[index] = self._counts.get(index, 0) + part.height
        self.events += events.height

    @property
    def counts(self) -> dict[int, int]:
        """Events per slice index."""
        return dict(self._counts)

    def record(self, counts: dict[int, int]) -> None:
        """Count parts another writer put in this directory (events per slice index)."""
        for index, n in counts.items():
            self._counts[index] = self._counts.get(index, 0) + n
            self.events += n

    def read_slice(self, index: int) -> pl.LazyFrame:
        """The events of one slice (by index)."""
        return self._scan(f"slice={index}/*.parquet")

    def _scan(self, pattern: str) -> pl.LazyFrame:
        return scan_parts(self.directory / pattern)

    def slices(self) -> Iterator[tuple[datetime, int, pl.LazyFrame]]:
        """``(slice start, events, the slice's events)`` in time order."""
        for index in sorted(self._counts):
            yield slice_start(index, self.length), self._counts[index], self.read_slice(index)

    def scan(self) -> pl.LazyFrame:
        """Every event of the spill (lazily)."""
        if not self._counts:
            return pl.LazyFrame(schema=EVENT_SCHEMA)
        return self._scan("slice=*/*.parquet")

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _by_slice(events: pl.DataFrame, length: timedelta) -> Iterator[tuple[int, pl.DataFrame]]:
    """*events* cut into their slices, each in the events' order, in the order the slices first appear.

    Events come in runs of time order (a log, a file of a run of small files read together): each run
    of one slice is a view of its rows, and a slice is its runs put together without a copy.
    """
    index = events.select(slice_index(length)).to_series()
    run_lengths = index.rle().struct.unnest().select("value", "len")
    if run_lengths.height > _MAX_RUNS:  # events in no order at all: one copy of the rows, by slice
        keyed = events.with_columns(_slice=index)
        for (value,), part in keyed.partition_by("_slice", as_dict=True, include_key=False).items():
            yield value, part
        return
    runs: dict[int, list[pl.DataFrame]] = {}
    start = 0
    for value, count in run_lengths.iter_rows():
        runs.setdefault(value, []).append(events.slice(start, count))
        start += count
    for value, parts in runs.items():
        yield value, parts[0] if len(parts) == 1 else pl.concat(parts, rechunk=False)


_MAX_RUNS = 256


def scan_parts(source: Path | str) -> pl.LazyFrame:
    """Part files of a spill (a path or glob) in the event schema, the columns a part left out null."""
    return pl.scan_parquet(source, schema=EVENT_SCHEMA, hive_partitioning=False, missing_columns="insert")


def in_memory_slices(events: pl.DataFrame, length: timedelta) -> Iterator[tuple[datetime, int, pl.LazyFrame]]:
    """Events already in memory cut into the slices an :class:`EventSpill` would hold.

    Each slice is a filter over *events*, collected only when it is read: cutting them all at once
    would copy every event while the caller still holds them.
    """
    counts = events.select(slice_index(length).alias("_slice")).group_by("_slice").len().sort("_slice")
    for index, count in counts.iter_rows():
        yield slice_start(index, length), count, events.lazy().filter(slice_index(length) == index)


def grouped(slices: Iterable[tuple[datetime, int, pl.LazyFrame]], at_most: int = GROUP_EVENTS
            ) -> Iterator[tuple[datetime, int, pl.LazyFrame]]:
    """Consecutive *slices* (``(start, events, frame)``, in time order) joined into one while together
    they hold at most *at_most* events; a slice of more is alone, and 0 leaves every slice alone. A
    group starts when its first slice does, and its events are theirs in order."""
    group: list[tuple[datetime, int, pl.LazyFrame]] = []
    total = 0
    for piece in slices:
        if group and total + piece[1] > at_most:
            yield _joined(group, total)
            group, total = [], 0
        group.append(piece)
        total += piece[1]
    if group:
        yield _joined(group, total)


def _joined(group: list[tuple[datetime, int, pl.LazyFrame]], total: int) -> tuple[datetime, int, pl.LazyFrame]:
    if len(group) == 1:
        return group[0]
    return group[0][0], total, pl.concat([events for _, _, events in group])
