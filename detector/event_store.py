"""The nightly job's Parquet event store as a scan's or a training's input, instead of raw log files.

The store (``STATE/events/``, see :mod:`detector.nightly`) is Hive-partitioned Parquet in the
normalized event schema: ``day=YYYY-MM-DD/part-<batch>.parquet``. A path given to ``scan`` or
``train`` is read as a store when it is such a directory, or a nightly state directory holding one
(``STATE/``, read as ``STATE/events/``). Under a state directory only the parts of committed
batches are read (what :func:`detector.nightly.store_events` returns); parts a crashed run left
behind are not.

Its parts are read in order (day, then part name; rows as written), by the local engine with polars
and by the Spark engine with ``spark.read.parquet``, into the run's spill (:mod:`detector.spill`):
the rest of the scan is the same as for parsed logs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from detector.errors import InputError
from detector.schema import EVENT_SCHEMA

_DAY = re.compile(r"day=\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class EventStore:
    """An event store's directory and the Parquet parts to read from it, in order."""

    directory: Path
    parts: tuple[Path, ...]

    def key(self, part: Path) -> str:
        """*part* named as ``day=D/part-X.parquet`` (how a Spark task finds its place in :attr:`parts`)."""
        return f"{part.parent.name}/{part.name}"


def _days(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and _DAY.fullmatch(p.name))


def _store_directory(path: Path) -> Path | None:
    """The event-store directory *path* is (or holds, as a nightly state directory), else None."""
    if not path.is_dir():
        return None
    if (path / "state.json").is_file() and (path / "events").is_dir():
        return path / "events"
    # Day partitions of Parquet parts: a folder of raw exports sorted into day= folders is not a store.
    return path if any(next(day.glob("part-*.parquet"), None) for day in _days(path)) else None


def _committed(store: Path) -> tuple[Path, ...] | None:
    """The parts of committed batches, when *store* is a nightly state's ``events/`` (else None)."""
    state_dir = store.parent
    if store.name != "events" or not (state_dir / "state.json").is_file():
        return None
    # The nightly job's own reading of its state (imported here: the nightly job sits above the runner).
    from detector.nightly.state import Layout, committed_parts, load_state

    layout = Layout(state_dir)
    return tuple(p for paths in committed_parts(layout, load_state(layout)).values() for p in paths)


def event_store_of(paths: Sequence[str | Path]) -> EventStore | None:
    """The event store *paths* name (one directory), or None when they are log files.

    Raises
    ------
    InputError
        When a store is given with other paths, or holds no event part.
    """
    stores = [(Path(p), _store_directory(Path(p))) for p in paths]
    found = [(given, store) for given, store in stores if store is not None]
    if not found:
        return None
    if len(stores) > 1:
        raise InputError(f"{found[0][0]} is an event store: give one store, or log files, not both")
    directory = found[0][1]
    assert directory is not None
    committed = _committed(directory)
    parts = committed if committed is not None else tuple(
        part for day in _days(directory) for part in sorted(day.glob("part-*.parquet")))
    if not parts:
        raise InputError(f"the event store {directory} holds no events (no day=YYYY-MM-DD/part-*.parquet)")
    return EventStore(directory, parts)


def read_part(part: Path) -> pl.DataFrame:
    """One part of a store in the normalized event schema.

    Raises
    ------
    InputError
        When the file is not Parquet, or lacks columns of the schema (naming the file).
    """
    try:
        frame = pl.read_parquet(part, hive_partitioning=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"{part}: not a readable Parquet part of an event store ({exc})") from None
    return conform(frame, str(part))


def conform(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    """*frame* (a store's rows, as polars or Spark wrote them) in the normalized event schema."""
    missing = [name for name in EVENT_SCHEMA if name not in frame.columns]
    if missing:
        raise InputError(f"{where}: not in the normalized event schema (missing {', '.join(missing)})")
    try:
        return frame.select(list(EVENT_SCHEMA)).cast(EVENT_SCHEMA)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{where}: a column does not fit the normalized event schema ({exc})") from None
