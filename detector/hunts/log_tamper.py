"""Log-tamper hunt: audit logs cleared, logging switched off, and silences longer than a source's normal.

The advisory's question: *were logs cleared or stopped?* Two sorts of rows:

- ``log_cleared`` — every audit-log clearing (Windows 1102, the HES ``AuditLogCleared``, ...);
  ``logging_tampered`` — other events of category log_tamper (Windows 104 system log cleared, 1100
  event logging stopped, 4719 audit policy changed); ``audit_setting_changed`` — a configuration
  change of a setting whose name is about auditing or logging.
- ``gap`` — a silence in a log stream (one source format on one host) longer than ``silence_factor``
  times that stream's normal longest silence, and at least ``min_gap``. The normal is the
  ``silence_quantile`` (the median by default) of the stream's longest silence of each UTC day,
  learned from the days before ``since`` when there are at least a week of them, else from all;
  ``stream_stopped`` — a stream whose last event is that long before the end of
  the logs. Streams with fewer than ``min_events`` events have no normal to compare with and are
  not assessed.

Every row is called out.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Final

import polars as pl

from detector.errors import ConfigError
from detector.hunts.common import (
    EVIDENCE_CAP,
    TimeWindow,
    as_lazy,
    elapsed,
    evidence_line,
    finish_table,
    hunt_findings,
    short_host,
    summary_lines,
    utc_text,
)

NAME: Final = "log-tamper"
BASELINE_DAYS: Final = 7  # days before --since needed to learn a stream's normal from them alone
AUDIT_SETTING: Final = r"(?i)(audit|eventlog|event[ _.]log|syslog|logging|log[ _.]?level|log[ _.]?retention)"

COLUMNS: Final = ("kind", "stream", "host", "account", "src_ip", "first_seen", "last_seen", "silence_hours",
                  "normal_silence_hours", "detail")
_ROW_SCHEMA: Final = pl.Schema({
    "kind": pl.String(), "stream": pl.String(), "host": pl.String(), "account": pl.String(), "src_ip": pl.String(),
    "first_seen": pl.Datetime("us", "UTC"), "last_seen": pl.Datetime("us", "UTC"), "silence_hours": pl.Float64(),
    "normal_silence_hours": pl.Float64(), "detail": pl.String(), "reasons": pl.List(pl.String),
    "description": pl.String(), "event_count": pl.Int64(), "evidence": pl.List(pl.String)})


def hunt_log_tamper(events: pl.DataFrame | pl.LazyFrame, *, since: datetime | date | str | None = None,
                    until: datetime | date | str | None = None, silence_quantile: float = 0.5,
                    silence_factor: float = 3.0, min_gap: timedelta = timedelta(hours=1), min_events: int = 50,
                    evidence_cap: int = EVIDENCE_CAP) -> pl.DataFrame:
    """Audit-log clearing, logging tampering, and silences longer than a stream's normal.

    Parameters
    ----------
    events
        Normalized events.
    since, until
        Report tampering and silences in this period (UTC; ``until`` exclusive). Events before
        *since* are the baseline of each stream's normal silence.
    silence_quantile
        Which quantile of a stream's daily longest silences is its normal (0..1; default the median).
    silence_factor
        How many times longer than normal a silence must be to be reported.
    min_gap
        Silences shorter than this are never reported.
    min_events
        Streams with fewer events are not assessed for silences.
    evidence_cap
        Most ``raw_file:raw_line`` entries kept per row (0 for all).

    Returns
    -------
    polars.DataFrame
        ``kind``, ``stream`` (source format and host), ``host``, ``account``, ``src_ip``,
        ``first_seen``, ``last_seen`` (a silence runs from the last event before it to the first
        after it), ``silence_hours``, ``normal_silence_hours``, ``detail``, then the common columns.

    Raises
    ------
    ConfigError
        For a quantile outside 0..1, a factor below 1 or a negative minimum.
    """
    if not 0.0 <= silence_quantile <= 1.0:
        raise ConfigError(f"the silence quantile is between 0 and 1, not {silence_quantile}")
    if silence_factor < 1.0 or min_events < 2 or min_gap < timedelta(0):
        raise ConfigError("the silence factor must be at least 1, min_events at least 2 and min_gap not negative")
    period = TimeWindow.of(since, until)
    lf = as_lazy(events).with_columns(
        _evidence=evidence_line(),
        _stream=pl.concat_str([pl.col("source_format"), pl.lit(" "),
                               pl.coalesce(short_host("host"), pl.col("source_system").cast(pl.String))]),
    )
    tampering = _tampering(lf, period)
    silences = _silences(lf, period, silence_quantile, silence_factor, min_gap, min_events)
    table = pl.concat([tampering, silences], how="vertical").with_columns(
        called_out=pl.lit(True), evidence=pl.col("evidence").list.head(evidence_cap) if evidence_cap > 0
        else pl.col("evidence"))
    return finish_table(table, COLUMNS, ["first_seen", "kind", "stream"])


def _tampering(lf: pl.LazyFrame, period: TimeWindow) -> pl.DataFrame:
    action, category = pl.col("action").cast(pl.String), pl.col("category").cast(pl.String)
    audit_setting = (action == "setting_changed") & pl.col("target_id").str.contains(AUDIT_SETTING).fill_null(False)
    rows = (lf.filter(((category == "log_tamper") | audit_setting) & period.contains("time"))
            .sort("time", "raw_file", "raw_line"))
    kind = (pl.when(action == "log_cleared").then(pl.lit("log_cleared"))
            .when(category == "log_tamper").then(pl.lit("logging_tampered"))
            .otherwise(pl.lit("audit_setting_changed")))
    what = pl.concat_str([
        pl.coalesce("target_id", pl.when(action == "log_cleared").then(pl.lit("the audit log")), "message",
                    pl.lit("the log")),
        pl.when(pl.col("native_code").is_not_null())
        .then(pl.concat_str([pl.lit(" ("), pl.col("native_code"), pl.lit(")")])).otherwise(pl.lit("")),
        pl.when(pl.col("old_value").is_not_null() | pl.col("new_value").is_not_null()).then(pl.concat_str([
            pl.lit(": "), pl.col("old_value").fill_null("?"), pl.lit(" -> "), pl.col("new_value").fill_null("?")]))
        .otherwise(pl.lit("")),
        pl.when(pl.col("outcome") == "failure").then(pl.lit(" (failed)")).otherwise(pl.lit(""))])
    where = pl.coalesce(short_host("host"), pl.col("source_system").cast(pl.String))
    who = pl.col("account").fill_null("an unknown account")
    sentence = pl.concat_str([
        who, pl.when(action == "log_cleared").then(pl.lit(" cleared ")).when(category == "log_tamper")
        .then(pl.lit(" tampered with logging: ")).otherwise(pl.lit(" changed an audit setting: ")),
        what, pl.lit(" on "), where, pl.lit(" at "), utc_text("time"), pl.lit(" UTC"),
        pl.when(pl.col("src_ip").is_not_null()).then(pl.concat_str([pl.lit(" from "), pl.col("src_ip")]))
        .otherwise(pl.lit(""))])
    return rows.select(
        kind.alias("kind"), pl.col("_stream").alias("stream"), where.alias("host"), "account", "src_ip",
        pl.col("time").alias("first_seen"), pl.col("time").alias("last_seen"),
        pl.lit(None, dtype=pl.Float64).alias("silence_hours"),
        pl.lit(None, dtype=pl.Float64).alias("normal_silence_hours"),
        what.alias("detail"), pl.concat_list(sentence).alias("reasons"), sentence.alias("description"),
        pl.lit(1, dtype=pl.Int64).alias("event_count"), pl.concat_list("_evidence").alias("evidence"),
    ).collect().cast(_ROW_SCHEMA)


def _silences(lf: pl.LazyFrame, period: TimeWindow, quantile: float, factor: float, min_gap: timedelta,
              min_events: int) -> pl.DataFrame:
    seconds = (pl.col("time") - pl.col("_prev")).dt.total_milliseconds() / 1000
    streams = (
        lf.select("time", "_stream", "host", "source_system", "_evidence")
        .sort("_stream", "time")
        .with_columns(_prev=pl.col("time").shift(1).over("_stream"),
                      _prev_evidence=pl.col("_evidence").shift(1).over("_stream"))
        .with_columns(_gap=seconds)
    )
    # A stream's normal: the longest silence of each (UTC) day it has, then the quantile of those days.
    # Days, not single gaps, so that one long silence cannot make itself normal, while a source that
    # is quiet every night keeps its nightly quiet.
    before = (pl.col("time") < period.since) if period.since is not None else pl.lit(False)
    days = (streams.filter(pl.col("_gap").is_not_null())
            .group_by("_stream", pl.col("time").dt.date().alias("_day"))
            .agg(_longest=pl.col("_gap").max(), _before=before.all()))
    normal_days = days.group_by("_stream").agg(
        _days_before=pl.col("_before").sum(),
        _q_all=pl.col("_longest").quantile(quantile, interpolation="higher"),
        _q_before=pl.col("_longest").filter("_before").quantile(quantile, interpolation="higher"))
    normal = (
        streams.group_by("_stream")
        .agg(_n=pl.len(), _last=pl.col("time").max(), _last_evidence=pl.col("_evidence").last(),
             _host=short_host(pl.col("host")).first(), _system=pl.col("source_system").cast(pl.String).first())
        .filter(pl.col("_n") >= min_events)
        .join(normal_days, on="_stream", how="inner")
        .with_columns(_normal=pl.when(pl.col("_days_before") >= BASELINE_DAYS).then("_q_before").otherwise("_q_all"))
        .with_columns(_threshold=pl.max_horizontal(pl.col("_normal") * factor, pl.lit(min_gap.total_seconds())))
    )
    gaps = (streams.join(normal.select("_stream", "_normal", "_threshold"), on="_stream", how="inner")
            .filter((pl.col("_gap") > pl.col("_threshold")) & period.overlaps("_prev", "time"))
            .select("_stream", pl.coalesce(short_host("host"), pl.col("source_system").cast(pl.String)).alias("host"),
                    pl.lit("gap").alias("kind"), pl.col("_prev").alias("first_seen"), pl.col("time").alias("last_seen"),
                    "_gap", "_normal", pl.concat_list("_prev_evidence", "_evidence").alias("evidence")))
    # The end of the logs, or of the period if it ends earlier: a stream silent since long before it stopped.
    end = lf.select(pl.col("time").max()).collect().item()
    if period.until is not None and end is not None:
        end = min(end, period.until)
    last = pl.lit(end, dtype=pl.Datetime("us", "UTC"))
    stopped = (normal.filter(last.is_not_null()
                             & ((last - pl.col("_last")).dt.total_milliseconds() / 1000 > pl.col("_threshold")))
               .filter(period.overlaps("_last", last))
               .select("_stream", pl.coalesce("_host", "_system").alias("host"), pl.lit("stream_stopped").alias("kind"),
                       pl.col("_last").alias("first_seen"), last.alias("last_seen"),
                       ((last - pl.col("_last")).dt.total_milliseconds() / 1000).alias("_gap"), "_normal",
                       pl.concat_list("_last_evidence").alias("evidence")))
    found = pl.concat([gaps, stopped], how="vertical").collect()
    silence = pl.duration(milliseconds=(pl.col("_gap") * 1000).round(0).cast(pl.Int64))
    usual = pl.duration(milliseconds=(pl.col("_normal") * 1000).round(0).cast(pl.Int64))
    ratio = (pl.col("_gap") / pl.col("_normal")).round(1).cast(pl.String)
    sentence = (
        pl.when(pl.col("kind") == "gap").then(pl.concat_str([
            pl.lit("no events from "), pl.col("_stream"), pl.lit(" for "), elapsed(silence), pl.lit(" ("),
            utc_text("first_seen"), pl.lit(" to "), utc_text("last_seen"), pl.lit(" UTC), "), ratio,
            pl.lit(" times its usual longest silence of a day ("), elapsed(usual), pl.lit(")")]))
        .otherwise(pl.concat_str([
            pl.lit("no events from "), pl.col("_stream"), pl.lit(" after "), utc_text("first_seen"),
            pl.lit(" UTC, "), elapsed(silence), pl.lit(" before the end of the logs, "), ratio,
            pl.lit(" times its usual longest silence of a day ("), elapsed(usual), pl.lit(")")])))
    return found.select(
        "kind", pl.col("_stream").alias("stream"), "host", pl.lit(None, dtype=pl.String).alias("account"),
        pl.lit(None, dtype=pl.String).alias("src_ip"), "first_seen", "last_seen",
        (pl.col("_gap") / 3600).round(2).alias("silence_hours"),
        (pl.col("_normal") / 3600).round(2).alias("normal_silence_hours"),
        pl.lit(None, dtype=pl.String).alias("detail"), pl.concat_list(sentence).alias("reasons"),
        sentence.alias("description"), pl.col("evidence").list.len().cast(pl.Int64).alias("event_count"), "evidence",
    ).cast(_ROW_SCHEMA)


def to_findings(table: pl.DataFrame, severity: str = "high", *, called_out_only: bool = True) -> pl.DataFrame:
    """Tampering rows as findings: the account that tampered, or the silent host."""
    has_account = pl.col("account").is_not_null()
    key = pl.concat_str([pl.col("kind"), pl.col("stream"), utc_text("first_seen", "%Y-%m-%dT%H:%M:%S%.f"),
                         pl.col("detail").fill_null("")], separator="|")
    return hunt_findings(table, detector=NAME, severity=severity,
                         entity_kind=pl.when(has_account).then(pl.lit("account")).otherwise(pl.lit("device")),
                         entity_id=pl.coalesce("account", "host", "stream"), key=key, called_out_only=called_out_only)


def summary(table: pl.DataFrame) -> list[str]:
    """The tampering rows for the terminal."""
    return summary_lines(NAME, table, noun="tampering events and silences")
