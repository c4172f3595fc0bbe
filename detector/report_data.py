"""What the HTML report shows, as tables: incidents with their findings and hunt call-outs, times in
the reader's zone, and model features in the units a person reads (counts, days, shares).

:mod:`detector.report` turns these into HTML. Nothing here formats HTML or escapes; everything here
works on the findings contract (ARCHITECTURE.md) and its wave-2 additions when they are present:

- ``incident_id`` and ``signals`` columns of the findings, and an incidents table
  (``incidents.parquet`` / ``Findings.incidents``). Findings without an incident (an old findings
  directory, or rows merged in later) are each their own incident, summarised by their first
  reason; findings that share an ``incident_id`` with no row in the incidents table are grouped
  into one here.
- Hunt call-outs (rows whose ``detector`` names a hunt, merged by ``hunt ... --merge-into``) are
  attached to every incident they touch: one of its entities, within *around* of its span. A
  call-out that touches none is an incident of its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from detector.config import check_display_tz
from detector.features import FEATURE_MEASURE, LOG1P_FEATURES, MEASURE_LABELS
from detector.findings import FINDINGS_SCHEMA, SEVERITIES, SIGNAL, Severity
from detector.incidents import INCIDENTS_SCHEMA
from detector.schema import CATEGORIES, UTC_US

__all__ = ["CHART_BUCKETS", "INCIDENT_SCHEMA", "DisplayZone", "ReportData", "activity_tables", "bucket_for",
           "feature_view", "hunt_names", "prepare"]

# The incidents contract and the impacts of signals (the severities), as the report reads them.
INCIDENT_SCHEMA: Final = INCIDENTS_SCHEMA
IMPACTS: Final = SEVERITIES


def hunt_names() -> frozenset[str]:
    """The ``detector`` values of findings merged in from a hunt."""
    from detector.hunts import HUNTS  # the hunts are not needed to draw a report without them

    return frozenset(HUNTS)


# ---- times ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisplayZone:
    """The zone every time of the report is shown in; UTC is always given beside or in a tooltip."""

    name: str = "UTC"

    def __post_init__(self) -> None:
        check_display_tz(self.name)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.name)

    @property
    def is_utc(self) -> bool:
        return self.name in ("UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu")

    def local(self, moment: datetime) -> datetime:
        return _aware(moment).astimezone(self.zone)

    def text(self, moment: datetime, *, seconds: bool = False) -> str:
        """``2026-03-28 03:00 CDT``: the time in this zone with the zone's abbreviation."""
        here = self.local(moment)
        return f"{here:%Y-%m-%d %H:%M}" + (f":{here:%S}" if seconds else "") + f" {self.abbreviation(moment)}"

    def abbreviation(self, moment: datetime) -> str:
        if self.is_utc:
            return "UTC"
        return self.local(moment).tzname() or self.name

    @staticmethod
    def utc(moment: datetime, *, seconds: bool = False) -> str:
        return f"{_aware(moment).astimezone(UTC):%Y-%m-%d %H:%M}" + (
            f":{_aware(moment).astimezone(UTC):%S}" if seconds else "") + " UTC"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---- incidents ------------------------------------------------------------------------------------

# Severity first, then score; the rest break ties so that the same input gives the same page.
_FINDING_ORDER: Final = (("severity", True), ("score", True), ("window_start", False), ("entity_kind", False),
                         ("entity_id", False), ("finding_id", False))
_INCIDENT_ORDER: Final = (("severity", True), ("score", True), ("first_seen", False), ("incident_id", False))


def _sorted(frame: pl.DataFrame, order: Sequence[tuple[str, bool]]) -> pl.DataFrame:
    return frame.sort([c for c, _ in order], descending=[d for _, d in order], nulls_last=True,
                      maintain_order=True)


@dataclass(frozen=True)
class ReportData:
    """The findings and incidents of a report, ranked.

    Attributes
    ----------
    findings
        Every finding (the contract's columns, ``incident_id`` filled in, ``signals`` and
        ``is_hunt``), severity first, then score.
    incidents
        :data:`INCIDENT_SCHEMA` plus ``own_severity`` (the incident's, before call-outs) and
        ``callouts`` (finding ids of the hunt call-outs that touch it); ``severity`` is the
        highest of the incident and its call-outs. Ranked severity first, then score.
    """

    findings: pl.DataFrame
    incidents: pl.DataFrame


def _findings_frame(findings: pl.DataFrame, hunts: frozenset[str]) -> pl.DataFrame:
    frame = findings.with_columns(
        [pl.lit(None, dtype).alias(c) for c, dtype in FINDINGS_SCHEMA.items() if c not in findings.columns])
    extra = []
    if "incident_id" not in frame.columns:
        extra.append(pl.lit(None, pl.String).alias("incident_id"))
    if "signals" not in frame.columns:
        extra.append(pl.lit([], pl.List(SIGNAL)).alias("signals"))
    frame = frame.with_columns(extra).cast(pl.Schema({**FINDINGS_SCHEMA, "incident_id": pl.String()}))
    frame = frame.with_columns(
        pl.col("signals").cast(pl.List(SIGNAL), strict=False).fill_null([]),
        is_hunt=pl.col("detector").is_in(sorted(hunts)).fill_null(False))
    keep = list(dict.fromkeys([*FINDINGS_SCHEMA, "incident_id", "signals", "is_hunt"]))
    return _sorted(frame.select(keep), _FINDING_ORDER)


def _incidents_of(findings: pl.DataFrame) -> pl.DataFrame:
    """Incidents built from findings (each ranked already): one per ``incident_id``."""
    if findings.height == 0:
        return pl.DataFrame(schema=INCIDENT_SCHEMA)
    impact = pl.Enum(IMPACTS)
    top_signal = (findings.select("incident_id", "signals").explode("signals").unnest("signals")
                  .drop_nulls("signal")
                  .with_columns(rank=pl.col("impact").cast(impact, strict=False).to_physical().fill_null(-1))
                  .sort("rank", descending=True, maintain_order=True)
                  .group_by("incident_id", maintain_order=True).first()
                  .select("incident_id", signal_text=pl.when(pl.col("detail").fill_null("") != "")
                          .then(pl.col("signal") + pl.lit(": ") + pl.col("detail")).otherwise(pl.col("signal"))))
    grouped = findings.group_by("incident_id", maintain_order=True).agg(
        pl.col("severity").max(),
        pl.col("score").max(),
        lead_kind=pl.col("entity_kind").first(),
        lead_entity=pl.col("entity_id").first(),
        first_reason=pl.col("reasons").first().list.first(),
        first_seen=pl.col("window_start").min(),
        last_seen=pl.col("window_end").max(),
        entities=pl.col("entity_id").unique(maintain_order=True),
        finding_ids=pl.col("finding_id"),
    )
    return (grouped.join(top_signal, on="incident_id", how="left", maintain_order="left")
            .with_columns(summary=pl.coalesce("signal_text", "first_reason", pl.lit("")))
            .select(list(INCIDENT_SCHEMA)).cast(INCIDENT_SCHEMA))


def prepare(findings: pl.DataFrame, incidents: pl.DataFrame | None = None, *,
            around: timedelta = timedelta(hours=12), hunts: frozenset[str] | None = None) -> ReportData:
    """Rank findings and incidents, and attach hunt call-outs to the incidents they touch.

    Parameters
    ----------
    findings
        The findings contract, with or without ``incident_id`` / ``signals``.
    incidents
        The incidents contract, if the scan wrote one; findings it does not cover are grouped by
        their ``incident_id`` (or are their own incident).
    around
        A call-out touches an incident when it names one of the incident's entities and its window
        is within this much of the incident's first and last finding.
    hunts
        ``detector`` values that mark hunt call-outs (:func:`hunt_names` by default).
    """
    frame = _findings_frame(findings, hunt_names() if hunts is None else hunts)
    known = pl.DataFrame(schema=INCIDENT_SCHEMA)
    if incidents is not None and incidents.height:
        known = incidents.with_columns(
            [pl.lit(None, t).alias(c) for c, t in INCIDENT_SCHEMA.items() if c not in incidents.columns]
        ).select(list(INCIDENT_SCHEMA)).cast(INCIDENT_SCHEMA).unique("incident_id", keep="first", maintain_order=True)
    # A finding belongs to the incident that lists it, else to its incident_id, else to itself.
    listed = known.select("incident_id", finding_id=pl.col("finding_ids")).explode("finding_id").drop_nulls(
        ).unique("finding_id", keep="first", maintain_order=True).rename({"incident_id": "_listed"})
    frame = (frame.join(listed, on="finding_id", how="left", maintain_order="left")
             .with_columns(incident_id=pl.coalesce("_listed", "incident_id")).drop("_listed"))
    mine = frame.filter(pl.col("incident_id").is_not_null()
                        & ~pl.col("incident_id").is_in(known.get_column("incident_id").implode()))
    unassigned_models = frame.filter(pl.col("incident_id").is_null() & ~pl.col("is_hunt"))
    loose_hunts = frame.filter(pl.col("incident_id").is_null() & pl.col("is_hunt"))

    base = pl.concat([known, _incidents_of(mine),
                      _incidents_of(unassigned_models.with_columns(incident_id=pl.col("finding_id")))])
    touching = _touching(base, loose_hunts, around)
    attached = set(touching.get_column("finding_id").to_list())
    alone = loose_hunts.filter(~pl.col("finding_id").is_in(sorted(attached)))
    alone_incidents = _incidents_of(alone.with_columns(incident_id=pl.col("finding_id")))
    frame = frame.with_columns(incident_id=pl.when(pl.col("incident_id").is_null()
                                                   & ~pl.col("finding_id").is_in(sorted(attached)))
                               .then(pl.col("finding_id")).otherwise(pl.col("incident_id")))

    callouts = touching.group_by("incident_id", maintain_order=True).agg(
        callouts=pl.col("finding_id"), _callout_severity=pl.col("severity").max())
    every = pl.concat([base, alone_incidents]).join(callouts, on="incident_id", how="left", maintain_order="left")
    every = every.with_columns(
        own_severity=pl.col("severity"),
        severity=pl.when(pl.col("_callout_severity").to_physical().fill_null(0) > pl.col("severity").to_physical())
        .then(pl.col("_callout_severity")).otherwise(pl.col("severity")),
        callouts=pl.col("callouts").fill_null([]),
    ).drop("_callout_severity")
    return ReportData(findings=frame, incidents=_sorted(every, _INCIDENT_ORDER))


def _touching(incidents: pl.DataFrame, hunts: pl.DataFrame, around: timedelta) -> pl.DataFrame:
    """(incident_id, finding_id, severity) of every call-out and incident it touches."""
    empty = pl.DataFrame(schema={"incident_id": pl.String, "finding_id": pl.String, "severity": Severity})
    if not hunts.height or not incidents.height:
        return empty
    spans = incidents.select("incident_id", "first_seen", "last_seen", entity=pl.col("entities")).explode("entity")
    return (hunts.select("finding_id", "severity", "window_start", "window_end",
                         entity=pl.col("entity_id").str.to_lowercase())
            .join(spans.with_columns(pl.col("entity").str.to_lowercase()), on="entity")
            .filter(pl.col("window_end") >= pl.col("first_seen") - around,
                    pl.col("window_start") <= pl.col("last_seen") + around)
            .unique(["incident_id", "finding_id"], maintain_order=True)
            .select(list(empty.columns)))


# ---- model features in a person's units -------------------------------------------------------------


@dataclass(frozen=True)
class FeatureView:
    """One model feature as the report shows it."""

    feature: str
    window: str  # this window's value, in counts / days / shares
    baseline: str  # what it was compared with
    scale: str  # how the model saw it, when that differs from what is shown
    contribution: float | None


def _number(value: float) -> str:
    rounded = round(value)
    return f"{rounded:,}" if abs(value - rounded) < 0.05 else f"{value:,.1f}"


def _measure_sentence(label: str, reasons: Sequence[str]) -> tuple[str, str] | None:
    """(count, typical) from the reason that explains an ``excess_`` feature (see detector.explain)."""
    pattern = re.compile(r"(?:^|: )(\d[\d,]*) " + re.escape(label) + r" in the window \((.*)\)$")
    for reason in reasons:
        found = pattern.search(reason or "")
        if found:
            return found.group(1), found.group(2)
    return None


def feature_view(item: Mapping[str, Any], reasons: Sequence[str]) -> FeatureView:
    """A ``top_features`` entry in the units a person reads.

    ``excess_<measure>`` features are log-ratios of the window's count to the entity's typical
    count; the window's count and its typical come from the finding's reason about that measure.
    ``LOG1P_FEATURES`` are stored as ``log1p(x)`` and are shown as ``x`` again. Shares stay
    shares. Anything else is shown as the model saw it, and says so.
    """
    name = str(item.get("feature"))
    value, base, weight = item.get("value"), item.get("baseline"), item.get("contribution")
    if value is None or not math.isfinite(value):
        return FeatureView(name, "", "", "", weight)
    if name in FEATURE_MEASURE:
        measure = FEATURE_MEASURE[name]
        label = MEASURE_LABELS.get(measure, measure)
        said = _measure_sentence(label, reasons)
        ratio = f"model input: log-ratio {value:.2f}"
        if said:
            return FeatureView(name, f"{said[0]} {label}", said[1], ratio, weight)
        if value <= 0:
            return FeatureView(name, "not more than usual", "", ratio, weight)
        # (count + 1) / (typical + 1), when no reason gives the count itself
        return FeatureView(name, f"about {math.exp(value):,.1f}\u00d7 the usual count", "", ratio, weight)
    if name in LOG1P_FEATURES:
        unit = " days" if name.endswith("_days") else ""
        shown = _number(math.expm1(value)) + unit
        typical = "" if base is None else f"median window {_number(math.expm1(base))}{unit}"
        return FeatureView(name, shown, typical, f"model input: log1p = {value:.2f}", weight)
    if name == "failure_ratio":
        return FeatureView(name, f"{value:.0%}", "" if base is None else f"median window {base:.0%}", "", weight)
    if name.endswith("_rarity"):
        return FeatureView(name, f"{value:.2f} (0 usual, 1 never)",
                           "" if base is None else f"median window {base:.2f}", "", weight)
    return FeatureView(name, f"{value:.3g}", "" if base is None else f"median window {base:.3g}",
                       "as the model saw it", weight)


# ---- activity of an incident's entities ---------------------------------------------------------------

CHART_BUCKETS: Final = (("1h", timedelta(hours=1)), ("6h", timedelta(hours=6)), ("1d", timedelta(days=1)),
                        ("1w", timedelta(weeks=1)), ("1mo", timedelta(days=31)))
"""Bucket lengths of the report's charts, shortest first."""
ACTIVITY_BARS: Final = 240
"""At most this many bars in an incident's activity chart (a longer bucket is taken beyond)."""


def bucket_for(span: timedelta, most: int, choices: Sequence[tuple[str, timedelta]]) -> tuple[str, timedelta]:
    """The shortest of *choices* that cuts *span* into at most *most* buckets (else the longest)."""
    for name, length in choices:
        if span / length <= most:
            return name, length
    return choices[-1]


def activity_tables(hourly: pl.DataFrame, members: pl.DataFrame, incidents: pl.DataFrame,
                    around: timedelta) -> dict[str, pl.DataFrame]:
    """Each incident's activity chart as a table: the hourly counts of its entities from *around* before
    its first finding to *around* after its last, per bucket (1 h, 6 h or 1 d, at most
    :data:`ACTIVITY_BARS` of them) and category, with its finding windows flagged and the buckets
    beyond *around* of every window marked as not recorded (the saved timelines stop there).

    Computed for every incident at once; each table is the one
    :func:`~detector.timelines.wide_timeline` gives for one incident, plus ``covered``.

    Parameters
    ----------
    hourly
        Hourly counts in :data:`~detector.timelines.TIMELINE_SCHEMA` of (at least) the members' entities.
    members
        The findings of the incidents (``incident_id``, ``entity_kind``, ``entity_id``, ``window_start``,
        ``window_end``).
    incidents
        ``incident_id``, ``first_seen``, ``last_seen`` of each incident to draw.
    """
    if not incidents.height:
        return {}
    choices = CHART_BUCKETS[:3]  # 1 h, 6 h, 1 d: as bucket_for(span, ACTIVITY_BARS, choices) for each incident
    (hour, hours), (six, six_hours), (day, _) = choices
    span = (pl.col("last_seen") + around) - (pl.col("first_seen") - around)
    every = (pl.when(span <= hours * ACTIVITY_BARS).then(pl.lit(hour))
             .when(span <= six_hours * ACTIVITY_BARS).then(pl.lit(six)).otherwise(pl.lit(day)))
    spans = incidents.select("incident_id", start=pl.col("first_seen") - around, end=pl.col("last_seen") + around,
                             every=every)
    buckets = pl.concat([
        spans.filter(pl.col("every") == name).select(
            "incident_id", time=pl.datetime_ranges(pl.col("start").dt.truncate(name), "end", name, closed="left",
                                                   time_unit="us", time_zone="UTC")).explode("time")
        for name, _ in choices])
    counts = (members.select("incident_id", "entity_kind", "entity_id").unique()
              .join(hourly, on=["entity_kind", "entity_id"])
              .join(spans, on="incident_id")
              .filter(pl.col("time").is_between(pl.col("start"), pl.col("end"), closed="left"))
              .group_by("incident_id", pl.col("time").dt.truncate(pl.col("every")), "category")
              .agg(pl.col("events").sum()))
    present = {key: set(cats) for key, cats in
               counts.group_by("incident_id").agg(pl.col("category").unique()).iter_rows()}
    categories = [c for c in CATEGORIES if c in set().union(*present.values())]
    wide = buckets.join(counts.pivot("category", index=["incident_id", "time"], values="events")
                        if counts.height else pl.DataFrame(schema={"incident_id": pl.String, "time": UTC_US}),
                        on=["incident_id", "time"], how="left", maintain_order="left")
    wide = wide.with_columns([pl.col(c).fill_null(0).cast(pl.Int64) for c in categories]).with_columns(
        total=pl.sum_horizontal(categories) if categories else pl.lit(0, pl.Int64), _us=pl.col("time").dt.epoch("us"))
    lengths = {name: length // timedelta(microseconds=1) for name, length in choices}
    windows = members.select("incident_id", _lo=pl.col("window_start").dt.epoch("us"),
                             _hi=pl.col("window_end").dt.epoch("us")).unique().partition_by(
        "incident_id", as_dict=True, maintain_order=True, include_key=False)
    reach = around // timedelta(microseconds=1)
    tables = {}
    every_of = dict(spans.select("incident_id", "every").iter_rows())
    for (key,), part in wide.partition_by("incident_id", as_dict=True, maintain_order=True, include_key=False).items():
        shown = [c for c in categories if c in present.get(key, ())]
        step = part.get_column("_us").to_numpy()
        mine = windows.get((key,))
        lo = mine.get_column("_lo").to_numpy() if mine is not None else np.empty(0, np.int64)
        hi = mine.get_column("_hi").to_numpy() if mine is not None else np.empty(0, np.int64)
        after = step + lengths[every_of[key]]
        tables[key] = pl.DataFrame([part.get_column("time"), *(part.get_column(c) for c in shown),
                                    part.get_column("total"), pl.Series("flagged", _overlaps(step, after, lo, hi)),
                                    pl.Series("covered", _overlaps(step, after, lo - reach, hi + reach))])
    return tables


def _overlaps(start: np.ndarray, end: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Whether each bucket [start, end) overlaps one of the spans [lo, hi) (microseconds)."""
    if not len(lo):
        return np.zeros(len(start), bool)
    return np.asarray(((start[:, None] < hi[None, :]) & (end[:, None] > lo[None, :])).any(axis=1))
