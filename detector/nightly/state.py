"""The state directory: its layout, ``state.json``, the event store, and the context of one run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import polars as pl

from detector.errors import DetectorError
from detector.nightly.config import NightlyConfig
from detector.nightly.files import json_bytes, write_atomic
from detector.nightly.summary import RunSummary
from detector.schema import EVENT_SCHEMA

STATE_VERSION: Final = 1
STATE_FILE: Final = "state.json"
LOG_FILE: Final = "nightly.log"

# Points where a run can be interrupted; a hook called with each name lets tests fail there.
STAGES: Final = ("parse", "stage", "append", "commit", "score", "ledger", "report", "latest", "done", "retrain")
Hook = Callable[[str], None]


class NightlyError(DetectorError, RuntimeError):
    """The nightly job cannot go on: bad state, inbox or model. The message says what to do."""


@dataclass
class Layout:
    root: Path

    def __post_init__(self) -> None:
        self.state_file = self.root / STATE_FILE
        self.events = self.root / "events"
        self.rejects = self.root / "rejects"
        self.findings = self.root / "findings"
        self.carried = self.root / "carried"
        self.models = self.root / "models"
        self.staging = self.root / "staging"
        self.tmp = self.root / "tmp"
        self.runs = self.root / "runs"
        self.log = self.root / LOG_FILE

    def create(self) -> None:
        for path in (self.root, self.events, self.rejects, self.findings, self.carried, self.models, self.staging,
                     self.tmp, self.runs):
            path.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def part(dataset: Path, day: str, name: str) -> Path:
        return dataset / f"day={day}" / f"part-{name}.parquet"


def _empty_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "files": {}, "paths": {}, "seen": {}, "batches": {}, "job": None,
            "carried": None,
            "next_seq": 1, "models": {"active": None, "previous": None, "last_trained": None, "history": []}}


def load_state(layout: Layout) -> dict[str, Any]:
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


def save_state(layout: Layout, state: dict[str, Any]) -> None:
    write_atomic(layout.state_file, json_bytes(state), layout.tmp)


def committed_parts(layout: Layout, state: dict[str, Any]) -> dict[str, list[Path]]:
    """Event parts of committed batches, by day: named from the state, never globbed."""
    by_day: dict[str, list[Path]] = {}
    for batch_id, batch in sorted(state["batches"].items()):
        for day in batch["days"]:
            path = Layout.part(layout.events, day, batch_id)
            if path.exists():
                by_day.setdefault(day, []).append(path)
    return {day: sorted(paths) for day, paths in sorted(by_day.items())}


def scan_events(paths: Iterable[Path]) -> pl.LazyFrame:
    names = [str(p) for p in paths]
    if not names:
        return pl.DataFrame(schema=EVENT_SCHEMA).lazy()
    return pl.scan_parquet(names, hive_partitioning=False).select(list(EVENT_SCHEMA)).cast(EVENT_SCHEMA)


def store_events(state_dir: str | Path) -> pl.LazyFrame:
    """The committed events of a nightly state directory, in the normalized schema.

    Parts of a batch that a crashed run left uncommitted are not included (the next run removes or
    commits them). Any Parquet reader can also read ``STATE/events/`` directly (Hive partitioning).
    """
    layout = Layout(Path(state_dir))
    state = load_state(layout)
    return scan_events(p for paths in committed_parts(layout, state).values() for p in paths)



@dataclass
class Night:
    """One run's context, passed to each step: settings, directories, clock, hook, summary, state."""

    config: NightlyConfig
    layout: Layout
    now: datetime
    hook: Hook
    summary: RunSummary
    state: dict[str, Any] = field(default_factory=dict)
    _clock: float = field(default_factory=time.perf_counter)

    def timed(self, name: str) -> None:
        """Add the time since the previous step to the summary's duration of *name*."""
        now = time.perf_counter()
        self.summary.durations[name] = round(self.summary.durations.get(name, 0.0) + now - self._clock, 3)
        self._clock = now

    def save(self) -> None:
        save_state(self.layout, self.state)
