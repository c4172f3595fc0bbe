"""Compare two scan output directories: ``python benchmarks/compare_scans.py OLD NEW``.

A speed change must leave a scan's outputs as they were: findings (by finding id; scores to 1e-9;
``top_features`` by feature name, their values carrying about 1e-16 of run-to-run noise), incidents, the
cited evidence and the timelines. Prints one line per file; exit status 1 when any differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

TOLERANCE = 1e-9


def _sorted(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    return frame.sort("finding_id") if name == "findings" else frame.sort(frame.columns[:3])


def _feature_names(findings: pl.DataFrame) -> pl.DataFrame:
    return findings.select("finding_id", pl.col("top_features").list.eval(pl.element().struct.field("feature")))


def differences(old: Path, new: Path) -> dict[str, str | None]:
    """Per output file, None when the two are equal, else what differs."""
    found: dict[str, str | None] = {}
    for name in ("findings", "incidents", "evidence", "timeline"):
        a = _sorted(pl.read_parquet(old / f"{name}.parquet"), name)
        b = _sorted(pl.read_parquet(new / f"{name}.parquet"), name)
        try:
            if name == "findings":
                assert_frame_equal(a.drop("top_features"), b.drop("top_features"), check_exact=False,
                                   abs_tol=TOLERANCE, rel_tol=0)
                assert_frame_equal(_feature_names(a), _feature_names(b))
            else:
                assert_frame_equal(a, b, check_exact=False, abs_tol=TOLERANCE, rel_tol=0)
            found[name] = None
        except AssertionError as exc:
            found[name] = str(exc)[:600]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args()
    found = differences(args.old, args.new)
    for name, difference in found.items():
        print(f"{name}: equal" if difference is None else f"{name}: DIFFERENT: {difference}")
    return 1 if any(d is not None for d in found.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
