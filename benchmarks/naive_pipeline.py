"""The same job done the straightforward way, to compare against: the reference for bench_scan.py.

Line by line in Python (``json.loads``, ``csv``, regular expressions) into pandas, then a
loglizer-style isolation forest over per-event one-hot features (action, outcome, source, hour):
fitted on the events before ``--baseline-until`` and scoring every event, an event being a finding
when it is rarer than 99.5% of the baseline's events. Findings are written as CSV.

    python benchmarks/naive_pipeline.py LOGS_DIR --baseline-until 2026-03-05T06:00:00Z --out findings.csv

Its detection quality is that of bench_detection.py's "per-event" baseline (same features, same
forest); what this script adds is the cost of the straightforward parsing and feature code.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

SYSLOG = re.compile(r"^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?\])(?: (.*))?$")
SD_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
CEF_EXTENSION = re.compile(r"(\w+)=((?:[^=\\]|\\.)*?)(?=\s+\w+=|$)")


def parse_jsonl(line: str) -> dict[str, object]:
    record = json.loads(line)
    if "EventID" in record:  # Windows security events
        return {"time": record.get("TimeCreated"), "account": record.get("TargetUserName") or record.get(
            "SubjectUserName"), "action": f"win{record.get('EventID')}", "outcome": "success",
            "src": record.get("IpAddress"), "source": "winsec"}
    return {"time": record.get("ts"), "account": record.get("user"), "action": record.get("command"),
            "outcome": record.get("status"), "src": record.get("client"), "target": record.get("targetId"),
            "source": "hes_commands"}


def parse_syslog(line: str) -> dict[str, object]:
    match = SYSLOG.match(line)
    if match is None:
        raise ValueError("not RFC 5424")
    params = dict(SD_PARAM.findall(match.group(7)))
    return {"time": match.group(2), "account": params.get("user"), "action": match.group(6),
            "outcome": params.get("result", "success"), "src": params.get("src"), "target": params.get("device"),
            "source": "dms"}


def parse_cef(line: str) -> dict[str, object]:
    header = line.split("|", 7)
    if len(header) < 8:
        raise ValueError("not CEF")
    ext = {k: v.strip() for k, v in CEF_EXTENSION.findall(header[7])}
    return {"time": ext.get("rt"), "account": ext.get("suser"), "action": header[4], "outcome": ext.get("outcome"),
            "src": ext.get("src"), "target": ext.get("dhost"), "source": "cef"}


def parse_file(path: Path) -> tuple[list[dict[str, object]], int]:
    rows, bad = [], 0
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        if path.suffix == ".csv":
            for record in csv.DictReader(handle):
                rows.append({"time": record.get("EventTimeUTC"), "account": record.get("UserName"),
                             "action": record.get("Action"), "outcome": record.get("Result"),
                             "src": record.get("ClientIP"), "target": record.get("ObjectId"), "source": "hes_audit"})
            return rows, bad
        parse = {".jsonl": parse_jsonl, ".log": parse_syslog, ".cef": parse_cef}[path.suffix]
        for line in handle:
            if not line.strip():
                continue
            try:
                rows.append(parse(line.rstrip("\r\n")))
            except (ValueError, KeyError):
                bad += 1
    return rows, bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", type=Path)
    parser.add_argument("--baseline-until", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    began = time.perf_counter()
    rows: list[dict[str, object]] = []
    bad = 0
    for path in sorted(args.logs.iterdir()):
        if path.suffix in (".jsonl", ".log", ".cef", ".csv"):
            got, rejected = parse_file(path)
            rows += got
            bad += rejected
    parsed = time.perf_counter()
    events = pd.DataFrame(rows)
    del rows
    events["time"] = pd.to_datetime(events["time"], utc=True, format="mixed", errors="coerce")
    events["hour"] = events["time"].dt.hour.astype("string")
    features = pd.get_dummies(events[["action", "outcome", "source", "hour"]], dtype=np.float32)
    featurized = time.perf_counter()
    in_baseline = (events["time"] < pd.Timestamp(args.baseline_until)).to_numpy()
    forest = IsolationForest(n_estimators=200, random_state=0).fit(features.to_numpy()[in_baseline])
    anomaly = -forest.score_samples(features.to_numpy())
    threshold = np.quantile(anomaly[in_baseline], 0.995)
    scored = time.perf_counter()
    findings = events.assign(score=anomaly)[(anomaly > threshold) & ~in_baseline].sort_values("score", ascending=False)
    findings.to_csv(args.out, index=False)
    done = time.perf_counter()
    print(json.dumps({
        "events": len(events), "rejects": bad, "findings": len(findings),
        "seconds": {"parse": round(parsed - began, 2), "features": round(featurized - parsed, 2),
                    "score": round(scored - featurized, 2), "write": round(done - scored, 2),
                    "total": round(done - began, 2)},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }))


if __name__ == "__main__":
    sys.exit(main())
