"""What a scan carries from one slice to the next, kept from one night to the next.

A single scan over many days carries small tables across its slices (see :mod:`detector.slices`):
the open logon sessions (:func:`detector.attribution.attribute`), the signals' state
(:class:`detector.signals.SignalState`: the accounts created so far, the first window of each
account's new habits) and each entity's last activity (:func:`detector.activity.remember`, for
dormancy). The nightly job scores each night on its own, so
it keeps the same tables in the state directory and hands them to the next night: an account
created on Monday and used on Tuesday is ``created_account_used`` on Tuesday, as in one scan over
both days. A night's scoring starts from them as a scan's slice starts from what the slices before
it carry (:meth:`Carried.start`, a :class:`detector.slices.Carried`) and ends with what comes after
it (:meth:`Carried.advanced`).

They are kept as Parquet (never pickled) in a snapshot directory per scoring job,
``STATE/carried/<seq>/``, written under ``tmp/`` and renamed into place; ``state.json`` names the
snapshot in effect (``carried``) and switches to the new one in the same atomic rewrite that marks
the job done. A run that crashes before that point scores the job again from the snapshot before
it, so a rerun gives the same findings.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from detector import slices
from detector.atomic import fsync_dir, fsync_file
from detector.attribution import SESSION_HOURS, SESSIONS
from detector.features import ENTITY_KINDS
from detector.nightly.state import NightlyError
from detector.schema import UTC_US
from detector.signals import SignalState

LAST_SEEN: Final = pl.Schema({"entity_id": pl.String(), "last_seen": UTC_US})


def _schemas() -> dict[str, pl.Schema]:
    """Each file of a snapshot and its schema; the signal state's tables are stored as they are, one
    file per field of :class:`~detector.signals.SignalState` (whatever signals carry, nightly carries)."""
    empty = SignalState.empty()
    return {"sessions": SESSIONS, **{f"last_seen_{kind}": LAST_SEEN for kind in ENTITY_KINDS},
            **{f"signals_{f.name}": getattr(empty, f.name).schema for f in dataclasses.fields(SignalState)}}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


@dataclass
class Carried:
    """The open logon sessions, the signals' state (accounts created, first windows) and each
    entity's last activity, so far."""

    sessions: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SESSIONS))
    signals: SignalState = field(default_factory=SignalState.empty)
    last_seen: dict[str, pl.DataFrame] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path | None) -> Carried:
        """The snapshot in *directory*; empty when there is none yet (the first scored night). A table
        the snapshot lacks (written before signals carried it) starts empty."""
        if directory is None:
            return cls()
        if not directory.is_dir():
            raise NightlyError(f"the carried state {directory} named in state.json is missing: restore the state "
                               "directory from a backup, or set \"carried\" to null in state.json to go on without it")
        tables: dict[str, pl.DataFrame] = {}
        try:
            for name, schema in _schemas().items():
                path = directory / f"{name}.parquet"
                tables[name] = (pl.read_parquet(path).select(list(schema)).cast(schema) if path.exists()
                                else pl.DataFrame(schema=schema))
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise NightlyError(f"cannot read the carried state {directory} ({_one_line(exc)}); it is written "
                               "atomically, so this is damage from outside: restore the state directory from a "
                               "backup, or set \"carried\" to null in state.json to go on without it") from None
        signals = SignalState(**{f.name: tables[f"signals_{f.name}"] for f in dataclasses.fields(SignalState)})
        return cls(tables["sessions"], signals, {kind: tables[f"last_seen_{kind}"] for kind in ENTITY_KINDS})

    def save(self, directory: Path, tmp: Path) -> None:
        """Write the snapshot to *directory* whole: built under *tmp*, then renamed into place."""
        staging = tmp / f"carried-{directory.name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        tables = {"sessions": self.sessions,
                  **{f"last_seen_{kind}": self.last_seen.get(kind, pl.DataFrame(schema=LAST_SEEN))
                     for kind in ENTITY_KINDS},
                  **{f"signals_{f.name}": getattr(self.signals, f.name) for f in dataclasses.fields(SignalState)}}
        for name, schema in _schemas().items():
            path = staging / f"{name}.parquet"
            tables[name].select(list(schema)).cast(schema).write_parquet(path)
            fsync_file(path)
        fsync_dir(staging)
        directory.parent.mkdir(parents=True, exist_ok=True)
        if directory.exists():  # a rerun of a job that crashed after writing it: same content
            shutil.rmtree(directory)
        os.replace(staging, directory)
        fsync_dir(directory.parent)

    def start(self, until: datetime | None) -> slices.Carried:
        """What a night's events up to *until* carry in, as a slice of a scan does: the sessions opened
        before *until* (those of the events come from their own logons), and copies of the signals'
        state and the last activity (scoring updates them in place)."""
        opened = self.sessions if until is None else self.sessions.filter(pl.col("time") < pl.lit(until, UTC_US))
        return slices.Carried(last_seen=dict(self.last_seen), sessions=opened, created=self.signals.created,
                              firsts=self.signals.firsts)

    def advanced(self, after: slices.Carried) -> Carried:
        """The state after a night (*after*: :meth:`start` once the night's events went through a slice):
        its signals' state and last activity, and the sessions still open after the newest event so far."""
        newest = max((t for t in (frame.get_column("last_seen").max() for frame in after.last_seen.values())
                      if t is not None), default=None)
        night = after.sessions if after.sessions is not None else pl.DataFrame(schema=SESSIONS)
        open_sessions = pl.concat([self.sessions, night.select(list(SESSIONS))]).unique()
        if newest is not None:
            open_sessions = open_sessions.filter(
                pl.col("time") > pl.lit(newest, UTC_US) - timedelta(hours=SESSION_HOURS))
        return Carried(open_sessions.sort("host", "time", "user", nulls_last=True),
                       SignalState(after.created, after.firsts), after.last_seen)
