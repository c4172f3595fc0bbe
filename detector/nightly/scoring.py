"""Scoring what a night's new events touch, with the context they need from the store."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import polars as pl

from detector.detection import score
from detector.features import parse_duration
from detector.features.common import is_device_target
from detector.findings import SEVERITIES, rank, severity_at_least
from detector.model_store import Model
from detector.nightly.files import fsync_dir, fsync_file
from detector.nightly.report import write_day_report
from detector.nightly.state import Layout, Night, committed_parts, scan_events


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


def _context(night: Night, touched: pl.DataFrame, window: str) -> pl.DataFrame:
    """The store events a scoring of *touched* windows needs (see the module docstring)."""
    parts = committed_parts(night.layout, night.state)
    length = parse_duration(window)
    hours = touched.select("window_start").unique()
    first, last = hours.get_column("window_start").min(), hours.get_column("window_start").max()
    core_days = sorted({d for h in hours.get_column("window_start")
                        for d in _days(h, h + length - timedelta(microseconds=1))})
    start_of = pl.col("time").dt.truncate(window)
    core = (scan_events(p for d in core_days for p in parts.get(d, []))
            .join(hours.lazy(), left_on=start_of, right_on="window_start", how="semi"))
    lower = first - night.config.history
    history_days = [d for d in parts if lower.date().isoformat() <= d <= last.date().isoformat()]
    history = (scan_events(p for d in history_days for p in parts[d])
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

def score_and_report(night: Night, model: Model | None) -> None:
    job = night.state["job"]
    if job is None:
        return
    batches = job["batches"]
    findings = None
    ledger_min = SEVERITIES[min(SEVERITIES.index(night.config.min_severity), SEVERITIES.index("high"))]
    if model is not None and not job.get("baseline"):
        parts = [Layout.part(night.layout.events, day, b)
                 for b in batches for day in night.state["batches"][b]["days"]]
        new = scan_events(p for p in parts if p.exists())
        window = str(model.config.get("features", {}).get("window", "1h"))
        touched = _window_keys(new, window).select("entity_kind", "entity_id", "window_start").unique().collect()
        night.summary.windows_scored = touched.height
        if touched.height:
            context = _context(night, touched, window)
            findings = score(context, model, min_severity=ledger_min)
            findings = rank(findings.join(touched, on=["entity_kind", "entity_id", "window_start"], how="semi"))
        night.hook("score")
        night.timed("score")
        if findings is not None:
            ledger = Layout.part(night.layout.findings, job["date"], f"{job['seq']:06d}")
            ledger.parent.mkdir(parents=True, exist_ok=True)
            tmp = night.layout.tmp / f"ledger-{job['seq']}.parquet"
            findings.write_parquet(tmp)
            fsync_file(tmp)
            os.replace(tmp, ledger)
            fsync_dir(ledger.parent)
        night.hook("ledger")
    shown = severity_at_least(findings, night.config.min_severity) if findings is not None else None
    if shown is not None:
        night.summary.scored = shown
        counts = dict(shown.get_column("severity").cast(pl.String).value_counts().iter_rows())
        night.summary.findings = {s: int(counts.get(s, 0)) for s in SEVERITIES}
        night.summary.alerts = severity_at_least(shown, night.summary.alert_severity).height
    write_day_report(night, job["date"])
    night.timed("report")
    night.hook("done")
    night.state["job"] = None
    night.save()

