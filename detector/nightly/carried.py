"""What a scan carries from one slice to the next, kept from one night to the next.

A single scan over many days carries three small tables across its slices (see
:mod:`detector.slices`): the open logon sessions (:func:`detector.attribution.attribute`), the
accounts created so far (:class:`detector.signals.SignalState`) and each entity's last activity
(:func:`detector.slices.remember`, for dormancy). The nightly job scores each night on its own, so
it keeps the same tables in the state directory and hands them to the next night: an account
created on Monday and used on Tuesday is ``created_account_used`` on Tuesday, as in one scan over
both days.

They are kept as Parquet (never pickled) in a snapshot directory per scoring job,
``STATE/carried/<seq>/``, written under ``tmp/`` and renamed into place; ``state.json`` names the
snapshot in effect (``carried``) and switches to the new one in the same atomic rewrite that marks
the job done. A run that crashes before that point scores the job again from the snapshot before
it, so a rerun gives the same findings.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from detector.attribution import SESSION_HOURS, SESSIONS
from detector.features import ENTITY_KINDS
from detector.nightly.files import fsync_dir, fsync_file
from detector.nightly.state import NightlyError
from detector.schema import UTC_US
from detector.signals import CREATED_SCHEMA, SignalState
from detector.slices import remember

LAST_SEEN: Final = pl.Schema({"entity_id": pl.String, "last_seen": UTC_US})
_FILES: Final = {"sessions": SESSIONS, "created": CREATED_SCHEMA,
                 **{f"last_seen_{kind}": LAST_SEEN for kind in ENTITY_KINDS}}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


@dataclass
class Carried:
    """The open logon sessions, the accounts created and each entity's last activity, so far."""

    sessions: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SESSIONS))
    created: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=CREATED_SCHEMA))
    last_seen: dict[str, pl.DataFrame] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path | None) -> Carried:
        """The snapshot in *directory*; empty when there is none yet (the first scored night)."""
        if directory is None:
            return cls()
        try:
            tables = {name: pl.read_parquet(directory / f"{name}.parquet").cast(dict(schema))
                      for name, schema in _FILES.items()}
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise NightlyError(f"cannot read the carried state {directory} ({_one_line(exc)}); it is written "
                               "atomically, so this is damage from outside: restore the state directory from a "
                               "backup, or set \"carried\" to null in state.json to go on without it") from None
        return cls(tables["sessions"], tables["created"],
                   {kind: tables[f"last_seen_{kind}"] for kind in ENTITY_KINDS})

    def save(self, directory: Path, tmp: Path) -> None:
        """Write the snapshot to *directory* whole: built under *tmp*, then renamed into place."""
        staging = tmp / f"carried-{directory.name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        tables = {"sessions": self.sessions, "created": self.created,
                  **{f"last_seen_{kind}": self.last_seen.get(kind, pl.DataFrame(schema=LAST_SEEN))
                     for kind in ENTITY_KINDS}}
        for name, table in tables.items():
            path = staging / f"{name}.parquet"
            table.select(list(_FILES[name])).cast(dict(_FILES[name])).write_parquet(path)
            fsync_file(path)
        fsync_dir(staging)
        directory.parent.mkdir(parents=True, exist_ok=True)
        if directory.exists():  # a rerun of a job that crashed after writing it: same content
            shutil.rmtree(directory)
        os.replace(staging, directory)
        fsync_dir(directory.parent)

    def signal_state(self, until: datetime) -> SignalState:
        """The accounts created before *until*, as a scan's slice would have them from earlier slices."""
        return SignalState(self.created.filter(pl.col("created_at") < until))

    def sessions_before(self, until: datetime) -> pl.DataFrame:
        """The sessions opened before *until* (those of the scored events come from their own logons)."""
        return self.sessions.filter(pl.col("time") < until)

    def advanced(self, events: pl.DataFrame, sessions: pl.DataFrame, state: SignalState | None) -> Carried:
        """The state after attributed *events*: their latest activity folded in (:func:`remember`), the
        sessions still open after the newest event so far, and the accounts created (*state*, when
        the events were scored; else those known before)."""
        last_seen = dict(self.last_seen)
        remember(last_seen, events)
        newest = max((t for t in (frame.get_column("last_seen").max() for frame in last_seen.values())
                      if t is not None), default=None)
        open_sessions = pl.concat([self.sessions, sessions.select(list(SESSIONS))]).unique()
        if newest is not None:
            open_sessions = open_sessions.filter(
                pl.col("time") > pl.lit(newest, UTC_US) - timedelta(hours=SESSION_HOURS))
        created = self.created if state is None else (
            pl.concat([self.created, state.created.select(list(CREATED_SCHEMA))])
            .group_by("account").agg(pl.all().sort_by("created_at").first()))
        return Carried(open_sessions.sort("host", "time", "user", nulls_last=True), created.sort("account"),
                       last_seen)
