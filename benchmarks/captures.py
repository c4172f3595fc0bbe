"""The real captures of ``../shared/data`` scanned as a responder would, one JSON line each.

OTRF captures (``otrf/*.zip``): the JSON files extracted, ``detector.read_logs``, then
``detector.scan(events)`` without a model or ``--tz``. EVTX samples (``evtx/*.evtx``): the same on each
file. Each line gives events, rejects, findings, findings at medium and above, the top severity, the
signals at medium and above, the findings per severity and their ids, so that two versions' outputs
compare line for line (``cmp``):

    python benchmarks/captures.py [DATA_DIR] > captures.jsonl
"""

from __future__ import annotations

import json
import sys
import tempfile
import zipfile
from pathlib import Path

import polars as pl

import detector

SEVERITIES = ["low", "medium", "high", "critical"]


def summary(name: str, events: pl.DataFrame, rejects: pl.DataFrame) -> dict[str, object]:
    found = detector.scan(events).df if events.height else pl.DataFrame({"severity": [], "signals": [],
                                                                           "finding_id": []})
    alerting = found.filter(pl.col("severity").is_in(SEVERITIES[1:]))
    signals = sorted({s["signal"] for row in alerting["signals"].to_list() for s in row if s["impact"] in SEVERITIES[1:]})
    return {"capture": name, "events": events.height, "rejects": rejects.height, "findings": found.height,
            "medium+": alerting.height, "top": max(found["severity"].to_list(), key=SEVERITIES.index, default="-"),
            "signals": signals, "by_severity": {s: int((found["severity"] == s).sum()) for s in SEVERITIES},
            "ids": sorted(found["finding_id"].to_list())}


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
    for archive in sorted((data / "otrf").glob("*.zip")):
        with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(archive) as zipped:
            zipped.extractall(folder, [m for m in zipped.namelist() if m.endswith(".json") and "__MACOSX" not in m])
            print(json.dumps(summary(archive.stem, *detector.read_logs(folder))), flush=True)
    for sample in sorted((data / "evtx").glob("*.evtx")):
        print(json.dumps(summary(sample.name, *detector.read_logs(sample))), flush=True)


if __name__ == "__main__":
    main()
