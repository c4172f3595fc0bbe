"""Each entity's last activity: what dormancy reads, carried from one slice of a scan (or of a
baseline being learned, or one night) to the next."""

from __future__ import annotations

import polars as pl

from detector.features import ENTITY_KINDS
from detector.features.common import entity_of
from detector.parsers.reader import detached_frame


def remember(last_seen: dict[str, pl.DataFrame], events: pl.DataFrame) -> None:
    """Fold the latest event time per entity of *events* into *last_seen* (by entity kind:
    ``entity_id, last_seen``), as the next slice's earlier activity."""
    for kind, latest in latest_activity(events).items():
        if kind in last_seen:
            latest = pl.concat([last_seen[kind], latest]).group_by("entity_id").agg(pl.col("last_seen").max())
        # Detached: the keys would otherwise keep each slice's text buffers alive to the end.
        last_seen[kind] = detached_frame(latest)


def latest_activity(events: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Each entity's latest event in *events* (attributed), by entity kind (``entity_id, last_seen``)."""
    return {kind: (events.lazy().select(entity_of(kind).alias("entity_id"), "time").drop_nulls("entity_id")
                   .group_by("entity_id").agg(last_seen=pl.col("time").max()).collect())
            for kind in ENTITY_KINDS}
