"""Scoring one time slice at a time, so that memory follows the size of a slice, not of the logs.

Window features depend on the window's own events and the model's baseline profiles, with a few
exceptions carried from the slices before (:class:`Carried`): dormancy, the time since the entity was
last active (each entity's last event so far), attribution (the logon sessions still open) and the
signals' accounts created so far. Scored slice by slice, the findings are those of scoring everything
at once.

:func:`score_slice` scores one slice given what it carries in; the local scan (:func:`score_slices`)
carries it from slice to slice (consecutive slices of few events scored together,
:func:`~detector.spill.grouped`), the Spark engine (:mod:`detector.engines.spark`) computes it for
every slice first (:func:`carried_sessions`, :func:`carried_created`, :func:`last_activity`) and
scores the slices side by side.
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from detector.activity import remember
from detector.attribution import SESSION_HOURS, SESSIONS, attribute, interactive_logons
from detector.config import Config
from detector.detection import findings_of, lean_windows, profiles_of
from detector.features import Profiles
from detector.findings import read_ranked
from detector.incidents import LINKS_COLUMN, assign_incidents
from detector.model_store import Model
from detector.overlap import ahead
from detector.scoring import SeenCells
from detector.signals import CREATED_SCHEMA, FIRSTS_SCHEMA, SignalState, event_signals, merge_firsts
from detector.spill import GROUP_EVENTS, grouped

SliceSource = Iterable[tuple[datetime, int, pl.LazyFrame]]
"""``(slice start, events in it, its events)`` in time order (see :mod:`detector.spill`)."""

@dataclasses.dataclass
class Carried:
    """What a slice reads from the slices before it.

    last_seen
        Per entity kind, each entity's latest event (``entity_id, last_seen``; only the entities of
        the slice are needed).
    sessions
        Interactive logons that may still be open (:data:`detector.attribution.SESSIONS`).
    created
        Accounts created so far (:data:`detector.signals.CREATED_SCHEMA`).
    firsts
        The first window of each first-time thing each account did so far (:data:`detector.signals.FIRSTS_SCHEMA`).
    """

    last_seen: dict[str, pl.DataFrame] = dataclasses.field(default_factory=dict)
    sessions: pl.DataFrame | None = None
    created: pl.DataFrame = dataclasses.field(default_factory=lambda: pl.DataFrame(schema=CREATED_SCHEMA))
    firsts: pl.DataFrame = dataclasses.field(default_factory=lambda: pl.DataFrame(schema=FIRSTS_SCHEMA))


def score_slices(slices: SliceSource, model: Model, config: Config | None = None, *, min_severity: str = "low",
                 scored_from: datetime | None = None, on_slice: Callable[[int], None] | None = None,
                 carried: Carried | None = None, group_events: int = GROUP_EVENTS) -> tuple[pl.DataFrame, int]:
    """Findings of every slice, ranked, and the number of events scored.

    Events before *scored_from* are not scored; *on_slice* is called with each group's event count
    once it is done (for progress). Consecutive slices are scored as one while together they hold at
    most *group_events* events (:func:`~detector.spill.grouped`; 0 scores each slice alone): the
    findings are the same however slices are grouped, as slice by slice they are those of scoring
    everything at once. The next group's windows are built while this one's are scored (see
    :func:`~detector.overlap.ahead`). *carried* is what the first slice carries in from logs scored
    before (the nightly job's earlier nights; nothing by default); it is updated in place to what a
    slice after the last would carry in.
    """
    slices = grouped(slices, group_events)
    scored = 0
    carried = carried if carried is not None else Carried()
    # One Profiles for every slice: what is derived from them is computed once (Profiles.derived).
    profiles = profiles_of(model)
    state = SignalState(carried.created, carried.firsts)
    seen = {kind: SeenCells() for kind in model.scorers}  # forest cells met in earlier slices
    with tempfile.TemporaryDirectory(prefix="ami-detector-findings-") as directory:
        # Each slice's findings go to disk and are read back at the end: kept in memory, a slice's
        # few thousand findings among its large temporaries held about twice their size (1.1 GiB
        # more at 50M events).
        parts: list[Path] = []
        for windowed in ahead(_lean_windows(slices, model, profiles, config, scored_from, carried)):
            if windowed.events.height:
                found = findings_of(windowed.windows, windowed.events, model, config, min_severity,
                                    profiles=windowed.profiles, state=state, links=True, seen=seen)
                scored += windowed.events.height
                if found.height:
                    parts.append(Path(directory) / f"{len(parts):06d}.parquet")
                    found.write_parquet(parts[-1], compression="lz4", statistics=False)
            if on_slice is not None:
                on_slice(windowed.count)
        carried.created, carried.firsts = state.created, state.firsts
        return ranked_findings(parts), scored


def ranked_findings(parts: list[Path]) -> pl.DataFrame:
    """The findings of every slice (Parquet files of :func:`score_slice`'s tables), ranked, with incidents."""
    return assign_incidents(read_ranked(parts, extra=[LINKS_COLUMN]))


def score_slice(events: pl.DataFrame, carried: Carried, model: Model, profiles: Profiles,
                config: Config | None = None, *, min_severity: str = "low") -> pl.DataFrame:
    """The findings of one slice's *events* (from ``scored_from`` on), given what it carries in
    from the slices before; not ranked, with the ``_links`` column (see :func:`ranked_findings`).

    *profiles* are the model's (:func:`~detector.detection.profiles_of`, computed once per scan).
    """
    windowed = slice_windows(events, carried.sessions, carried.last_seen, model, profiles, config)
    if not windowed.events.height:
        return pl.DataFrame()
    state = SignalState(carried.created, carried.firsts)
    return findings_of(windowed.windows, windowed.events, model, config, min_severity,
                       profiles=windowed.profiles, state=state, links=True)


@dataclasses.dataclass(frozen=True)
class Windowed:
    """One slice ready to score."""

    count: int  # events in the slice, before scored_from
    events: pl.DataFrame  # its events from scored_from on, attributed
    windows: dict[str, pl.DataFrame]  # lean windows, by entity kind
    profiles: Profiles  # the model's (device windows look devices up by index; detail cuts its own)
    sessions: pl.DataFrame  # the logon sessions to carry to the next slice


def slice_windows(frame: pl.DataFrame, sessions: pl.DataFrame | None, last_seen: Mapping[str, pl.DataFrame],
                  model: Model, profiles: Profiles, config: Config | None, count: int | None = None) -> Windowed:
    """A slice's events attributed (:mod:`detector.attribution`) and their lean windows."""
    frame, carried = attribute(frame, sessions)
    count = frame.height if count is None else count
    if not frame.height:
        return Windowed(count, frame, {}, profiles, carried)
    # Not cut to the slice's devices (Profiles.restricted): lean device windows find their rows by index.
    windows = lean_windows(frame, model, config, profiles=profiles, earlier=last_seen)
    return Windowed(count, frame, windows, profiles, carried)


def _lean_windows(slices: SliceSource, model: Model, profiles: Profiles, config: Config | None,
                  scored_from: datetime | None, carried: Carried) -> Iterator[Windowed]:
    """Each slice's events and lean windows, the entities' last activity and the open logon sessions
    carried from slice to slice (in *carried*)."""
    for _, count, events in slices:
        windowed = slice_windows(slice_events(events, scored_from), carried.sessions, carried.last_seen, model,
                                 profiles, config, count)
        carry_over(windowed.events, windowed.sessions, carried)
        yield windowed


def carry_over(events: pl.DataFrame, sessions: pl.DataFrame, carried: Carried) -> None:
    """Carry *carried* past a slice: the logon *sessions* still open after it (as
    :func:`~detector.attribution.attribute` returns them) and its attributed *events*' last activity."""
    carried.sessions = sessions
    if events.height:
        remember(carried.last_seen, events)


def slice_events(events: pl.LazyFrame, scored_from: datetime | None) -> pl.DataFrame:
    """A slice's events to score: those from *scored_from* on."""
    if scored_from is not None:
        events = events.filter(pl.col("time") >= scored_from)
    return events.collect()


# ---- carried state computed ahead (for engines that score slices side by side) -------------------

def carried_sessions(logons: pl.DataFrame, ends: Mapping[int, datetime | None]) -> dict[int, pl.DataFrame | None]:
    """The sessions each slice carries in, from every slice's interactive logons.

    *logons*: ``slice`` and the :data:`~detector.attribution.SESSIONS` columns, each slice's rows in
    its own order (as :func:`slice_logons` gives them); *ends*: each slice's latest event (None for a
    slice with none from ``scored_from`` on). A slice carries in the logons of the slices before it
    that started less than :data:`~detector.attribution.SESSION_HOURS` before the previous slice's
    end: what the local scan keeps from slice to slice, since a logon an earlier slice's cut dropped
    is older than any later cut.
    """
    order = sorted(ends)
    rows = logons.sort("slice", maintain_order=True)
    carried: dict[int, pl.DataFrame | None] = {order[0]: None} if order else {}
    for previous, current in itertools.pairwise(order):
        end = ends[previous]
        if end is None:
            carried[current] = pl.DataFrame(schema=SESSIONS)
            continue
        cut = end - timedelta(hours=SESSION_HOURS)
        carried[current] = (rows.filter((pl.col("slice") <= previous) & (pl.col("time") > cut))
                            .select(*SESSIONS).cast(SESSIONS))
    return carried


def slice_logons(events: pl.DataFrame) -> pl.DataFrame:
    """A slice's interactive logons as :func:`carried_sessions` reads them (without ``slice``)."""
    return interactive_logons(events).collect()


def created_accounts(events: pl.DataFrame, profiles: Profiles, window: str) -> pl.DataFrame:
    """The accounts a slice's attributed *events* create (:data:`~detector.signals.CREATED_SCHEMA`), as the
    signals record them: only its ``account_created`` events are read."""
    state = SignalState.empty()
    event_signals(events.filter(pl.col("action") == "account_created"), profiles, window, state)
    return state.created


def carried_created(created: pl.DataFrame, slices: Iterable[int]) -> dict[int, pl.DataFrame]:
    """The accounts created before each of *slices*, from every slice's :func:`created_accounts`
    (with a ``slice`` column), the earliest creation of each account kept as the signals keep it."""
    carried: dict[int, pl.DataFrame] = {}
    for index in sorted(slices):
        before = created.filter(pl.col("slice") < index).sort("slice", maintain_order=True).drop("slice")
        carried[index] = (before.group_by("account").agg(pl.all().sort_by("created_at").first())
                          .sort("account").cast(CREATED_SCHEMA))
    return carried


def carried_firsts(firsts: pl.DataFrame, slices: Iterable[int]) -> dict[int, pl.DataFrame]:
    """The firsts each of *slices* carries in, from every slice's :func:`detector.signals.first_times` (with a
    ``slice`` column): the earliest window of each (account, what) in the slices before it."""
    return {index: merge_firsts(firsts.filter(pl.col("slice") < index).drop("slice")) for index in sorted(slices)}
