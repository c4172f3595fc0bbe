"""Scoring what a night's new events touch, with the context they need from the store.

A window is scored when it holds at least one new event, rebuilt from all its events in the store
(so a window straddling the previous run is scored whole). Its context is what one scan over the
whole store would have had: the events of the touched windows, each touched entity's last event
before its window (searched ``history`` back in the store), and the state carried from the nights
before (:mod:`detector.nightly.carried`: open logon sessions, accounts created, last activity).
They are scored by the scan's own stage (:func:`detector.runner.score`, as one slice); the findings
of the touched windows are kept.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import polars as pl

from detector import slices
from detector.atomic import fsync_dir, fsync_file
from detector.attribution import attribute
from detector.engines import running
from detector.features import ENTITY_KINDS
from detector.features.common import entity_of
from detector.findings import SEVERITIES, rank, severity_at_least
from detector.model_store import Model
from detector.nightly.carried import Carried
from detector.nightly.files import remove_tree
from detector.nightly.report import write_day_report
from detector.nightly.state import Layout, Night, committed_parts, scan_events
from detector.runner import Scanned, score
from detector.schema import empty_rejects

KEYS = ["entity_kind", "entity_id", "window_start"]


def window_start(length: timedelta) -> pl.Expr:
    """Each event's window, as the feature stage cuts them (epoch-aligned, half-open)."""
    return pl.col("time").dt.truncate(length)


def window_keys(events: pl.LazyFrame, length: timedelta, *carry: str) -> pl.LazyFrame:
    """(entity_kind, entity_id, window_start, time, *carry*) of every event, for each entity it belongs
    to (:func:`~detector.features.common.entity_of`: its actor and its device target)."""
    return pl.concat([events.select(*carry, entity_kind=pl.lit(kind), entity_id=entity_of(kind),
                                    window_start=window_start(length), time=pl.col("time"))
                      .drop_nulls("entity_id") for kind in ENTITY_KINDS])


def _days(first: datetime, last: datetime) -> list[str]:
    days, day = [], first.date()
    while day <= last.date():
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def _windows(night: Night, new_parts: set[str], length: timedelta) -> pl.DataFrame:
    """Every stored event of the windows (of any entity) the new events fall in, ``_new`` marking theirs."""
    parts = committed_parts(night.layout, night.state)
    new = scan_events(p for paths in parts.values() for p in paths if str(p) in new_parts)
    hours = new.select(window_start=window_start(length)).unique().collect()
    if not hours.height:
        return pl.DataFrame(schema=new.collect_schema()).with_columns(_new=pl.lit(True))
    days = sorted({d for h in hours.get_column("window_start")
                   for d in _days(h, h + length - timedelta(microseconds=1))})
    old = (scan_events(p for d in days for p in parts.get(d, []) if str(p) not in new_parts)
           .join(hours.lazy(), left_on=window_start(length), right_on="window_start", how="semi"))
    return (pl.concat([new.with_columns(_new=pl.lit(True)), old.with_columns(_new=pl.lit(False))])
            .sort(["time", "raw_file", "raw_line"]).collect())


def _previous(night: Night, touched: pl.DataFrame, length: timedelta) -> pl.LazyFrame:
    """Each touched entity's last stored event before its window (and outside every touched hour)."""
    parts = committed_parts(night.layout, night.state)
    hours = touched.select("window_start").unique()
    first, last = hours.select(pl.col("window_start").min().alias("first"), pl.col("window_start").max()).row(0)
    lower = first - night.config.history
    history = (scan_events(p for d, paths in parts.items() if lower.date().isoformat() <= d <= last.date().isoformat()
                           for p in paths)
               .filter((pl.col("time") >= lower) & (pl.col("time") < last)).with_row_index("_row"))
    keys = window_keys(history, length, "_row").rename({"window_start": "_window", "time": "_t"})
    previous = (touched.lazy().sort("window_start")
                .join_asof(keys.sort("_t"), left_on="window_start", right_on="_t", by=["entity_kind", "entity_id"],
                           strategy="backward", allow_exact_matches=False, check_sortedness=False)
                .filter(pl.col("_t").is_not_null())
                .join(hours.lazy(), left_on="_window", right_on="window_start", how="anti"))
    return history.join(previous.select("_row").unique(), on="_row", how="semi").drop("_row")


def _window_length(night: Night, model: Model | None) -> timedelta:
    """The model's window length (the job's settings before there is a model)."""
    return (model.settings if model is not None else night.config.detector).features.window_length


def _score(night: Night, model: Model, events: pl.DataFrame, carried: slices.Carried,
           length: timedelta, min_severity: str) -> pl.DataFrame | None:
    """Findings of the windows the new rows (``_new``) of *events* touch, scored by the runner's score
    stage with what earlier nights carry in (*carried*, updated in place to what comes after)."""
    # Attributed here only to key the new events to their windows (a machine's event is the logged-on
    # user's); the score stage attributes the events itself, as in a scan.
    keyed, sessions = attribute(events, carried.sessions)
    touched = window_keys(keyed.filter(pl.col("_new")).lazy(), length).select(KEYS).unique().collect()
    night.summary.windows_scored = touched.height
    if not touched.height:
        slices.carry_over(keyed.drop("_new"), sessions, carried)
        return None
    events = events.drop("_new")
    context = pl.concat([events, _previous(night, touched, length).collect()]).sort(["time", "raw_file", "raw_line"])
    # One slice: cut into days, a window rebuilt whole after the previous night would read that night's
    # last activity (which lies inside it, so dormancy ignores it) instead of the events before it.
    one_slice = [(context.item(0, "time"), context.height, context.lazy())]
    scanned = Scanned(context, one_slice, context.height, empty_rejects(), [], None)
    with running("local") as engine:
        found, _ = score(scanned, engine, model, None, min_severity=min_severity, scored_from=None, progress=None,
                         carried=carried)
    return rank(found.join(touched, on=KEYS, how="semi"))


def score_and_report(night: Night, model: Model | None) -> None:
    job = night.state["job"]
    if job is None:
        return
    findings = None
    ledger_min = SEVERITIES[min(SEVERITIES.index(night.config.min_severity), SEVERITIES.index("high"))]
    length = _window_length(night, model)
    new_parts = {str(Layout.part(night.layout.events, day, b))
                 for b in job["batches"] for day in night.state["batches"][b]["days"]}
    carried = Carried.load(night.layout.carried / night.state["carried"] if night.state["carried"] else None)
    events = _windows(night, new_parts, length)
    end = events.select(window_start(length).max()).item() + length if events.height else None
    after = carried.start(end)
    scoring = model if not job.get("baseline") else None
    if end is not None and scoring is not None:
        findings = _score(night, scoring, events, after, length, ledger_min)
    elif end is not None:
        # Stored, not scored (a first model's baseline): carried past as a scan carries a slice.
        slices.carry_over(*attribute(events.drop("_new"), after.sessions), after)
    if scoring is not None:
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
    # What this job carries to the next one; state.json switches to it with the job marked done.
    snapshot = night.layout.carried / f"{job['seq']:06d}"
    carried.advanced(after).save(snapshot, night.layout.tmp)
    night.hook("done")
    night.state["job"] = None
    night.state["carried"] = snapshot.name
    night.save()
    for stale in night.layout.carried.iterdir():
        if stale.name != snapshot.name:
            remove_tree(stale, night.layout.tmp)

