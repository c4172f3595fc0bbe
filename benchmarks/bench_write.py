"""The write stage of a scan alone: findings files, cited events with their raw lines, hourly timelines
and the HTML report, timed on the findings of one scan.

The logs are scanned once (in this process, as ``ami-detector scan`` does); then, each run, every part of
``Findings.write`` is timed on its own and the whole of it once, wall and CPU seconds (CPU counts every
thread). Run it with ``PYTHONPATH`` set to a copy of another ``detector/`` to compare two versions on the
same findings; ``--out`` keeps the last run's files for comparing outputs.

    python benchmarks/bench_write.py /tmp/speed/bench/sparse/scored --model /tmp/speed/bench/sparse_model --runs 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import polars as pl

from detector import api
from detector.evidence import _behind, read_raw_lines, write_cited_events
from detector.findings import write_findings
from detector.model_store import load_model
from detector.report import render_report


def _timed(results: dict[str, list[tuple[float, float]]], name: str, work: Callable[[], Any]) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    results.setdefault(name, []).append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def _one_run(found: api.Findings, directory: Path, results: dict[str, list[tuple[float, float]]]) -> None:
    """Each part of ``Findings.write`` on its own into *directory*/parts, then all of it into *directory*/all."""
    out = directory / "parts"
    out.mkdir(parents=True)
    _timed(results, "findings files", lambda: write_findings(found.df, out))
    behind = _timed(results, "  cited events (spill)", lambda: _behind(found.events, found.df))
    where = behind.select("raw_file", "raw_line").unique(maintain_order=True)
    _timed(results, "  their raw lines", lambda: read_raw_lines(where))
    _timed(results, "evidence.parquet", lambda: write_cited_events(found.events, found.df, out / "evidence.parquet"))
    hourly = _timed(results, "timelines", found.timeline_counts)
    saved = pl.scan_parquet(out / "evidence.parquet")
    _timed(results, "report", lambda: render_report(
        found.df, events=saved, timelines=hourly, incidents=found.incidents, summary=found.summary(),
        generated_at=datetime(2026, 1, 1, tzinfo=UTC)))
    _timed(results, "Findings.write (all)", lambda: found.write(directory / "all"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="keep the last run's output directory here")
    args = parser.parse_args()
    started = time.perf_counter()
    found = api.scan([args.logs], load_model(args.model))
    print(f"scanned in {time.perf_counter() - started:.1f} s: {found.df.height:,} findings", flush=True)
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        with TemporaryDirectory() as tmp:
            for run in range(args.runs):
                _one_run(found, Path(tmp) / f"run{run}", results)
            if args.out is not None:
                found.write(args.out)
    finally:
        found.close()
    print(f"{'part':24s} {'wall s (each run)':>24s} {'cpu s (each run)':>24s}")
    for name, times in results.items():
        walls = ", ".join(f"{w:.2f}" for w, _ in times)
        cpus = ", ".join(f"{c:.2f}" for _, c in times)
        print(f"{name:24s} {walls:>24s} {cpus:>24s}")


if __name__ == "__main__":
    main()
