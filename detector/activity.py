"""Each entity's last activity: what dormancy reads, carried from one slice of a scan (or of a
baseline being learned, or one night) to the next."""

from __future__ import annotations

import polars as pl

from detector.features import ENTITY_KINDS, EntityKind
from detector.features.common import entity_of
from detector.parsers.reader import detached_frame


def remember(last_seen: dict[str, pl.DataFrame], events: pl.DataFrame) -> None:
    """Fold the latest event time per entity of *events* into *last_seen* (by entity kind:
    ``entity_id, last_seen``), as the next slice's earlier activity."""
    # One group-by per kind over the carried rows and the slice's events together, both kinds at once.
    merged = pl.collect_all([_latest(pl.concat([last_seen[kind].lazy(), _activity(events, kind)])
                                     if kind in last_seen else _activity(events, kind))
                             for kind in ENTITY_KINDS])
    for kind, latest in zip(ENTITY_KINDS, merged, strict=True):
        # Detached: the keys would otherwise keep each slice's text buffers alive to the end.
        last_seen[kind] = detached_frame(latest)


def latest_activity(events: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Each entity's latest event in *events* (attributed), by entity kind (``entity_id, last_seen``)."""
    return dict(zip(ENTITY_KINDS, pl.collect_all([_latest(_activity(events, kind)) for kind in ENTITY_KINDS]),
                    strict=True))


def _activity(events: pl.DataFrame, kind: EntityKind) -> pl.LazyFrame:
    """``entity_id, last_seen`` of each of *events* with an entity of *kind*."""
    return (events.lazy().select(entity_of(kind).alias("entity_id"), pl.col("time").alias("last_seen"))
            .drop_nulls("entity_id"))


def _latest(activity: pl.LazyFrame) -> pl.LazyFrame:
    return activity.group_by("entity_id").agg(pl.col("last_seen").max())
