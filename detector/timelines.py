"""Activity timelines of an entity around its findings: counts per time bucket and event category,
from the events or from the hourly counts saved beside findings (``timeline.parquet``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import polars as pl

from detector.features import DEVICE_TARGET_TYPES
from detector.schema import CATEGORIES, UTC_US

TIMELINE_FILE: Final = "timeline.parquet"
CONTEXT: Final = timedelta(hours=12)
"""How far either side of a finding's window its timeline reaches (and the activity saved with it)."""

# One colour per event category, shared by the plots and the HTML report (colour-blind-safe
# Okabe-Ito first, then muted tones).
CATEGORY_COLORS: Final[dict[str, str]] = dict(zip(CATEGORIES, (
    "#0072B2", "#D55E00", "#CC79A7", "#E69F00", "#009E73", "#56B4E9", "#F0E442", "#000000",
    "#B2182B", "#999999", "#8C6D31", "#5E3C99", "#1B7837", "#762A83"), strict=True))



def entity_filter(kind: str | None, entity_id: str) -> pl.Expr:
    """Events that belong to an entity's windows (as the feature stage assigns them)."""
    account = pl.col("account") == entity_id
    device = pl.col("target_type").is_in(DEVICE_TARGET_TYPES) & (pl.col("target_id") == entity_id)
    if kind == "account":
        return account.fill_null(False)
    if kind == "device":
        return device.fill_null(False)
    return (account.fill_null(False)) | (device.fill_null(False))


_TIMELINE_COLUMNS: Final[dict[str, Any]] = {"entity_kind": pl.String, "entity_id": pl.String, "time": UTC_US,
                                            "category": pl.String, "events": pl.Int64}
TIMELINE_SCHEMA: Final = pl.Schema(_TIMELINE_COLUMNS)
"""Hourly activity kept with saved findings (``timeline.parquet``): events per entity, hour and category."""


def wide_timeline(counts: pl.DataFrame, start: datetime, end: datetime, every: str,
                  flagged: Sequence[tuple[datetime, datetime]]) -> pl.DataFrame:
    """(time, category, events) rows as one row per bucket of [start, end) and a column per category
    (the table :func:`entity_timeline` returns)."""
    start, end = aware(start), aware(end)
    buckets = pl.DataFrame({"time": pl.datetime_range(pl.lit(start, UTC_US).dt.truncate(every), end, every,
                                                      closed="left", time_unit="us", time_zone="UTC", eager=True)})
    counts = counts.group_by(pl.col("time").dt.truncate(every), "category").agg(pl.col("events").sum())
    present = [c for c in CATEGORIES if c in set(counts.get_column("category").to_list())]
    wide = (counts.pivot("category", index="time", values="events") if counts.height
            else pl.DataFrame(schema={"time": UTC_US}))
    table = buckets.join(wide, on="time", how="left").select(
        "time", *[pl.col(c).fill_null(0).cast(pl.Int64) for c in present])
    return table.with_columns(total=pl.sum_horizontal(*present) if present else pl.lit(0, pl.Int64),
                              flagged=overlapping(table.get_column("time"), every, flagged))


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    return (aware(moment) - _EPOCH) // timedelta(microseconds=1)


def overlapping(buckets: pl.Series, every: str, spans: Sequence[tuple[datetime, datetime]],
                reach: timedelta = timedelta(0)) -> pl.Series:
    """Whether each bucket ``[t, t + every)`` of *buckets* overlaps one of *spans* widened by *reach*
    either side (all pairs compared at once: an incident of a few hundred findings has as many spans)."""
    if not spans:
        return pl.repeat(False, buckets.len(), eager=True)
    step = buckets.dt.epoch("us").to_numpy()[:, None]
    after = buckets.dt.offset_by(every).dt.epoch("us").to_numpy()[:, None]
    lo = np.array([_micros(lo - reach) for lo, _ in spans])[None, :]
    hi = np.array([_micros(hi + reach) for _, hi in spans])[None, :]
    return pl.Series(((step < hi) & (after > lo)).any(axis=1))


def entity_timeline(events: pl.DataFrame | pl.LazyFrame, kind: str | None, entity_id: str, start: datetime,
                    end: datetime, *, every: str = "1h", flagged: Sequence[tuple[datetime, datetime]] = ()
                    ) -> pl.DataFrame:
    """Event counts of one entity per time bucket and category, from *start* to *end*.

    Parameters
    ----------
    events
        Events in the normalized schema, or hourly counts in :data:`TIMELINE_SCHEMA` (as saved
        beside findings; then *every* must be whole hours).
    kind, entity_id
        The entity (``"account"`` or ``"device"``; None matches either).
    start, end
        The span, UTC if naive.
    every
        Bucket length, a polars duration (``"1h"``, ``"15m"``, ``"1d"``).
    flagged
        Windows to mark.

    Returns
    -------
    polars.DataFrame
        ``time`` (bucket start, UTC), one column per category the entity was active in (in the
        schema's category order), ``total``, and ``flagged`` (the bucket overlaps a window in
        *flagged*). Every bucket of the span has a row, quiet ones with zeros.
    """
    start, end = aware(start), aware(end)
    lf = events.lazy()
    if "events" in lf.collect_schema().names():  # saved hourly counts
        who = pl.col("entity_id") == entity_id
        if kind is not None:
            who = who & (pl.col("entity_kind") == kind)
        counts = lf.filter(who & pl.col("time").is_between(start, end, closed="left")).select(
            "time", "category", "events").collect()
    else:
        counts = (lf.filter(entity_filter(kind, entity_id) & pl.col("time").is_between(start, end, closed="left"))
                  .group_by(time=pl.col("time").dt.truncate(every), category=pl.col("category").cast(pl.String))
                  .agg(events=pl.len().cast(pl.Int64))
                  .collect())
    return wide_timeline(counts, start, end, every, flagged)


def _spans(findings: pl.DataFrame, around: timedelta) -> pl.DataFrame:
    """Per entity, the union of [window_start - around, window_end + around) over its findings.

    Merging overlapping spans first means each event joins at most one span, however many
    findings an entity has in a row.
    """
    spans = findings.select("entity_kind", "entity_id", _lo=pl.col("window_start") - around,
                            _hi=pl.col("window_end") + around).sort("entity_kind", "entity_id", "_lo")
    by = ["entity_kind", "entity_id"]
    return (spans.with_columns(_reach=pl.col("_hi").cum_max().shift(1).over(by))
            .with_columns(_part=(pl.col("_reach").is_null() | (pl.col("_lo") > pl.col("_reach"))).cum_sum().over(by))
            .group_by(*by, "_part").agg(pl.col("_lo").min(), pl.col("_hi").max()).drop("_part"))


def _entity_rows(events: pl.LazyFrame, findings: pl.DataFrame, around: timedelta) -> pl.LazyFrame:
    """Events of the findings' entities within their spans, with ``entity_kind`` and ``entity_id``."""
    spans = _spans(findings, around)
    parts = []
    for kind, key, rows in (("account", "account", events),
                            ("device", "target_id", events.filter(pl.col("target_type").is_in(DEVICE_TARGET_TYPES)))):
        wanted = spans.filter(pl.col("entity_kind") == kind).lazy()
        parts.append(rows.join(wanted, left_on=key, right_on="entity_id")
                     .filter(pl.col("time").is_between(pl.col("_lo"), pl.col("_hi"), closed="left"))
                     .with_columns(entity_id=pl.col(key)).drop("_lo", "_hi"))
    return pl.concat(parts)


def timeline_counts(events: pl.DataFrame | pl.LazyFrame, findings: pl.DataFrame, *,
                    around: timedelta = CONTEXT) -> pl.DataFrame:
    """Hourly activity of each finding's entity from *around* before its window to *around* after.

    A few hundred rows per finding whatever the volume of the logs: this is what a timeline needs,
    and what ``Findings.write`` keeps beside the findings (``timeline.parquet``).

    Returns
    -------
    polars.DataFrame
        In :data:`TIMELINE_SCHEMA`.
    """
    lf = events.lazy()
    if "events" in lf.collect_schema().names():  # already counts
        return lf.collect().select(list(TIMELINE_SCHEMA)).cast(TIMELINE_SCHEMA)
    rows = _entity_rows(lf.select("time", "account", "target_type", "target_id", "category"), findings, around)
    return (rows.group_by("entity_kind", "entity_id", time=pl.col("time").dt.truncate("1h"),
                          category=pl.col("category").cast(pl.String))
            .agg(events=pl.len().cast(pl.Int64))
            .sort("entity_kind", "entity_id", "time", "category")
            .collect(engine="streaming").select(list(TIMELINE_SCHEMA)))



def aware(moment: datetime) -> datetime:
    """*moment* with UTC as its zone when it has none."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def bucket_days(every: str) -> float:
    """The length of a bucket in days (matplotlib's date unit)."""
    start = datetime(2000, 1, 3)
    one = pl.select(pl.lit(start).dt.offset_by(every)).item() - start
    return one.total_seconds() / 86_400


def flagged_runs(table: pl.DataFrame) -> Iterator[tuple[datetime, int]]:
    """Runs of flagged buckets: (first bucket start, number of buckets)."""
    times = table.get_column("time").dt.replace_time_zone(None).to_list()
    flags = table.get_column("flagged").to_list()
    i = 0
    while i < len(flags):
        if flags[i]:
            j = i
            while j < len(flags) and flags[j]:
                j += 1
            yield times[i], j - i
            i = j
        else:
            i += 1

