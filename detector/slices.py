"""Scoring one time slice at a time, so that memory follows the size of a slice, not of the logs.

Window features depend on the window's own events and the model's baseline profiles, with one
exception: dormancy, the time since the entity was last active. Across slices that is carried
forward as each entity's last event so far, which the next slice sees as the profiles'
``last_seen`` (the later of it and a baseline ``last_seen`` from before the slice). Scored slice
by slice, the findings are those of scoring everything at once.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from detector.config import Config
from detector.detection import findings_of, lean_windows
from detector.features.common import entity_of
from detector.findings import read_ranked
from detector.model_store import Model
from detector.overlap import ahead
from detector.parsers.reader import detached_frame

# Per entity kind: the profile table holding its last_seen, its key there, and its entity column.
_ACTIVITY = {
    "account_activity": ("account", entity_of("account")),
    "device_activity": ("device_id", entity_of("device")),
}

SliceSource = Iterable[tuple[datetime, int, pl.LazyFrame]]
"""``(slice start, events in it, its events)`` in time order (see :mod:`detector.spill`)."""


def score_slices(slices: SliceSource, model: Model, config: Config | None = None, *, min_severity: str = "low",
                 scored_from: datetime | None = None,
                 on_slice: Callable[[int], None] | None = None) -> tuple[pl.DataFrame, int]:
    """Findings of every slice, ranked, and the number of events scored.

    Events before *scored_from* are not scored; *on_slice* is called with each slice's event count
    once it is done (for progress). The next slice's windows are built while this one's are scored
    (see :func:`~detector.overlap.ahead`).
    """
    scored = 0
    with tempfile.TemporaryDirectory(prefix="ami-detector-findings-") as directory:
        # Each slice's findings go to disk and are read back at the end: kept in memory, a slice's
        # few thousand findings among its large temporaries held about twice their size (1.1 GiB
        # more at 50M events).
        parts: list[Path] = []
        for windowed in ahead(_lean_windows(slices, model, config, scored_from)):
            if windowed.events.height:
                found = findings_of(windowed.windows, windowed.events, windowed.model, config, min_severity)
                scored += windowed.events.height
                if found.height:
                    parts.append(Path(directory) / f"{len(parts):06d}.parquet")
                    found.write_parquet(parts[-1], compression="lz4", statistics=False)
            if on_slice is not None:
                on_slice(windowed.count)
        return read_ranked(parts), scored


@dataclasses.dataclass(frozen=True)
class _Windowed:
    count: int  # events in the slice, before scored_from
    events: pl.DataFrame  # its events from scored_from on
    model: Model  # the model with the activity of earlier slices carried
    windows: dict[str, pl.DataFrame]  # lean windows, by entity kind


def _lean_windows(slices: SliceSource, model: Model, config: Config | None,
                  scored_from: datetime | None) -> Iterator[_Windowed]:
    """Each slice's events and lean windows, the entities' last activity carried from slice to slice."""
    last_seen: dict[str, pl.DataFrame] = {}
    for start, count, events in slices:
        if scored_from is not None:
            events = events.filter(pl.col("time") >= scored_from)
        frame = events.collect()
        if not frame.height:
            yield _Windowed(count, frame, model, {})
            continue
        carried = _carried(model, last_seen, start)
        windows = lean_windows(frame, carried, config)
        _remember(last_seen, frame)
        yield _Windowed(count, frame, carried, windows)


def _remember(last_seen: dict[str, pl.DataFrame], events: pl.DataFrame) -> None:
    """Fold the latest event time per entity of *events* into *last_seen*."""
    for table, (key, entity) in _ACTIVITY.items():
        latest = (events.lazy().select(entity.alias(key), "time").drop_nulls(key)
                  .group_by(key).agg(_seen=pl.col("time").max()))
        if table in last_seen:
            latest = pl.concat([last_seen[table].lazy(), latest]).group_by(key).agg(pl.col("_seen").max())
        # Detached: the keys would otherwise keep each slice's text buffers alive to the end.
        last_seen[table] = detached_frame(latest.collect())


def _carried(model: Model, last_seen: dict[str, pl.DataFrame], start: datetime) -> Model:
    """*model* with the entities' activity in earlier slices as their profiles' ``last_seen``."""
    if not last_seen:
        return model
    tables = dict(model.tables)
    for table, (key, _) in _ACTIVITY.items():
        if table not in last_seen:
            continue
        baseline = pl.col("last_seen")
        tables[table] = (
            model.tables[table].join(last_seen[table], on=key, how="full", coalesce=True)
            .with_columns(last_seen=pl.when(pl.col("_seen").is_null()).then(baseline).otherwise(
                # A baseline last_seen inside or after this slice says nothing about the time before it.
                pl.max_horizontal("_seen", pl.when(baseline < start).then(baseline))))
            .drop("_seen")
        )
    return dataclasses.replace(model, tables=tables)
