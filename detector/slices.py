"""Scoring one time slice at a time, so that memory follows the size of a slice, not of the logs.

Window features depend on the window's own events and the model's baseline profiles, with one
exception: dormancy, the time since the entity was last active. Across slices that is carried
forward as each entity's last event so far, which the next slice's windows read as their earlier
activity. Scored slice by slice, the findings are those of scoring everything at once.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from detector.attribution import attribute
from detector.config import Config
from detector.detection import findings_of, lean_windows, profiles_of
from detector.features import ENTITY_KINDS, Profiles
from detector.features.common import entity_of
from detector.findings import read_ranked
from detector.incidents import LINKS_COLUMN, assign_incidents
from detector.model_store import Model
from detector.overlap import ahead
from detector.parsers.reader import detached_frame
from detector.signals import SignalState

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
    # One Profiles for every slice: what is derived from them is computed once (Profiles.derived).
    profiles = profiles_of(model)
    state = SignalState.empty()
    with tempfile.TemporaryDirectory(prefix="ami-detector-findings-") as directory:
        # Each slice's findings go to disk and are read back at the end: kept in memory, a slice's
        # few thousand findings among its large temporaries held about twice their size (1.1 GiB
        # more at 50M events).
        parts: list[Path] = []
        for windowed in ahead(_lean_windows(slices, model, profiles, config, scored_from)):
            if windowed.events.height:
                found = findings_of(windowed.windows, windowed.events, model, config, min_severity,
                                    profiles=windowed.profiles, state=state, links=True)
                scored += windowed.events.height
                if found.height:
                    parts.append(Path(directory) / f"{len(parts):06d}.parquet")
                    found.write_parquet(parts[-1], compression="lz4", statistics=False)
            if on_slice is not None:
                on_slice(windowed.count)
        return assign_incidents(read_ranked(parts, extra=[LINKS_COLUMN])), scored


@dataclasses.dataclass(frozen=True)
class _Windowed:
    count: int  # events in the slice, before scored_from
    events: pl.DataFrame  # its events from scored_from on
    windows: dict[str, pl.DataFrame]  # lean windows, by entity kind
    profiles: Profiles  # the model's, cut to the slice's devices (Profiles.restricted)


def _lean_windows(slices: SliceSource, model: Model, profiles: Profiles, config: Config | None,
                  scored_from: datetime | None) -> Iterator[_Windowed]:
    """Each slice's events (attributed, see :mod:`detector.attribution`) and lean windows, the entities'
    last activity and the open logon sessions carried from slice to slice."""
    last_seen: dict[str, pl.DataFrame] = {}
    sessions: pl.DataFrame | None = None
    for _, count, events in slices:
        if scored_from is not None:
            events = events.filter(pl.col("time") >= scored_from)
        frame = events.collect()
        frame, sessions = attribute(frame, sessions)
        if not frame.height:
            yield _Windowed(count, frame, {}, profiles)
            continue
        # The day's devices are a fraction of the fleet's: joins with the cut tables follow the events.
        own = profiles.restricted(frame)
        windows = lean_windows(frame, model, config, profiles=own, earlier=last_seen)
        remember(last_seen, frame)
        yield _Windowed(count, frame, windows, own)


def remember(last_seen: dict[str, pl.DataFrame], events: pl.DataFrame) -> None:
    """Fold the latest event time per entity of *events* into *last_seen* (by entity kind:
    ``entity_id, last_seen``), as the next slice's earlier activity."""
    for kind in ENTITY_KINDS:
        latest = (events.lazy().select(entity_of(kind).alias("entity_id"), "time").drop_nulls("entity_id")
                  .group_by("entity_id").agg(last_seen=pl.col("time").max()))
        if kind in last_seen:
            latest = pl.concat([last_seen[kind].lazy(), latest]).group_by("entity_id").agg(pl.col("last_seen").max())
        # Detached: the keys would otherwise keep each slice's text buffers alive to the end.
        last_seen[kind] = detached_frame(latest.collect())
