"""The floor of bench_scan.py: the least any tool must do with these logs, as one bare polars pass.

Read each format with a fixed schema (JSON lines and CSV by their readers, syslog and CEF as lines
cut with regular expressions), parse the times, then one group-by per entity kind (account, device)
and hour with a count and a distinct count of actions, on the streaming engine. No normalization,
no rejects, no baseline, no scoring: what is left is reading the bytes and one aggregation, which
is what the issue compares the scan with ("within 3x of a bare polars pass").

    python benchmarks/floor.py LOGS_DIR            # prints {"events": N, "seconds": ..., "windows": {...}}

Files are found by the names the simulator gives them (``*hes_commands*.jsonl``, ``*winsec*.jsonl``,
``*hes_audit*.csv``, ``*dms*.log``, ``*.cef``), recursively; symbolic links are followed.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import polars as pl

UTC = pl.Datetime("us", "UTC")
COLUMNS = {"time": UTC, "account": pl.String, "device": pl.String, "action": pl.String}
ISO = "%Y-%m-%dT%H:%M:%S%.fZ"


def _files(logs: Path, pattern: str) -> list[str]:
    return sorted(str(p) for p in logs.rglob(pattern) if p.is_file())


def _lines(files: list[str]) -> pl.LazyFrame:
    # One String column per line: a separator and quote that never occur.
    return pl.scan_csv(files, has_header=False, separator="\x1f", quote_char=None, schema={"line": pl.String})


def _iso(column: str) -> pl.Expr:
    return pl.col(column).str.to_datetime(ISO, time_zone="UTC", strict=False).cast(UTC)


def events(logs: Path) -> pl.LazyFrame:
    """Every event of *logs* as ``time, account, device, action``."""
    parts: list[pl.LazyFrame] = []
    if files := _files(logs, "*hes_commands*.jsonl"):
        parts.append(pl.scan_ndjson(files, schema={"ts": pl.String, "user": pl.String, "command": pl.String,
                                                   "targetId": pl.String, "targetGroup": pl.String})
                     .select(time=_iso("ts"), account=pl.col("user"),
                             device=pl.coalesce("targetId", "targetGroup"), action=pl.col("command")))
    if files := _files(logs, "*winsec*.jsonl"):
        # Flat Get-WinEvent lines and Winlogbeat (ECS) lines, one schema for both.
        users = pl.Struct({"TargetUserName": pl.String, "SubjectUserName": pl.String})
        ecs = pl.col("winlog").struct
        parts.append(pl.scan_ndjson(files, schema={
            "TimeCreated": pl.String, "EventID": pl.Int64, "TargetUserName": pl.String, "SubjectUserName": pl.String,
            "@timestamp": pl.String, "winlog": pl.Struct({"event_id": pl.String, "event_data": users})})
                     .select(time=pl.coalesce(_iso("TimeCreated"), _iso("@timestamp")),
                             account=pl.coalesce("TargetUserName", "SubjectUserName",
                                                 ecs.field("event_data").struct.field("TargetUserName"),
                                                 ecs.field("event_data").struct.field("SubjectUserName")),
                             device=pl.lit(None, pl.String),
                             action=pl.coalesce(pl.col("EventID").cast(pl.String), ecs.field("event_id"))))
    if files := _files(logs, "*hes_audit*.csv"):
        parts.append(pl.scan_csv(files, schema={c: pl.String for c in (
            "EventTimeUTC", "AuditId", "UserName", "Role", "ClientIP", "Workstation", "Category", "Action",
            "ObjectType", "ObjectId", "OldValue", "NewValue", "Result")})
                     .select(time=_iso("EventTimeUTC"), account=pl.col("UserName"), device=pl.col("ObjectId"),
                             action=pl.col("Action")))
    if files := _files(logs, "*dms*.log"):
        line = pl.col("line")
        parts.append(_lines(files).select(
            time=line.str.extract(r"^<\d+>1 (\S+)", 1).str.to_datetime(ISO, time_zone="UTC", strict=False).cast(UTC),
            account=line.str.extract(r' user="([^"]*)"', 1), device=line.str.extract(r' device="([^"]*)"', 1),
            action=line.str.extract(r"^<\d+>1 \S+ \S+ \S+ \S+ (\S+)", 1)))
    if files := _files(logs, "*.cef"):
        line = pl.col("line")
        rt = line.str.extract(r"\brt=(.+?) \w+=", 1)
        parts.append(_lines(files).select(
            time=pl.coalesce(rt.str.strptime(UTC, "%b %d %Y %H:%M:%S UTC", strict=False),
                             pl.from_epoch(rt.cast(pl.Int64, strict=False), time_unit="ms").dt.replace_time_zone("UTC")),
            account=line.str.extract(r"\bsuser=(\S+)", 1), device=pl.lit(None, pl.String),
            action=line.str.split("|").list.get(4, null_on_oob=True)))
    if not parts:
        return pl.LazyFrame(schema=COLUMNS)
    return pl.concat([p.cast(COLUMNS) for p in parts])


def floor(logs: Path) -> dict[str, int]:
    """Events read and windows per entity kind (entity x hour) of *logs*, in one streaming pass."""
    lf = events(logs).with_columns(hour=pl.col("time").dt.truncate("1h"))
    per = {kind: (lf.filter(pl.col(kind).is_not_null()).group_by(kind, "hour")
                  .agg(events=pl.len(), actions=pl.col("action").n_unique()))
           for kind in ("account", "device")}
    count = lf.select(pl.len())
    *windows, total = pl.collect_all([*per.values(), count], engine="streaming")
    return {"events": int(total.item()), **{f"{kind}_windows": w.height for kind, w in zip(per, windows, strict=True)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", type=Path)
    args = parser.parse_args()
    began = time.perf_counter()
    result = floor(args.logs)
    print(json.dumps({**result, "seconds": round(time.perf_counter() - began, 2),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    sys.exit(main())
