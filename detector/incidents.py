"""Incidents: the findings that tell one story, grouped, with a lead entity and a one-line summary.

A backdoor account is created by one account, added to a group, used an hour later, and reaches a
dozen meters: that is five to fifteen findings (windows) and one thing for an analyst to read.
Findings are linked when they share

* an **account**: the entity of an account finding, the accounts its signals name (the account
  created, the account added to a group, the creator of an account used), and for a device finding
  the accounts that issued its commands (the devices an account's burst reached);
* an **incident** they were already put in (a findings table read back keeps its grouping);

and lie within :data:`GAP` of each other on that link. Linked findings form one incident (the
connected components of findings and links). An incident's severity and score are those of its
highest-ranked finding, whose entity leads it; its summary names its most important signal.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Final

import polars as pl

from detector.atomic import atomic_write
from detector.exprs import formatted
from detector.findings import SEVERITIES, rank

GAP: Final = timedelta(hours=8)
# Signals whose words name another account (see detector.signals): linked to that account too.
RELATED_ACCOUNT: Final = r"^(?:created account|deleted account|added|created by) (\S+)"
LINKS_COLUMN: Final = "_links"

INCIDENTS_SCHEMA: Final = pl.Schema({
    "incident_id": pl.String(),
    "severity": pl.Enum(SEVERITIES),
    "score": pl.Float64(),
    "lead_kind": pl.String(),
    "lead_entity": pl.String(),
    "summary": pl.String(),
    "first_seen": pl.Datetime("us", "UTC"),
    "last_seen": pl.Datetime("us", "UTC"),
    "entities": pl.List(pl.String),
    "finding_ids": pl.List(pl.String),
})
_IMPACT_ORDER: Final = {"low": 1, "medium": 2, "high": 3, "critical": 4}


def _links(findings: pl.DataFrame) -> pl.DataFrame:
    """One row per finding and link key: ``_f`` (row), ``_key``, ``_t`` (window start)."""
    base = findings.with_row_index("_f").select(
        "_f", "window_start", "incident_id", "entity_kind", "entity_id", "signals",
        *([LINKS_COLUMN] if LINKS_COLUMN in findings.columns else []))
    named = (base.select("_f", "window_start", pl.col("signals").list.eval(
        pl.element().struct.field("detail").str.extract(RELATED_ACCOUNT, 1)).list.drop_nulls().alias("_key"))
        .explode("_key").drop_nulls("_key").with_columns((pl.lit("account:") + pl.col("_key")).alias("_key")))
    own = base.select("_f", "window_start",
                      _key=pl.when(pl.col("entity_kind") == "account")
                      .then(pl.lit("account:") + pl.col("entity_id"))
                      .otherwise(pl.lit("device:") + pl.col("entity_id")))
    parts = [own, named]
    if LINKS_COLUMN in base.columns:
        parts.append(base.select("_f", "window_start", pl.col(LINKS_COLUMN).alias("_key")).explode("_key")
                     .drop_nulls("_key").with_columns((pl.lit("account:") + pl.col("_key")).alias("_key")))
    links = pl.concat(parts).rename({"window_start": "_t"})
    # Links over time: a key's findings more than GAP apart are separate stories.
    links = (links.sort("_key", "_t")
             .with_columns(_new=(pl.col("_t").diff().over("_key") > GAP).fill_null(False))
             .with_columns(_key=pl.col("_key") + pl.lit("#") + pl.col("_new").cum_sum().over("_key").cast(pl.String))
             .select("_f", "_key"))
    kept = base.filter(pl.col("incident_id").is_not_null()).select("_f", _key=pl.lit("incident:") + pl.col("incident_id"))
    return pl.concat([links, kept]).unique()


def _components(edges: pl.DataFrame, n: int) -> pl.Series:
    """Component label (the smallest finding row in it) of each of *n* findings linked by *edges*."""
    label = pl.DataFrame({"_f": pl.arange(0, n, eager=True).cast(pl.UInt32), "_label": pl.arange(0, n, eager=True)
                          .cast(pl.UInt32)})
    edges = edges.with_columns(pl.col("_f").cast(pl.UInt32))
    while True:
        by_key = edges.join(label, on="_f").group_by("_key").agg(pl.col("_label").min())
        spread = (edges.join(by_key, on="_key").group_by("_f").agg(pl.col("_label").min().alias("_new")))
        updated = (label.join(spread, on="_f", how="left")
                   .with_columns(_new=pl.min_horizontal("_label", pl.col("_new").fill_null(pl.col("_label")))))
        if updated.select((pl.col("_new") == pl.col("_label")).all()).item():
            return label.sort("_f").get_column("_label")
        label = updated.select("_f", pl.col("_new").alias("_label"))


def assign_incidents(findings: pl.DataFrame) -> pl.DataFrame:
    """*findings* with ``incident_id`` set on every row (see the module docstring), in their order.

    Findings already grouped stay together; ids depend only on which findings an incident holds
    (a hash of its smallest finding id), so the same findings give the same incident ids.
    A ``_links`` column (accounts to link each finding with, from a scan) is used and dropped.
    """
    if findings.height == 0:
        return findings.drop(LINKS_COLUMN, strict=False)
    labels = _components(_links(findings), findings.height)
    grouped = findings.with_columns(_label=labels)
    first = grouped.group_by("_label").agg(pl.col("finding_id").min().alias("_first"))
    ids = {label: "inc-" + hashlib.sha256(f"incident\x1f{fid}".encode()).hexdigest()[:16]
           for label, fid in first.iter_rows()}
    out = grouped.with_columns(incident_id=pl.col("_label").replace_strict(ids, return_dtype=pl.String))
    return out.drop("_label", LINKS_COLUMN, strict=False)


def incidents_of(findings: pl.DataFrame) -> pl.DataFrame:
    """The incidents of findings with ``incident_id`` set, most severe first (:data:`INCIDENTS_SCHEMA`)."""
    if findings.height == 0 or "incident_id" not in findings.columns:
        return pl.DataFrame(schema=INCIDENTS_SCHEMA)
    ranked = rank(findings.filter(pl.col("incident_id").is_not_null()))
    # The most important signal of the incident: highest impact, then the finding's rank.
    signals = (ranked.with_row_index("_rank").select("incident_id", "_rank", "entity_id", "signals")
               .explode("signals").drop_nulls("signals").unnest("signals")
               .with_columns(_impact=pl.col("impact").replace_strict(_IMPACT_ORDER, default=0, return_dtype=pl.Int8))
               .sort("_impact", "_rank", descending=[True, False])
               .group_by("incident_id", maintain_order=True)
               .agg(_top=formatted("{}: {}", pl.col("entity_id").first(), pl.col("detail").first())))
    grouped = ranked.group_by("incident_id", maintain_order=True).agg(
        pl.col("severity").first(), pl.col("score").first(), pl.col("entity_kind").first().alias("lead_kind"),
        pl.col("entity_id").first().alias("lead_entity"),
        pl.col("reasons").first().list.first().alias("_reason"),
        pl.col("window_start").min().alias("first_seen"), pl.col("window_end").max().alias("last_seen"),
        pl.col("entity_id").unique(maintain_order=True).alias("entities"),
        pl.col("finding_id").alias("finding_ids"),
    )
    more = pl.col("finding_ids").list.len() - 1
    out = grouped.join(signals, on="incident_id", how="left").with_columns(
        summary=pl.concat_str([
            pl.coalesce("_top", "_reason", pl.col("lead_entity")),
            pl.when(more == 1).then(pl.lit(" (and 1 more finding)"))
            .when(more > 1).then(formatted(" (and {} more findings)", more)).otherwise(pl.lit("")),
        ]))
    return out.select(list(INCIDENTS_SCHEMA)).cast(INCIDENTS_SCHEMA)


def write_incidents(incidents: pl.DataFrame, out_dir: Path) -> list[Path]:
    """Write ``incidents.parquet`` and ``incidents.jsonl`` atomically into *out_dir*."""
    paths = [out_dir / "incidents.parquet", out_dir / "incidents.jsonl"]
    atomic_write(paths[0], incidents.write_parquet)
    atomic_write(paths[1], incidents.with_columns(
        pl.col("first_seen").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"),
        pl.col("last_seen").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ")).write_ndjson)
    return paths
