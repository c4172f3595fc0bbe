"""Check that a change to the parsers leaves their output as it was: dump a parse, then compare dumps.

``dump`` parses the inputs into an event spill (:func:`detector.pipeline.parse_to_spill`, as a scan
does) and writes the spill's events, slice by slice in order, the rejects and the file reports to
Arrow IPC files, with the time the parse took. ``compare`` says whether two dumps are the same:
same rows in the same order, same columns and dtypes, same reports.

    PYTHONPATH=/path/to/old/checkout python benchmarks/parse_check.py dump LOGS OLD_DUMP
    python benchmarks/parse_check.py dump LOGS NEW_DUMP [--tz ZONE]
    python benchmarks/parse_check.py compare OLD_DUMP NEW_DUMP
    python benchmarks/parse_check.py formats LOGS     # CPU seconds per format, best of 3

``formats`` parses each format's files as a scan does (:meth:`ParseRun.chunks`: small files of one
format read together, files and chunks side by side) and reports the CPU time of the process (all
threads) and the wall time: the CPU time is the work the parsers do, which a busy machine changes
less than the wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from detector import api
from detector.parsers import sniff
from detector.pipeline import ParseRun, expand_paths, parse_to_spill
from detector.spill import EventSpill


def dump(logs: Path, out: Path, tz: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run = api.plan(logs, tz=tz)
    with EventSpill.temporary(timedelta(days=1)) as spill:
        wall, cpu = time.perf_counter(), time.process_time()
        rejects = parse_to_spill(run, spill)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        slices = [frame.collect() for _, _, frame in spill.slices()]
        events = pl.concat(slices) if slices else spill.scan().collect()
    events.write_ipc(out / "events.arrow")
    rejects.write_ipc(out / "rejects.arrow")
    reports = [{k: v for k, v in vars(r).items()} for r in run.reports]
    (out / "reports.json").write_text(json.dumps(reports, indent=1, default=str))
    print(json.dumps({"events": events.height, "rejects": rejects.height, "files": len(reports),
                      "parse_and_spill_wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}))


def compare(old: Path, new: Path) -> bool:
    same = True
    for name in ("events.arrow", "rejects.arrow"):
        a, b = pl.read_ipc(old / name), pl.read_ipc(new / name)
        try:
            assert a.schema == b.schema, f"schemas differ: {a.schema} / {b.schema}"
            assert_frame_equal(a, b, check_exact=True)
            print(f"{name}: the same ({a.height} rows)")
        except AssertionError as exc:
            print(f"{name}: DIFFERENT: {exc}")
            same = False
    reports_same = (old / "reports.json").read_text() == (new / "reports.json").read_text()
    print("reports.json: " + ("the same" if reports_same else "DIFFERENT"))
    return same and reports_same


def formats(logs: Path, repeats: int = 3) -> None:
    by_format: dict[str, list[Path]] = {}
    for path in expand_paths([logs])[0]:
        by_format.setdefault(sniff(path).name, []).append(path)
    for name, paths in sorted(by_format.items()):
        best, best_wall = float("inf"), float("inf")
        for _ in range(repeats + 1):  # the first run warms up
            cpu, wall = time.process_time(), time.perf_counter()
            for _chunk in ParseRun(files=paths).chunks():
                pass
            best = min(best, time.process_time() - cpu)
            best_wall = min(best_wall, time.perf_counter() - wall)
        print(json.dumps({"format": name, "files": len(paths), "cpu_s": round(best, 3), "wall_s": round(best_wall, 3)}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("logs", type=Path)
    d.add_argument("out", type=Path)
    d.add_argument("--tz")
    c = sub.add_parser("compare")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    f = sub.add_parser("formats")
    f.add_argument("logs", type=Path)
    args = parser.parse_args()
    if args.command == "formats":
        formats(args.logs)
        return 0
    if args.command == "dump":
        dump(args.logs, args.out, args.tz)
        return 0
    return 0 if compare(args.old, args.new) else 1


if __name__ == "__main__":
    sys.exit(main())
