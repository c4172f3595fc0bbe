"""Scoring one time slice at a time, so that memory follows the size of a slice, not of the logs.

Window features depend on the window's own events and the model's baseline profiles, with one
exception: dormancy, the time since the entity was last active. Across slices that is carried
forward as each entity's last event so far, which the next slice sees as the profiles'
``last_seen`` (the later of it and a baseline ``last_seen`` from before the slice). Scored slice
by slice, the findings are those of scoring everything at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime

import polars as pl

from detector.config import Config
from detector.detection import score
from detector.features.common import entity_of
from detector.findings import empty_findings, rank
from detector.model_store import Model
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
    once it is done (for progress).
    """
    parts, scored = [empty_findings()], 0
    last_seen: dict[str, pl.DataFrame] = {}
    for start, count, events in slices:
        if scored_from is not None:
            events = events.filter(pl.col("time") >= scored_from)
        frame = events.collect()
        if frame.height:
            parts.append(score(frame, _carried(model, last_seen, start), config, min_severity=min_severity))
            scored += frame.height
            _remember(last_seen, frame)
        if on_slice is not None:
            on_slice(count)
    return rank(pl.concat(parts)), scored


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
