"""What one run did (:class:`RunSummary`) and its exit status."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import polars as pl

from detector.findings import SEVERITIES
from detector.safe_text import for_terminal

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2

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




def waiting_notes(summary: RunSummary, limit: int = 10) -> list[str]:
    """One note per waiting file (at most *limit*, then a count) saying when it will be taken."""
    notes = [f"waiting: {for_terminal(path)}: will be taken "
             f"{summary.waiting_until.get(path, 'by a later run, once it is complete')}"
             for path in summary.waiting[:limit]]
    if len(summary.waiting) > limit:
        notes.append(f"waiting: {len(summary.waiting) - limit} more file(s), see the run summary")
    return notes

