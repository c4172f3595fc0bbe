"""Throughput and peak memory of ``detector.simulate.simulate``.

Each size runs in a fresh interpreter so that its peak RSS is its own. The sizes share the meter
and operator counts and differ only in days: a flat peak RSS between them shows that memory
depends on the size of a day, not on the number of days.

    python benchmarks/bench_simulate.py                 # ~1M and ~10M events
    python benchmarks/bench_simulate.py --sizes 1m      # one size
    python benchmarks/bench_simulate.py --gzip          # with compressed output
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# About 290k events a day with a million meters and 60 operators (fewer at weekends).
SIZES: dict[str, dict[str, int]] = {
    "1m": {"meters": 1_000_000, "operators": 60, "days": 4},
    "10m": {"meters": 1_000_000, "operators": 60, "days": 38},
    "50m": {"meters": 2_000_000, "operators": 120, "days": 96},
}


def run_one(size: str, compress: bool) -> dict[str, object]:
    from detector.simulate import simulate

    params = SIZES[size]
    out = Path(tempfile.mkdtemp(prefix=f"bench_simulate_{size}_"))
    try:
        began = time.perf_counter()
        summary = simulate(out, seed=1, compress=compress, **params)
        seconds = time.perf_counter() - began
        written = sum(p.stat().st_size for p in summary.files)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"size": size, **params, "gzip": compress, "events": summary.total_events, "seconds": round(seconds, 1),
            "events_per_s": round(summary.total_events / seconds), "peak_rss_mib": round(peak_kib / 1024),
            "written_mib": round(written / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1m", "10m"], choices=sorted(SIZES))
    parser.add_argument("--gzip", action="store_true", help="write .gz files")
    parser.add_argument("--one", choices=sorted(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.gzip)))
        return
    print(f"{'size':>5} {'meters':>9} {'days':>4} {'events':>11} {'seconds':>8} {'events/s':>10} "
          f"{'peak RSS MiB':>12} {'written MiB':>11}")
    for size in args.sizes:
        command = [sys.executable, __file__, "--one", size] + (["--gzip"] if args.gzip else [])
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        print(f"{size:>5} {result['meters']:>9} {result['days']:>4} {result['events']:>11,} {result['seconds']:>8} "
              f"{result['events_per_s']:>10,} {result['peak_rss_mib']:>12} {result['written_mib']:>11}")


if __name__ == "__main__":
    main()
