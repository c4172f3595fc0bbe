"""The findings contract (ARCHITECTURE.md): schema, stable ids, and writing Parquet / JSON lines / CSV.

Finding text comes from log content, which an attacker controls; the CSV writer defuses
spreadsheet formulas and the terminal renderer escapes control characters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import polars as pl

from detector.atomic import atomic_write
from detector.exprs import formatted
from detector.safe_text import for_terminal

SEVERITIES: Final = ("low", "medium", "high", "critical")
Severity = pl.Enum(SEVERITIES)

TOP_FEATURE = pl.Struct({"feature": pl.String(), "value": pl.Float64(), "baseline": pl.Float64(),
                         "contribution": pl.Float64()})
# A security signal of the window (see detector.signals): its name, impact (a severity) and words.
SIGNAL = pl.Struct({"signal": pl.String(), "impact": pl.String(), "detail": pl.String()})

FINDINGS_SCHEMA: Final = pl.Schema(
    {
        "finding_id": pl.String(),
        "entity_kind": pl.String(),
        "entity_id": pl.String(),
        "window_start": pl.Datetime("us", "UTC"),
        "window_end": pl.Datetime("us", "UTC"),
        "score": pl.Float64(),
        "severity": Severity,
        "detector": pl.String(),
        "reasons": pl.List(pl.String()),
        "signals": pl.List(SIGNAL),
        "top_features": pl.List(TOP_FEATURE),
        "event_count": pl.Int64(),
        "evidence": pl.List(pl.String()),
        "model_id": pl.String(),
        "incident_id": pl.String(),
    }
)

# The columns every findings table has had since the first version; later ones are filled in by
# conform() when an older table is read.
REQUIRED_COLUMNS: Final = tuple(c for c in FINDINGS_SCHEMA if c not in ("signals", "incident_id"))


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """*frame* in the findings schema: columns in order and of their types, the columns added after
    the first version (``signals``, ``incident_id``) filled in when missing (no signals, no incident)."""
    if "signals" not in frame.columns:
        frame = frame.with_columns(pl.lit([], dtype=pl.List(SIGNAL)).alias("signals"))
    if "incident_id" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("incident_id"))
    return frame.select(list(FINDINGS_SCHEMA)).cast(FINDINGS_SCHEMA)


def empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema=FINDINGS_SCHEMA)


def finding_ids(frame: pl.DataFrame) -> pl.Series:
    """Stable ids: a hash of entity, window, detector and model, the same for the same input."""
    keys = frame.select(
        pl.concat_str(
            [pl.col("entity_kind"), pl.col("entity_id").fill_null(""),
             pl.col("window_start").dt.to_string("%Y-%m-%dT%H:%M:%S%.f"), pl.col("detector"),
             pl.col("model_id").fill_null("")],
            separator="\x1f",
        )
    ).to_series()
    # About 2 us a finding in Python: a second or two for the ~700,000 of a 50M-event scan at `low`.
    return pl.Series("finding_id", [hashlib.sha256(k.encode()).hexdigest()[:20] for k in keys], dtype=pl.String)


# Most severe first, then most anomalous; the rest break ties so that the order is the same for
# the same input. A low finding never ranks above a high one, whatever their scores.
_RANK_KEYS = ("severity", "score", "window_start", "entity_kind", "entity_id", "detector")


def _ranking(findings: pl.DataFrame) -> pl.Series:
    return findings.select(pl.arg_sort_by(_RANK_KEYS, descending=[True, True, False, False, False, False],
                                          maintain_order=True)).to_series()


def rank(findings: pl.DataFrame) -> pl.DataFrame:
    """Most severe first, then most anomalous; ties broken deterministically.

    A frame already in that order is returned as it is: findings pass through several steps that
    each rank them, and a copy of a scan's hundreds of thousands of findings is not free.
    """
    order = _ranking(findings)
    if order.equals(pl.int_range(findings.height, dtype=pl.UInt32(), eager=True), check_names=False):
        return findings
    return findings[order]


def read_ranked(paths: Sequence[Path], extra: Sequence[str] = ()) -> pl.DataFrame:
    """The findings in the Parquet files *paths*, ranked (an empty frame for no files), with the
    *extra* columns the files hold besides the findings schema.

    Read a column at a time and put in order as read, so that a scan's findings (half a gigabyte at
    50M events) are held once, not once as read and again as ranked.
    """
    if not paths:
        return empty_findings()
    files = list(paths)
    order = _ranking(pl.read_parquet(files, columns=list(_RANK_KEYS)))
    return pl.DataFrame([pl.read_parquet(files, columns=[name]).to_series().gather(order)
                         for name in (*FINDINGS_SCHEMA, *extra)])


def defuse_formula(column: pl.Expr) -> pl.Expr:
    """Prefix cells a spreadsheet would run as a formula (OWASP CSV injection) with a quote."""
    return pl.when(column.str.contains(r"^[=+\-@\t\r\n|%]")).then(pl.lit("'") + column).otherwise(column)


def to_csv_frame(findings: pl.DataFrame) -> pl.DataFrame:
    """Findings flattened for a spreadsheet: lists joined, every text cell defused."""
    flat = findings.with_columns(
        pl.col("reasons").list.join(" | "),
        pl.col("signals").list.eval(formatted("{} ({}): {}", pl.element().struct.field("signal"),
                                              pl.element().struct.field("impact"),
                                              pl.element().struct.field("detail"))).list.join(" | "),
        pl.col("evidence").list.join(" "),
        pl.col("top_features").list.eval(
            formatted("{}={} (baseline {}, {})", pl.element().struct.field("feature"),
                      pl.element().struct.field("value").round(3), pl.element().struct.field("baseline").round(3),
                      pl.element().struct.field("contribution").round(3))).list.join("; "),
        pl.col("severity").cast(pl.String),
        pl.col("window_start").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
        pl.col("window_end").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
    )
    return flat.with_columns([defuse_formula(pl.col(c)).alias(c) for c, t in flat.schema.items() if t == pl.String])


def write_findings(findings: pl.DataFrame, out_dir: Path, *, csv: bool = False) -> list[Path]:
    """Write ``findings.parquet`` and ``findings.jsonl`` (and ``findings.csv``) atomically."""
    from detector.incidents import assign_incidents, incidents_of, write_incidents

    out_dir.mkdir(parents=True, exist_ok=True)
    findings = assign_incidents(rank(conform(findings)))
    written = [out_dir / "findings.parquet", out_dir / "findings.jsonl"]
    atomic_write(written[0], findings.write_parquet)
    atomic_write(written[1], findings.with_columns(
        pl.col("window_start").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"),
        pl.col("window_end").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ")).write_ndjson)
    if csv:
        written.append(out_dir / "findings.csv")
        atomic_write(written[-1], to_csv_frame(findings).write_csv)
    written += write_incidents(incidents_of(findings), out_dir)
    return written


def summary_lines(findings: pl.DataFrame, limit: int = 20) -> list[str]:
    """A short ranked table for the terminal, escaped."""
    lines = [f"{'severity':<9} {'score':>6}  {'kind':<7} {'entity':<24} {'window (UTC)':<17} reason"]
    for row in rank(findings).head(limit).iter_rows(named=True):
        reason = row["reasons"][0] if row["reasons"] else ""
        lines.append(
            f"{row['severity']:<9} {row['score']:>6.4f}  {row['entity_kind']:<7} "
            f"{for_terminal(row['entity_id'])[:24]:<24} {row['window_start']:%Y-%m-%d %H:%M} "
            f"{for_terminal(reason)[:110]}")
    if findings.height > limit:
        lines.append(f"... and {findings.height - limit} more in the output files")
    return lines


def severity_at_least(findings: pl.DataFrame, minimum: str) -> pl.DataFrame:
    return findings.filter(pl.col("severity").cast(pl.String).is_in(SEVERITIES[SEVERITIES.index(minimum):]))


__all__: Sequence[str] = ["FINDINGS_SCHEMA", "REQUIRED_COLUMNS", "SEVERITIES", "SIGNAL", "conform", "empty_findings", "finding_ids", "rank",
                          "severity_at_least", "summary_lines", "to_csv_frame", "write_findings"]
