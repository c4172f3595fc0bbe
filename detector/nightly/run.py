"""One run of the nightly job, step by step, under the lock; its record and log line."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from detector.errors import DetectorError
from detector.nightly.config import NightlyConfig
from detector.nightly.files import iso, json_bytes, utc_now, write_atomic
from detector.nightly.ingest import ingest, recover
from detector.nightly.lock import Lock
from detector.nightly.models import ensure_model, retrain_if_due
from detector.nightly.retention import retention
from detector.nightly.scoring import score_and_report
from detector.nightly.state import Hook, Layout, Night, load_state
from detector.nightly.summary import EXIT_ERROR, EXIT_FINDINGS, RunSummary
from detector.safe_text import for_terminal


def _log(layout: Layout, summary: RunSummary) -> None:
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
    now = (now or utc_now()).astimezone(UTC)
    started = time.perf_counter()
    summary = RunSummary(run_id=f"{now:%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:6]}", started=iso(now),
                         alert_severity=config.detector.alert_severity)
    layout = Layout(config.state)
    try:
        layout.create()
        with Lock(layout.root) as lock:
            if lock.cleared is not None:
                summary.notes.append(f"cleared a stale lock left by pid {lock.cleared.get('pid')} "
                                     f"(started {lock.cleared.get('started')})")
            night = Night(config, layout, now, hook or (lambda stage: None), summary, load_state(layout))
            recover(night)
            ingest(night)
            model = ensure_model(night)
            score_and_report(night, model)
            retrain_if_due(night)
            retention(night)
            night.save()
    except BaseException as exc:
        summary.status, summary.exit_code, summary.reason = "error", EXIT_ERROR, _one_line(exc)
        summary.finished = iso(utc_now())
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
    summary.finished = iso(utc_now())
    summary.durations["total"] = round(time.perf_counter() - started, 3)
    _record(layout, summary)
    _log(layout, summary)
    return summary


def _record(layout: Layout, summary: RunSummary) -> None:
    """Write the run's final record to STATE/runs/ and, when the run wrote a report, into its summary.json.

    The report folder is published while the run is still going; its ``summary.json`` is
    rewritten here (atomically) so that its ``run`` is the same record as the state's, with the
    final exit code, status, report and finish time.
    """
    record = summary.to_dict()
    write_atomic(layout.runs / f"{summary.run_id}.json", json_bytes(record))
    if summary.report:
        target = Path(summary.report) / "summary.json"
        try:
            report = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if report.get("run_id") == summary.run_id:
            report["run"] = record
            write_atomic(target, json_bytes(report))


