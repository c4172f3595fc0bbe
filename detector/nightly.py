"""The nightly job: take new export files from an inbox, store their events, score what they touch.

``ami-detector nightly`` runs unattended (a systemd timer or cron) against a drop folder of exports.
Each run picks up the files that are new and complete, appends their normalized events to an event
store, scores the windows those events touch against the active model, writes a dated report, and
on its cadence retrains the model on the recent baseline. Its exit status says whether a human is
needed: 0 nothing at or above the alert severity, 1 findings need a human, 2 an error.

State directory
---------------
::

    STATE/
      state.json                 what has been committed (rewritten atomically: temp, fsync, rename)
      lock                       JSON {pid, host, start, token} while a run is active
      .lock.guard                held (flock) only while a run checks or clears the lock
      nightly.log                one line per run: time, run id, exit status, counts or the reason
      runs/<run_id>.json         the JSON summary of every run
      events/day=D/part-<batch>.parquet    the event store: Hive-style partitions by event day (UTC),
                                           readable as it is by polars, DuckDB or Spark
      rejects/day=D/part-<batch>.parquet   lines that could not be parsed, by the day they arrived
      findings/day=D/part-<seq>.parquet    the findings ledger, by report date (OUT/D is built from it)
      models/<model_id>/         the active and the previous model
      staging/<batch>/           a batch being parsed (events, rejects, manifest.json once complete)
      tmp/                       temporary files; renamed into place when complete, else removed

Which files are new
-------------------
A file is identified by the sha256 of its bytes, never by its name or modification time: the same
bytes under a second name are processed once. A file is taken when it is *complete*, that is

1. its size and sha256 are unchanged since a previous run saw it, or
2. its modification time is at least ``settle`` old (default 5 minutes) and, for text, it ends with
   a line break;

otherwise it is *waiting* and its size and hash are recorded for the next run. Hidden files and
names ending in ``.tmp``, ``.part``, ``.partial``, ``.filepart``, ``.crdownload``, ``.download``
or ``.swp`` are never taken: a writer should write under such a name and rename when done. A file
that grows after it was processed (the same path, whose first bytes hash to the processed content)
is a *continuation*: only its lines after the last processed one are taken.

Exactly once
------------
A run works in batches. The batch id is a hash of its files' content hashes, so a rerun after a
crash produces the same names, and every write below either replaces a file by rename or is
idempotent:

1. *parse*: the batch's files are parsed into ``staging/<batch>/``; ``manifest.json`` is written
   last (atomically) and marks the staging as complete.
2. *append*: ``events/day=D/part-<batch>.parquet`` per event day, and ``rejects/...``, each written
   under ``tmp/`` and renamed into place.
3. *commit*: ``state.json`` gains the batch, its files and a scoring job (atomic rewrite). This is
   the commit point: a batch is in the store if and only if ``state.json`` lists it.
4. *score*: the job's events are scored; the findings go to the ledger ``findings/day=D/part-<seq>``.
5. *report*: ``OUT/D/`` is rebuilt from the ledger in a temporary directory and renamed into place;
   ``OUT/latest`` is replaced by a new symlink (``os.replace``).
6. *done*: ``state.json`` records the job as done.

On start, a run (holding the lock) removes temporary files, resumes a complete staging (steps 2-3)
or discards an incomplete one, and removes event parts of batches ``state.json`` does not list.
A pending job is then scored and reported again; the report date and the ledger sequence number
were fixed when the job was committed, so the rerun overwrites the same files with the same
content. A process killed at any point therefore leaves either a batch that is not committed (its
files are taken again, under the same batch id) or a committed batch whose job is finished by the
next run: no event is lost or stored twice. :data:`STAGES` names the points where tests inject
failures.

Scoring what the new events touch
---------------------------------
A window is scored when it contains at least one new event: for each entity (account or device)
and window of the new events, the window is rebuilt from *all* its events in the store, so a
window that straddles the previous run's boundary is scored whole (its finding keeps its id and
the later report carries the complete window). For dormancy the context also holds each entity's
last event before the window (searched ``history`` back, default 30 days). A window's findings
therefore depend only on the store and the model, not on how the events were split into runs.

Model
-----
``--model`` is the initial model only: it is copied to ``models/<id>/`` on the first run. Without
one, events are stored ("baseline building") until they span ``min_baseline`` (7 days), then a
model is trained on them; those events are the baseline and are not scored. Every
``retrain_every`` (7 days) a model is trained on the last ``baseline`` days (28) of the store minus
the events of windows the ledger flagged at high or critical, so that an attack cannot teach the
model that it is normal. ``state.json`` names the active and the previous model;
:func:`rollback_model` (``ami-detector nightly --rollback``) swaps them back.

Retention
---------
Event, reject and ledger partitions of days more than ``keep`` (90 days) before the anchor day are
removed, the anchor being the earlier of today and the newest event day: a backfill of old exports
is not deleted as it arrives, and an event stamped in the far future cannot wipe the store. Reports
under OUT are left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
import pyarrow.parquet as pq

from detector.config import Config
from detector.detection import NoBaselineError, score, train
from detector.errors import ConfigError, DetectorError
from detector.features import parse_duration
from detector.features.common import is_device_target
from detector.findings import SEVERITIES, empty_findings, rank, severity_at_least, summary_lines, write_findings
from detector.atomic import atomic_bytes, fsync_dir as _fsync_dir, fsync_file as _fsync_file
from detector.model_store import Model, load_model, save_model
from detector.pipeline import expand_paths, plan_parse, write_model_card
from detector.safe_text import for_terminal
from detector.schema import EVENT_SCHEMA, REJECT_SCHEMA

try:  # POSIX; on other systems the lock relies on O_EXCL alone
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["STAGES", "LockedError", "NightlyConfig", "NightlyError", "RunSummary", "rollback_model",
           "run_nightly", "store_events"]

STATE_VERSION: Final = 1
STATE_FILE: Final = "state.json"
LOCK_FILE: Final = "lock"
LOG_FILE: Final = "nightly.log"

# Points where a run can be interrupted; a hook called with each name lets tests fail there.
STAGES: Final = ("parse", "stage", "append", "commit", "score", "ledger", "report", "latest", "done", "retrain")
Hook = Callable[[str], None]

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2

_IN_PROGRESS: Final = (".tmp", ".part", ".partial", ".filepart", ".crdownload", ".download", ".swp")
_GZIP_MAGIC: Final = b"\x1f\x8b"
_HASH_BLOCK: Final = 1 << 20
# An unreadable lock file younger than this may be one being written right now.
_LOCK_GRACE_SECONDS: Final = 60.0
_NEVER: Final = ("never", "off", "none")


class NightlyError(DetectorError, RuntimeError):
    """The nightly job cannot go on: bad state, inbox or model. The message says what to do."""


class LockedError(NightlyError):
    """Another run holds the lock of the state directory."""


# ---- configuration ---------------------------------------------------------------------------------


def _duration(value: object, name: str, *, never: bool = False) -> timedelta | None:
    """A duration setting: ``"7d"``, ``"90m"``, ``"0"`` (zero), or ``"never"`` where allowed."""
    if isinstance(value, timedelta) or value is None:
        return value
    text = str(value).strip().lower()
    if never and text in _NEVER:
        return None
    if text in ("0", "0s", "0m", "0h", "0d"):
        return timedelta()
    try:
        return parse_duration(text)
    except ConfigError as exc:
        extra = " or 'never'" if never else ""
        raise ConfigError(f"{name}: {exc.message}{extra}") from None


def _format_duration(value: timedelta | None) -> str:
    if value is None:
        return "never"
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_PATH_KEYS: Final = ("inbox", "state", "out", "model")
_DURATION_KEYS: Final = {"retrain_every": True, "keep": True, "baseline": False, "min_baseline": False,
                         "settle": False, "history": False}


@dataclass(frozen=True)
class NightlyConfig:
    """Settings of the nightly job; every field but the three directories has a default.

    Parameters
    ----------
    inbox
        The drop folder of exports (walked recursively; hidden files and in-progress names skipped).
    state
        The state directory: event store, rejects, findings ledger, models, state file, lock, logs.
    out
        Where the dated reports go: ``OUT/YYYY-MM-DD/`` and the symlink ``OUT/latest``.
    model
        The initial model, copied into the state on the first run; later runs use the state's
        models. Without one, a baseline is built from the inbox first.
    retrain_every
        Cadence of retraining (``None``: never).
    keep
        Retention of event, reject and ledger partitions (``None``: keep everything).
    baseline
        How much of the recent store a retrained model learns from.
    min_baseline
        Span of events needed before a first model is trained when none was given.
    settle
        Quiet period after which a file that has not changed is taken as complete.
    history
        How far back the store is searched for an entity's previous activity (dormancy).
    tz
        IANA zone of timestamps written without an offset.
    min_severity
        Lowest severity written to the reports.
    detector
        Feature, scoring and alert settings (``[features]``, ``[scoring]``, ``[alerts]``).
    """

    inbox: Path
    state: Path
    out: Path
    model: Path | None = None
    retrain_every: timedelta | None = timedelta(days=7)
    keep: timedelta | None = timedelta(days=90)
    baseline: timedelta = timedelta(days=28)
    min_baseline: timedelta = timedelta(days=7)
    settle: timedelta = timedelta(minutes=5)
    history: timedelta = timedelta(days=30)
    tz: str | None = None
    min_severity: str = "low"
    detector: Config = field(default_factory=Config)

    def __post_init__(self) -> None:
        for name in _PATH_KEYS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        for name, never in _DURATION_KEYS.items():
            object.__setattr__(self, name, _duration(getattr(self, name), name, never=never))
            if getattr(self, name) is None and not never:
                raise ConfigError(f"{name} cannot be 'never'")
        for name in ("baseline", "min_baseline", "history"):
            if getattr(self, name) <= timedelta():
                raise ConfigError(f"{name} must be a positive duration")
        if self.min_severity not in SEVERITIES:
            raise ConfigError(f"min_severity must be one of {', '.join(SEVERITIES)}, not {self.min_severity!r}")
        if self.tz is not None:
            try:
                ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"unknown time zone {self.tz!r}; use an IANA name such as "
                                  "'America/Chicago'") from None

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, detector: Config | None = None,
                     base: Path | None = None) -> NightlyConfig:
        """Build from a ``[nightly]`` table; relative paths are taken relative to *base*.

        Raises
        ------
        ConfigError
            On an unknown key, a missing directory setting or an invalid value.
        """
        known = {f.name for f in fields(cls)} - {"detector"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown [nightly] setting(s) {unknown}; known: {sorted(known)}")
        values = {k: v for k, v in table.items() if v is not None}
        for name in ("inbox", "state", "out"):
            if name not in values:
                raise ConfigError(f"the {name} directory is not set: pass --{name} or set {name} in [nightly]")
        for name in _PATH_KEYS:
            if name in values:
                path = Path(str(values[name])).expanduser()
                values[name] = base / path if base is not None and not path.is_absolute() else path
        return cls(**values, detector=detector or Config())

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> NightlyConfig:
        """Read the ``[nightly]`` table (and ``[features]``, ``[scoring]``, ``[alerts]``) of a TOML file.

        Paths in the file are relative to the file's directory; *overrides* (``None`` ignored)
        replace the file's ``[nightly]`` values, as command-line options do.
        """
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration: {exc}", source=(str(path), None)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", source=(str(path), None)) from None
        table = doc.pop("nightly", {})
        try:
            if not isinstance(table, dict):
                raise ConfigError("[nightly] must be a table")
            detector = Config.from_dict(doc)
            config = cls.from_mapping(table, detector=detector, base=path.parent)
        except ConfigError as exc:
            raise ConfigError(exc.message, source=(str(path), None)) from None
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(config, **given) if given else config


# ---- run summary ---------------------------------------------------------------------------------

RunStatus = Literal["ok", "findings", "baseline", "input-error", "error"]


@dataclass
class RunSummary:
    """What one run did; written as JSON to ``STATE/runs/<run_id>.json`` (and ``OUT/D/summary.json``).

    ``exit_code`` is 0 when nothing reached the alert severity, 1 when findings need a human, 2 on
    an error or an inbox file that could not be read (``reason`` says which, in one line).
    """

    run_id: str
    started: str
    finished: str | None = None
    status: RunStatus = "ok"
    exit_code: int = EXIT_OK
    reason: str | None = None
    files: dict[str, int] = field(default_factory=lambda: {
        "inbox": 0, "new": 0, "already_processed": 0, "duplicates": 0, "waiting": 0, "unreadable": 0,
        "continued": 0})
    waiting: list[str] = field(default_factory=list)
    # Per waiting file: when it will be taken, in one phrase ("from 2026-04-14T02:35:00Z ...").
    waiting_until: dict[str, str] = field(default_factory=dict)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    events: int = 0
    rejects: int = 0
    batches: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    windows_scored: int = 0
    findings: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    alert_severity: str = "medium"
    alerts: int = 0
    report: str | None = None
    model_id: str | None = None
    retrained: dict[str, Any] | None = None
    retention: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    scored: pl.DataFrame | None = field(default=None, repr=False)  # this run's findings, not in the JSON

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "scored"}

    def line(self) -> str:
        """One line for the run log and the terminal."""
        counts = ", ".join(f"{k} {v}" for k, v in self.findings.items() if v)
        text = (f"files {self.files['new']} new / {self.files['waiting']} waiting, {self.events} events, "
                f"{self.rejects} rejects, {self.windows_scored} windows scored, findings: {counts or 'none'}")
        return f"{text} | {self.reason}" if self.reason else text


# ---- small file helpers ----------------------------------------------------------------------------


def waiting_notes(summary: RunSummary, limit: int = 10) -> list[str]:
    """One note per waiting file (at most *limit*, then a count) saying when it will be taken."""
    notes = [f"waiting: {for_terminal(path)}: will be taken "
             f"{summary.waiting_until.get(path, 'by a later run, once it is complete')}"
             for path in summary.waiting[:limit]]
    if len(summary.waiting) > limit:
        notes.append(f"waiting: {len(summary.waiting) - limit} more file(s), see the run summary")
    return notes


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False, default=str).encode() + b"\n"


def _sha256_file(path: Path, prefix: int | None = None) -> tuple[str, str | None]:
    """The sha256 of the file, and of its first *prefix* bytes when asked."""
    whole, head = hashlib.sha256(), hashlib.sha256() if prefix is not None else None
    remaining = prefix or 0
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            whole.update(block)
            if head is not None and remaining > 0:
                head.update(block[:remaining])
                remaining -= min(remaining, len(block))
    return whole.hexdigest(), head.hexdigest() if head is not None else None


def _ends_cleanly(path: Path, size: int) -> bool:
    """Whether a text file ends with a line break (gzip cannot be told without reading it all)."""
    with open(path, "rb") as handle:
        start = handle.read(2)
        handle.seek(max(0, size - 2))
        end = handle.read(2)
    if start == _GZIP_MAGIC:
        return True
    if start == b"\xff\xfe":
        return end == b"\n\x00"
    if start == b"\xfe\xff":
        return end == b"\x00\n"
    return end.endswith(b"\n")


def _remove_tree(path: Path, trash: Path) -> None:
    """Remove a directory by renaming it away first, so that readers never see half of it."""
    if not path.exists():
        return
    target = trash / f"trash-{path.name}-{uuid.uuid4().hex[:8]}"
    os.rename(path, target)
    shutil.rmtree(target, ignore_errors=True)


# ---- lock ----------------------------------------------------------------------------------------


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux), to tell a reused PID apart."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return text.rsplit(")", 1)[1].split()[19]
    except IndexError:  # pragma: no cover
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:  # pragma: no cover
        return False
    return True


class _Lock:
    """``STATE/lock``, created with O_CREAT|O_EXCL and holding the PID, host and process start time.

    A lock whose process no longer runs on this host (no such PID, or the PID now belongs to a
    process that started at another time) is stale and is cleared; a live one, or one from another
    host, makes the run refuse to start. Checking and clearing happen under an ``flock`` on
    ``STATE/.lock.guard`` so that two runs starting together cannot both clear the same stale lock.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self.guard = state_dir / ".lock.guard"
        self.token = uuid.uuid4().hex
        self.cleared: dict[str, Any] | None = None

    def _holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _stale(self, holder: dict[str, Any] | None) -> bool:
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return True
            return age > _LOCK_GRACE_SECONDS
        if holder.get("host") != socket.gethostname():
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return True
        if not _alive(pid):
            return True
        start = _process_start(pid)
        return bool(holder.get("start") and start and start != holder["start"])

    def acquire(self) -> None:
        guard = os.open(self.guard, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(guard, fcntl.LOCK_EX)
            for _ in range(2):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    holder = self._holder()
                    if self._stale(holder):
                        self.cleared = holder or {}
                        self.path.unlink(missing_ok=True)
                        continue
                    who = (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
                           if holder else "being written")
                    raise LockedError(f"another nightly run holds {self.path} ({who}); if no such run is "
                                      "alive, remove that file") from None
                with os.fdopen(fd, "w") as handle:
                    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
                               "started": _iso(_utc_now()), "token": self.token}, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                return
            raise LockedError(f"cannot take {self.path}: it reappeared while a stale lock was cleared")
        finally:
            if fcntl is not None:
                fcntl.flock(guard, fcntl.LOCK_UN)
            os.close(guard)

    def release(self) -> None:
        holder = self._holder()
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> _Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---- state -----------------------------------------------------------------------------------------


@dataclass
class _Layout:
    root: Path

    def __post_init__(self) -> None:
        self.state_file = self.root / STATE_FILE
        self.events = self.root / "events"
        self.rejects = self.root / "rejects"
        self.findings = self.root / "findings"
        self.models = self.root / "models"
        self.staging = self.root / "staging"
        self.tmp = self.root / "tmp"
        self.runs = self.root / "runs"
        self.log = self.root / LOG_FILE

    def create(self) -> None:
        for path in (self.root, self.events, self.rejects, self.findings, self.models, self.staging, self.tmp,
                     self.runs):
            path.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def part(dataset: Path, day: str, name: str) -> Path:
        return dataset / f"day={day}" / f"part-{name}.parquet"


def _empty_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "files": {}, "paths": {}, "seen": {}, "batches": {}, "job": None,
            "next_seq": 1, "models": {"active": None, "previous": None, "last_trained": None, "history": []}}


def _load_state(layout: _Layout) -> dict[str, Any]:
    if not layout.state_file.exists():
        return _empty_state()
    try:
        state = json.loads(layout.state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NightlyError(f"cannot read {layout.state_file} ({exc}); it is written atomically, so this is "
                           "damage from outside: restore it from a backup") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise NightlyError(f"{layout.state_file} is not a version-{STATE_VERSION} nightly state file")
    return {**_empty_state(), **state}


def _save_state(layout: _Layout, state: dict[str, Any]) -> None:
    atomic_bytes(layout.state_file, _json_bytes(state), tmp_dir=layout.tmp, durable=True)


def _committed_parts(layout: _Layout, state: dict[str, Any]) -> dict[str, list[Path]]:
    """Event parts of committed batches, by day: named from the state, never globbed."""
    by_day: dict[str, list[Path]] = {}
    for batch_id, batch in sorted(state["batches"].items()):
        for day in batch["days"]:
            path = _Layout.part(layout.events, day, batch_id)
            if path.exists():
                by_day.setdefault(day, []).append(path)
    return {day: sorted(paths) for day, paths in sorted(by_day.items())}


def _scan_events(paths: Iterable[Path]) -> pl.LazyFrame:
    paths = [str(p) for p in paths]
    if not paths:
        return pl.DataFrame(schema=EVENT_SCHEMA).lazy()
    return pl.scan_parquet(paths, hive_partitioning=False).select(list(EVENT_SCHEMA)).cast(dict(EVENT_SCHEMA))


def store_events(state_dir: str | Path) -> pl.LazyFrame:
    """The committed events of a nightly state directory, in the normalized schema.

    Parts of a batch that a crashed run left uncommitted are not included (the next run removes or
    commits them). Any Parquet reader can also read ``STATE/events/`` directly (Hive partitioning).
    """
    layout = _Layout(Path(state_dir))
    state = _load_state(layout)
    return _scan_events(p for paths in _committed_parts(layout, state).values() for p in paths)


# ---- the run ---------------------------------------------------------------------------------------


@dataclass
class _Candidate:
    path: Path
    size: int
    mtime_ns: int
    sha256: str
    skip: int = 0  # a continuation: lines up to this one were processed before
    continues: str | None = None


def _id(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _window_keys(events: pl.LazyFrame, window: str) -> pl.LazyFrame:
    """(entity_kind, entity_id, window_start, _t) of every event, keyed as the feature stage keys them.

    An event counts for its account and for its device target (see :mod:`detector.features`).
    """
    columns = {"window_start": pl.col("time").dt.truncate(window), "_t": pl.col("time")}
    return pl.concat([
        events.filter(pl.col("account").is_not_null()).select(
            entity_kind=pl.lit("account"), entity_id=pl.col("account"), **columns),
        events.filter(is_device_target()).select(
            entity_kind=pl.lit("device"), entity_id=pl.col("target_id"), **columns),
    ])


def _days(first: datetime, last: datetime) -> list[str]:
    days, day = [], first.date()
    while day <= last.date():
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


class _Run:
    def __init__(self, config: NightlyConfig, layout: _Layout, now: datetime, hook: Hook | None,
                 summary: RunSummary) -> None:
        self.config = config
        self.layout = layout
        self.now = now
        self.hook = hook or (lambda stage: None)
        self.summary = summary
        self.state: dict[str, Any] = {}
        self._clock = time.perf_counter()

    def _timed(self, name: str) -> None:
        now = time.perf_counter()
        self.summary.durations[name] = round(self.summary.durations.get(name, 0.0) + now - self._clock, 3)
        self._clock = now

    def _save(self) -> None:
        _save_state(self.layout, self.state)

    # -- recovery ------------------------------------------------------------------------------------

    def recover(self) -> None:
        for leftover in self.layout.tmp.iterdir():
            shutil.rmtree(leftover) if leftover.is_dir() and not leftover.is_symlink() else leftover.unlink()
        for staging in sorted(self.layout.staging.iterdir()):
            if staging.name in self.state["batches"] or not (staging / "manifest.json").is_file():
                shutil.rmtree(staging)
                continue
            manifest = json.loads((staging / "manifest.json").read_text())
            self.summary.recovered.append(staging.name)
            self._append_and_commit(manifest, staging)
        committed = set(self.state["batches"])
        for dataset in (self.layout.events, self.layout.rejects):
            for day_dir in sorted(dataset.glob("day=*")):
                for part in day_dir.glob("part-*.parquet"):
                    if part.stem.removeprefix("part-") not in committed:
                        part.unlink()
                if not any(day_dir.iterdir()):
                    day_dir.rmdir()
        self._timed("recover")

    # -- discovery -----------------------------------------------------------------------------------

    def _fingerprint(self, mappings: list[Path]) -> str:
        """What a retry of an unreadable file depends on: the mapping files and the time zone."""
        parts = [f"tz={self.config.tz}"] + [f"{m.name}={_sha256_file(m)[0]}" for m in sorted(mappings)]
        return _id(parts)

    def discover(self) -> tuple[list[_Candidate], list[Path], str]:
        inbox = self.config.inbox
        if not inbox.is_dir():
            raise NightlyError(f"the inbox {inbox} is not a directory; create it or fix --inbox")
        paths, mappings = expand_paths([inbox])
        fingerprint = self._fingerprint(mappings)
        seen_before: dict[str, Any] = self.state["seen"]
        seen: dict[str, Any] = {}
        registry: dict[str, Any] = self.state["files"]
        files = self.summary.files
        ready: dict[str, _Candidate] = {}
        quiet_before = self.now - self.config.settle
        for path in paths:
            if path.name.endswith(_IN_PROGRESS):
                files["waiting"] += 1
                self.summary.waiting.append(str(path))
                self.summary.waiting_until[str(path)] = "once it is renamed (its name says it is still being written)"
                continue
            files["inbox"] += 1
            key = str(path)
            before = seen_before.get(key)
            try:
                stat = path.stat()
                if before and before["size"] == stat.st_size and before["mtime_ns"] == stat.st_mtime_ns:
                    sha = before["sha256"]  # unchanged size and time: not read again (as git and rsync do)
                else:
                    sha = _sha256_file(path)[0]
                complete = stat.st_size > 0 and (
                    (before is not None and before["size"] == stat.st_size and before["sha256"] == sha)
                    or (datetime.fromtimestamp(stat.st_mtime, UTC) <= quiet_before
                        and _ends_cleanly(path, stat.st_size)))
            except OSError as exc:
                # Not recorded: a file that cannot be read now (permissions, vanished) is tried again.
                files["unreadable"] += 1
                self.summary.unreadable.append({"path": key, "reason": f"cannot read: {exc.strerror or exc}"})
                continue
            seen[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha,
                         "first_seen": (before or {}).get("first_seen", _iso(self.now))}
            known = registry.get(sha)
            if known is not None and (known["status"] == "committed" or known.get("events")
                                      or known.get("fingerprint") == fingerprint):
                files["already_processed" if known["path"] == key else "duplicates"] += 1
                continue
            if not complete:
                files["waiting"] += 1
                self.summary.waiting.append(key)
                settled = datetime.fromtimestamp(stat.st_mtime, UTC) + self.config.settle
                if stat.st_size == 0:
                    when = "once it has content"
                elif settled > self.now:
                    when = (f"by the first run from {settled:%Y-%m-%dT%H:%M:%SZ} ({_format_duration(self.config.settle)}"
                            " after its last write), or by the next run if it is unchanged until then")
                else:
                    when = "by the next run if it is unchanged until then (it does not end with a line break)"
                self.summary.waiting_until[key] = when
                continue
            if sha in ready:
                files["duplicates"] += 1
                continue
            ready[sha] = _Candidate(path, stat.st_size, stat.st_mtime_ns, sha)
        self.state["seen"] = seen
        for candidate in ready.values():
            self._continuation(candidate)
        self._timed("discover")
        return list(ready.values()), mappings, fingerprint

    def _continuation(self, candidate: _Candidate) -> None:
        """Mark a file that grew after it was processed, so only its new lines are taken."""
        processed = self.state["paths"].get(str(candidate.path), "")
        previous = self.state["files"].get(processed)
        if previous is None or previous["status"] != "committed" or previous["size"] >= candidate.size:
            return
        try:
            sha, head = _sha256_file(candidate.path, prefix=previous["size"])
        except OSError:
            return
        if sha == candidate.sha256 and head == processed:
            candidate.skip = int(previous.get("last_line") or 0)
            candidate.continues = processed

    # -- parse and stage -----------------------------------------------------------------------------

    def ingest(self) -> None:
        candidates, mappings, fingerprint = self.discover()
        while candidates:
            batch_id = _id([fingerprint] + sorted(f"{c.sha256}:{c.skip}" for c in candidates))
            staging = self.layout.staging / batch_id
            manifest, changed = self._parse(batch_id, staging, candidates, mappings, fingerprint)
            if changed:
                # A file changed while it was read: it waits for the next run, the rest is parsed again.
                shutil.rmtree(staging)
                for candidate in changed:
                    self.summary.files["waiting"] += 1
                    self.summary.waiting.append(str(candidate.path))
                    self.summary.waiting_until[str(candidate.path)] = "by the next run (it changed while it was read)"
                candidates = [c for c in candidates if c not in changed]
                continue
            self._append_and_commit(manifest, staging)
            break

    def _parse(self, batch_id: str, staging: Path, candidates: list[_Candidate], mappings: list[Path],
               fingerprint: str) -> tuple[dict[str, Any], list[_Candidate]]:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        by_path = {str(c.path): c for c in candidates}
        run = plan_parse([c.path for c in candidates], mappings=mappings, tz=self.config.tz)
        stats: dict[str, dict[str, Any]] = {key: {"events": 0, "rejects": 0, "last_line": 0} for key in by_path}
        writers = {name: pq.ParquetWriter(staging / f"{name}.parquet", pl.DataFrame(schema=schema).to_arrow().schema,
                                          compression="zstd")
                   for name, schema in (("events", EVENT_SCHEMA), ("rejects", REJECT_SCHEMA))}
        try:
            for chunk in run.chunks():
                key = run.reports[-1].path
                candidate, stat = by_path[key], stats[key]
                lines = pl.concat([chunk.events.select("raw_line"), chunk.rejects.select("raw_line")])
                stat["last_line"] = max(stat["last_line"], int(lines.get_column("raw_line").max() or 0))
                events, rejects = chunk.events, chunk.rejects
                if candidate.skip:
                    # A reject without a line number (file-level) is kept: it concerns the new content.
                    events = events.filter(pl.col("raw_line") > candidate.skip)
                    rejects = rejects.filter(pl.col("raw_line").is_null() | (pl.col("raw_line") > candidate.skip))
                stat["events"] += events.height
                stat["rejects"] += rejects.height
                if events.height:
                    writers["events"].write_table(events.to_arrow())
                if rejects.height:
                    writers["rejects"].write_table(rejects.to_arrow())
                self.hook("parse")
        finally:
            for writer in writers.values():
                writer.close()
        changed = []
        for candidate in candidates:
            try:
                stat = candidate.path.stat()
                if (stat.st_size, stat.st_mtime_ns) != (candidate.size, candidate.mtime_ns):
                    changed.append(candidate)
            except OSError:
                changed.append(candidate)
        if changed:
            return {}, changed
        reports = {r.path: r for r in run.reports}
        days = (pl.scan_parquet(staging / "events.parquet").select(pl.col("time").dt.date().unique().sort())
                .collect().get_column("time").to_list())
        manifest = {
            "batch": batch_id, "date": self.now.date().isoformat(), "fingerprint": fingerprint,
            "days": [d.isoformat() for d in days],
            "events": sum(s["events"] for s in stats.values()), "rejects": sum(s["rejects"] for s in stats.values()),
            "files": [{"path": str(c.path), "sha256": c.sha256, "size": c.size, "mtime_ns": c.mtime_ns,
                       "skip": c.skip, "continues": c.continues, "format": reports[str(c.path)].format,
                       "error": reports[str(c.path)].error, **stats[str(c.path)]} for c in candidates],
        }
        atomic_bytes(staging / "manifest.json", _json_bytes(manifest), durable=True)
        self.hook("stage")
        self._timed("parse")
        return manifest, []

    # -- append and commit ---------------------------------------------------------------------------

    def _place(self, frame: pl.LazyFrame, target: Path) -> None:
        tmp = self.layout.tmp / f"{target.parent.parent.name}-{target.parent.name}-{target.name}"
        frame.sink_parquet(tmp, sync_on_close="all")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        _fsync_dir(target.parent)

    def _append_and_commit(self, manifest: dict[str, Any], staging: Path) -> None:
        batch_id = manifest["batch"]
        events = pl.scan_parquet(staging / "events.parquet")
        for day in manifest["days"]:
            when = date.fromisoformat(day)
            self._place(events.filter(pl.col("time").dt.date() == when),
                        _Layout.part(self.layout.events, day, batch_id))
            self.hook("append")
        if manifest["rejects"]:
            self._place(pl.scan_parquet(staging / "rejects.parquet"),
                        _Layout.part(self.layout.rejects, manifest["date"], batch_id))
        self._timed("append")

        state = self.state
        for entry in manifest["files"]:
            status = "unreadable" if entry["error"] else "committed"
            state["files"][entry["sha256"]] = {
                "path": entry["path"], "size": entry["size"], "status": status, "batch": batch_id,
                "last_line": entry["last_line"], "events": entry["events"], "rejects": entry["rejects"],
                "format": entry["format"], "error": entry["error"], "continues": entry["continues"],
                "fingerprint": manifest["fingerprint"], "committed": _iso(self.now)}
            if status == "committed":
                state["paths"][entry["path"]] = entry["sha256"]
            if entry["error"]:
                self.summary.files["unreadable"] += 1
                self.summary.unreadable.append({"path": entry["path"], "reason": entry["error"]})
            self.summary.files["continued"] += bool(entry["skip"])
        state["batches"][batch_id] = {
            "date": manifest["date"], "days": manifest["days"], "events": manifest["events"],
            "rejects": manifest["rejects"], "files": [e["sha256"] for e in manifest["files"]],
            "committed": _iso(self.now)}
        if state["job"] is None:
            state["job"] = {"seq": state["next_seq"], "date": manifest["date"], "batches": []}
            state["next_seq"] += 1
        state["job"]["batches"].append(batch_id)
        self._save()
        self.hook("commit")
        shutil.rmtree(staging, ignore_errors=True)
        self.summary.files["new"] += len(manifest["files"])
        self.summary.events += manifest["events"]
        self.summary.rejects += manifest["rejects"]
        self.summary.batches.append(batch_id)
        self._timed("commit")

    # -- models --------------------------------------------------------------------------------------

    def _activate(self, model_id: str, how: str) -> None:
        models = self.state["models"]
        if models["active"] != model_id:
            models["previous"], models["active"] = models["active"], model_id
        models["last_trained"] = _iso(self.now)
        models["history"] = (models["history"] + [{"model_id": model_id, "at": _iso(self.now), "how": how}])[-20:]

    def _commit_models(self) -> None:
        """Save the state naming the active and previous model, then remove every other model."""
        self._save()
        keep = {self.state["models"]["active"], self.state["models"]["previous"]}
        for directory in self.layout.models.iterdir():
            if directory.name not in keep:
                _remove_tree(directory, self.layout.tmp)

    def _adopt(self, source: Path) -> str:
        copy = self.layout.tmp / f"adopt-{uuid.uuid4().hex[:8]}"
        shutil.copytree(source, copy)
        model = load_model(copy)  # verifies every file before the copy is trusted
        target = self.layout.models / model.model_id
        if target.exists():
            shutil.rmtree(copy)
        else:
            os.replace(copy, target)
            _fsync_dir(self.layout.models)
        return model.model_id

    def _store_span(self) -> tuple[datetime, datetime] | None:
        parts = [p for paths in _committed_parts(self.layout, self.state).values() for p in paths]
        if not parts:
            return None
        span = _scan_events(parts).select(pl.col("time").min().alias("a"), pl.col("time").max().alias("b")).collect()
        first, last = span.row(0)
        return None if first is None else (first, last)

    def _train_from_store(self, how: str) -> dict[str, Any] | None:
        """Train on the last ``baseline`` of the store, minus windows the ledger flagged >= high."""
        span = self._store_span()
        if span is None:
            return None
        anchor = min(self.now, span[1])
        start = anchor - self.config.baseline
        parts = [p for day, paths in _committed_parts(self.layout, self.state).items()
                 if day >= start.date().isoformat() for p in paths]
        events = (_scan_events(parts).filter((pl.col("time") > start) & (pl.col("time") <= anchor))
                  .sort(["time", "raw_file", "raw_line"]).collect().with_row_index("_i"))
        flagged = self._flagged()
        bad = pl.concat([
            events.lazy().filter(pl.col("account").is_not_null()).select("_i", "time", entity_id=pl.col("account"))
            .join(flagged.filter(pl.col("entity_kind") == "account"), on="entity_id"),
            events.lazy().filter(is_device_target()).select("_i", "time", entity_id=pl.col("target_id"))
            .join(flagged.filter(pl.col("entity_kind") == "device"), on="entity_id"),
        ]).filter((pl.col("time") >= pl.col("window_start")) & (pl.col("time") < pl.col("window_end")))
        excluded = bad.select("entity_kind", "entity_id", "window_start").unique().collect().height
        bad_rows = bad.select("_i").unique()
        training = events.lazy().join(bad_rows, on="_i", how="anti").drop("_i").collect()
        info = {"how": how, "events": training.height, "excluded_windows": excluded,
                "excluded_events": events.height - training.height,
                "from": _iso(start), "until": _iso(anchor)}
        try:
            model = train(training, self.config.detector, metadata={
                "trained_by": "ami-detector nightly", "training_events": training.height,
                "excluded_windows_at_high": excluded, "excluded_events": info["excluded_events"]})
        except NoBaselineError as exc:
            self.summary.notes.append(f"model not trained: {exc.message}")
            return None
        saved = save_model(model, self.layout.tmp / f"model-{uuid.uuid4().hex[:8]}")
        target = self.layout.models / model.model_id
        if target.exists():
            shutil.rmtree(saved)
        else:
            write_model_card(model, saved, f"ami-detector nightly ({how}: {info['from']} to {info['until']}, "
                                           f"{excluded} flagged windows left out)")
            os.replace(saved, target)
            _fsync_dir(self.layout.models)
        info["model_id"] = model.model_id
        return info

    def _flagged(self) -> pl.LazyFrame:
        """Windows the ledger holds at high or critical: never part of a training baseline."""
        parts = sorted(str(p) for p in self.layout.findings.glob("day=*/part-*.parquet"))
        columns = {"entity_kind": pl.String, "entity_id": pl.String, "window_start": EVENT_SCHEMA["time"],
                   "window_end": EVENT_SCHEMA["time"]}
        if not parts:
            return pl.DataFrame(schema=columns).lazy()
        return (pl.scan_parquet(parts, hive_partitioning=False)
                .filter(pl.col("severity").cast(pl.String).is_in(["high", "critical"]))
                .select(list(columns)).unique())

    def ensure_model(self) -> Model | None:
        models = self.state["models"]
        if models["active"] is None and self.config.model is not None:
            self._activate(self._adopt(self.config.model), "initial model")
            self._commit_models()
        if models["active"] is None:
            span = self._store_span()
            collected = span[1] - span[0] if span else timedelta()
            if span is not None and collected >= self.config.min_baseline:
                info = self._train_from_store("first model")
                if info is not None:
                    self._activate(info["model_id"], "first model")
                    self.summary.retrained = info
                    self.summary.notes.append(
                        f"first model {info['model_id']} trained on {info['events']} events from "
                        f"{info['from']} to {info['until']}; those events are its baseline and are not scored, "
                        "scoring starts with the next new events")
                    if self.state["job"] is not None:
                        self.state["job"]["baseline"] = True
                    self._commit_models()
            if models["active"] is None:
                self.summary.status = "baseline"
                self.summary.notes.append(
                    f"baseline building: not scoring yet ({_format_duration(collected)} of events stored, "
                    f"{_format_duration(self.config.min_baseline)} needed; or pass --model)")
                if self.state["job"] is not None:
                    self.state["job"]["baseline"] = True
                self._timed("model")
                return None
        self.summary.model_id = models["active"]
        model_dir = self.layout.models / models["active"]
        try:
            model = load_model(model_dir)
        except DetectorError as exc:
            raise NightlyError(f"the active model cannot be loaded ({exc}); roll back with "
                               "`ami-detector nightly --rollback`") from None
        self._timed("model")
        return model

    def retrain_if_due(self) -> None:
        models = self.state["models"]
        every = self.config.retrain_every
        if every is None or models["active"] is None or models["last_trained"] is None:
            return
        if self.now - datetime.fromisoformat(models["last_trained"]) < every:
            return
        info = self._train_from_store("retrain")
        self.hook("retrain")
        if info is None:
            return
        previous = models["active"]
        self._activate(info["model_id"], "retrain")
        self._commit_models()
        self.summary.retrained = info
        self.summary.notes.append(f"model retrained: {info['model_id']} is active, {previous} kept as previous "
                                  f"({info['excluded_windows']} windows flagged at high or above left out)")
        self._timed("retrain")

    # -- score and report ----------------------------------------------------------------------------

    def _context(self, touched: pl.DataFrame, window: str) -> pl.DataFrame:
        """The store events a scoring of *touched* windows needs (see the module docstring)."""
        parts = _committed_parts(self.layout, self.state)
        length = parse_duration(window)
        hours = touched.select("window_start").unique()
        first, last = hours.get_column("window_start").min(), hours.get_column("window_start").max()
        core_days = sorted({d for h in hours.get_column("window_start")
                            for d in _days(h, h + length - timedelta(microseconds=1))})
        start_of = pl.col("time").dt.truncate(window)
        core = (_scan_events(p for d in core_days for p in parts.get(d, []))
                .join(hours.lazy(), left_on=start_of, right_on="window_start", how="semi"))
        lower = first - self.config.history
        history_days = [d for d in parts if lower.date().isoformat() <= d <= last.date().isoformat()]
        history = (_scan_events(p for d in history_days for p in parts[d])
                   .filter((pl.col("time") >= lower) & (pl.col("time") < last)))
        times = _window_keys(history, window).select("entity_kind", "entity_id", "_t")
        # Each touched window's entity: its last event before the window. Those inside a touched
        # window are in `core` already.
        previous = (touched.lazy().sort("window_start")
                    .join_asof(times.sort("_t"), left_on="window_start", right_on="_t", by=["entity_kind", "entity_id"],
                               strategy="backward", allow_exact_matches=False, check_sortedness=False)
                    .filter(pl.col("_t").is_not_null())
                    .join(hours.lazy(), left_on=pl.col("_t").dt.truncate(window), right_on="window_start", how="anti"))
        rows = pl.concat([
            history.join(previous.filter(pl.col("entity_kind") == "account")
                         .select(account=pl.col("entity_id"), time=pl.col("_t")).unique(), on=["account", "time"],
                         how="semi"),
            history.filter(is_device_target()).join(
                previous.filter(pl.col("entity_kind") == "device")
                .select(target_id=pl.col("entity_id"), time=pl.col("_t")).unique(), on=["target_id", "time"],
                how="semi"),
        ]).unique()
        return pl.concat([core, rows]).sort(["time", "raw_file", "raw_line"]).collect()

    def score_and_report(self, model: Model | None) -> None:
        job = self.state["job"]
        if job is None:
            return
        batches = job["batches"]
        findings = None
        ledger_min = SEVERITIES[min(SEVERITIES.index(self.config.min_severity), SEVERITIES.index("high"))]
        if model is not None and not job.get("baseline"):
            parts = [_Layout.part(self.layout.events, day, b)
                     for b in batches for day in self.state["batches"][b]["days"]]
            new = _scan_events(p for p in parts if p.exists())
            window = str(model.config.get("features", {}).get("window", "1h"))
            touched = _window_keys(new, window).select("entity_kind", "entity_id", "window_start").unique().collect()
            self.summary.windows_scored = touched.height
            if touched.height:
                context = self._context(touched, window)
                findings = score(context, model, min_severity=ledger_min)
                findings = rank(findings.join(touched, on=["entity_kind", "entity_id", "window_start"], how="semi"))
            self.hook("score")
            self._timed("score")
            if findings is not None:
                ledger = _Layout.part(self.layout.findings, job["date"], f"{job['seq']:06d}")
                ledger.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.layout.tmp / f"ledger-{job['seq']}.parquet"
                findings.write_parquet(tmp)
                _fsync_file(tmp)
                os.replace(tmp, ledger)
                _fsync_dir(ledger.parent)
            self.hook("ledger")
        shown = severity_at_least(findings, self.config.min_severity) if findings is not None else None
        if shown is not None:
            self.summary.scored = shown
            counts = dict(shown.get_column("severity").cast(pl.String).value_counts().iter_rows())
            self.summary.findings = {s: int(counts.get(s, 0)) for s in SEVERITIES}
            self.summary.alerts = severity_at_least(shown, self.summary.alert_severity).height
        self._write_report(job["date"])
        self._timed("report")
        self.hook("done")
        self.state["job"] = None
        self._save()

    def _day_findings(self, day: str) -> pl.DataFrame:
        parts = sorted(self.layout.findings.glob(f"day={day}/part-*.parquet"))
        if not parts:
            return empty_findings()
        # The later job's finding wins: it saw the window with more of its events.
        merged = (pl.concat([pl.read_parquet(p).with_columns(_seq=pl.lit(i)) for i, p in enumerate(parts)])
                  .sort("_seq").unique(subset="finding_id", keep="last", maintain_order=True).drop("_seq"))
        return rank(severity_at_least(merged, self.config.min_severity))

    def _write_report(self, day: str) -> None:
        out = self.config.out
        out.mkdir(parents=True, exist_ok=True)
        for leftover in [*out.glob(".*.nightly-*"), *out.glob(".*.old-*")]:
            shutil.rmtree(leftover) if leftover.is_dir() and not leftover.is_symlink() else leftover.unlink()
        findings = self._day_findings(day)
        tag = self.summary.run_id
        staging = out / f".{day}.nightly-{tag}"
        staging.mkdir()
        write_findings(findings, staging)
        alert = self.summary.alert_severity
        counts = dict(findings.get_column("severity").cast(pl.String).value_counts().iter_rows())
        by_severity = {s: int(counts.get(s, 0)) for s in SEVERITIES}
        alerts = severity_at_least(findings, alert).height
        report = {"date": day, "generated": _iso(self.now), "run_id": tag, "model_id": self.summary.model_id,
                  "findings": by_severity, "alert_severity": alert, "alerts": alerts,
                  "run": self.summary.to_dict()}
        (staging / "summary.json").write_bytes(_json_bytes(report))
        (staging / "report.txt").write_text(self._report_text(day, findings, by_severity, alerts), encoding="utf-8")

        # The readable report, rendered into the staging folder so it is swapped in with the rest.
        from detector.report import write_report

        write_report(findings, staging / "report.html", title=f"ami-detector nightly report {day}",
                     generated_at=self.now, summary={"date": day, "model": self.summary.model_id or "-",
                                                     f"findings at {alert} or above": alerts},
                     display_tz=(self.config.detector or Config()).report.display_tz)

        for path in staging.iterdir():
            _fsync_file(path)
        _fsync_dir(staging)
        final = out / day
        old = out / f".{day}.old-{tag}"
        if final.exists():
            os.rename(final, old)
        self.hook("report")
        os.rename(staging, final)
        _fsync_dir(out)
        if old.exists():
            shutil.rmtree(old)
        self.summary.report = str(final)
        self.hook("latest")
        link = out / f".latest.nightly-{tag}"
        link.unlink(missing_ok=True)
        os.symlink(day, link)
        os.replace(link, out / "latest")
        _fsync_dir(out)

    def _report_text(self, day: str, findings: pl.DataFrame, by_severity: dict[str, int], alerts: int) -> str:
        s = self.summary
        lines = [
            f"ami-detector nightly report {day}",
            f"generated {_iso(self.now)} by run {s.run_id}; model {s.model_id or '(none yet)'}",
            f"this run: {s.files['new']} new files, {s.events:,} events, {s.rejects:,} rejects, "
            f"{s.windows_scored:,} windows scored",
            f"findings of {day}: {findings.height} ("
            + ", ".join(f"{k} {v}" for k, v in reversed(by_severity.items())) + f"); "
            f"{alerts} at {s.alert_severity} or above need a human",
            "",
        ]
        if findings.height:
            lines += summary_lines(findings, limit=50) + [""]
        notes = list(s.notes)
        notes += waiting_notes(s)
        notes += [f"unreadable: {for_terminal(u['path'])}: {for_terminal(u['reason'])}" for u in s.unreadable]
        if notes:
            lines += ["notes:"] + [f"- {n}" for n in notes]
        return "\n".join(lines) + "\n"

    # -- retention -----------------------------------------------------------------------------------

    def retention(self) -> None:
        keep = self.config.keep
        if keep is None:
            return
        days = [d for b in self.state["batches"].values() for d in b["days"]]
        anchor = min(self.now.date(), date.fromisoformat(max(days))) if days else self.now.date()
        cutoff = (anchor - keep).isoformat()
        removed: dict[str, list[str]] = {}
        for name, dataset in (("events", self.layout.events), ("rejects", self.layout.rejects),
                              ("findings", self.layout.findings)):
            for day_dir in sorted(dataset.glob("day=*")):
                day = day_dir.name.removeprefix("day=")
                if day < cutoff:
                    _remove_tree(day_dir, self.layout.tmp)
                    removed.setdefault(name, []).append(day)
        pending = set(self.state["job"]["batches"]) if self.state["job"] else set()
        for batch_id, batch in list(self.state["batches"].items()):
            if batch_id not in pending and batch["date"] < cutoff and all(d < cutoff for d in batch["days"]):
                del self.state["batches"][batch_id]
        horizon = (self.now - keep).strftime("%Y%m%dT%H%M%S")
        for run_file in self.layout.runs.glob("*.json"):
            if run_file.name < horizon:
                run_file.unlink()
        self._save()
        self.summary.retention = removed
        self._timed("retention")


# ---- entry points ----------------------------------------------------------------------------------


def _log(layout: _Layout, summary: RunSummary) -> None:
    line = (f"{summary.finished or summary.started} run={summary.run_id} exit={summary.exit_code} "
            f"status={summary.status} {for_terminal(summary.line())}\n")
    with contextlib.suppress(OSError):
        fd = os.open(layout.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, DetectorError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def run_nightly(config: NightlyConfig, *, now: datetime | None = None, hook: Hook | None = None) -> RunSummary:
    """Run the nightly job once: ingest new inbox files, score what they touch, report, retrain.

    Parameters
    ----------
    config
        The job's settings.
    now
        The run's clock (UTC): report date, retraining cadence, retention, the settle period.
        Defaults to the current time.
    hook
        Called with each name in :data:`STAGES` as the run passes that point; an exception it
        raises interrupts the run there (for failure-injection tests).

    Returns
    -------
    RunSummary
        Also written to ``STATE/runs/<run_id>.json`` and logged in ``STATE/nightly.log``.

    Raises
    ------
    LockedError
        When another run holds the lock.
    DetectorError, OSError
        When the run fails; the reason is logged and the next run finishes the work.
    """
    now = (now or _utc_now()).astimezone(UTC)
    started = time.perf_counter()
    summary = RunSummary(run_id=f"{now:%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:6]}", started=_iso(now),
                         alert_severity=config.detector.alert_severity)
    layout = _Layout(config.state)
    try:
        layout.create()
        with _Lock(layout.root) as lock:
            if lock.cleared is not None:
                summary.notes.append(f"cleared a stale lock left by pid {lock.cleared.get('pid')} "
                                     f"(started {lock.cleared.get('started')})")
            run = _Run(config, layout, now, hook, summary)
            run.state = _load_state(layout)
            run.recover()
            run.ingest()
            model = run.ensure_model()
            run.score_and_report(model)
            run.retrain_if_due()
            run.retention()
            run._save()
    except BaseException as exc:
        summary.status, summary.exit_code, summary.reason = "error", EXIT_ERROR, _one_line(exc)
        summary.finished = _iso(_utc_now())
        summary.durations["total"] = round(time.perf_counter() - started, 3)
        with contextlib.suppress(Exception):
            _record(layout, summary)
            _log(layout, summary)
        raise
    if summary.unreadable:
        first = summary.unreadable[0]
        more = f" and {len(summary.unreadable) - 1} more" if len(summary.unreadable) > 1 else ""
        summary.status, summary.exit_code = "input-error", EXIT_ERROR
        summary.reason = (f"{len(summary.unreadable)} inbox file(s) could not be read: {first['path']}: "
                          f"{first['reason']}{more}; the other files were processed"
                          + (f"; {summary.alerts} finding(s) at {summary.alert_severity} or above in "
                             f"{summary.report}" if summary.alerts else ""))
    elif summary.alerts:
        summary.status, summary.exit_code = "findings", EXIT_FINDINGS
        summary.reason = f"{summary.alerts} finding(s) at {summary.alert_severity} or above: see {summary.report}"
    elif summary.status != "baseline" and not summary.batches and not summary.recovered:
        summary.notes.append("nothing new")
    summary.finished = _iso(_utc_now())
    summary.durations["total"] = round(time.perf_counter() - started, 3)
    _record(layout, summary)
    _log(layout, summary)
    return summary


def _record(layout: _Layout, summary: RunSummary) -> None:
    """Write the run's final record to STATE/runs/ and, when the run wrote a report, into its summary.json.

    The report folder is published while the run is still going; its ``summary.json`` is
    rewritten here (atomically) so that its ``run`` is the same record as the state's, with the
    final exit code, status, report and finish time.
    """
    record = summary.to_dict()
    atomic_bytes(layout.runs / f"{summary.run_id}.json", _json_bytes(record), durable=True)
    if summary.report:
        target = Path(summary.report) / "summary.json"
        try:
            report = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if report.get("run_id") == summary.run_id:
            report["run"] = record
            atomic_bytes(target, _json_bytes(report), durable=True)


def rollback_model(state_dir: str | Path, *, now: datetime | None = None) -> tuple[str, str]:
    """Make the previous model active again (and the active one previous); returns (active, previous).

    The retraining cadence restarts from now, so the next retrain is a full period away.

    Raises
    ------
    NightlyError
        When there is no previous model; :class:`LockedError` when a run is active.
    """
    layout = _Layout(Path(state_dir))
    if not layout.state_file.exists():
        raise NightlyError(f"no nightly state in {state_dir}")
    now = (now or _utc_now()).astimezone(UTC)
    with _Lock(layout.root):
        state = _load_state(layout)
        models = state["models"]
        if not models.get("previous") or not (layout.models / models["previous"]).is_dir():
            raise NightlyError("there is no previous model to roll back to")
        if not models.get("active") or not (layout.models / models["active"]).is_dir():
            raise NightlyError(f"the active model {models.get('active')} is missing from {layout.models}")
        models["active"], models["previous"] = models["previous"], models["active"]
        models["last_trained"] = _iso(now)
        models["history"] = (models["history"] + [{"model_id": models["active"], "at": _iso(now),
                                                   "how": "rollback"}])[-20:]
        _save_state(layout, state)
    line = f"{_iso(now)} rollback: active model {models['active']} (was {models['previous']})\n"
    with contextlib.suppress(OSError), open(layout.log, "a", encoding="utf-8") as handle:
        handle.write(line)
    return models["active"], models["previous"]
