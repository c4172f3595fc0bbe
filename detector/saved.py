"""Findings read back from a scan's output directory, with the files saved beside them.

The report and :meth:`detector.result.Findings.read` both start from here, so the report needs
nothing but these files (or a result object) to draw the findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from detector.errors import InputError
from detector.evidence import EVIDENCE_FILE
from detector.findings import REQUIRED_COLUMNS
from detector.timelines import TIMELINE_FILE

INCIDENTS_FILE: Final = "incidents.parquet"


@dataclass(frozen=True)
class SavedFindings:
    """A findings table (every column it was saved with) and what was saved beside it, if anything."""

    findings: pl.DataFrame
    evidence: pl.DataFrame | None
    timelines: pl.DataFrame | None
    incidents: pl.DataFrame | None


def read_saved(source: str | Path, *, incidents: bool = True) -> SavedFindings:
    """The findings of a scan's output directory, or of a ``findings.parquet`` file (and, with
    *incidents*, its incidents table when there is one).

    Raises
    ------
    InputError
        When there is no readable findings table, or a file beside it cannot be read.
    """
    root = Path(source)
    path = root / "findings.parquet" if root.is_dir() else root
    frame = _read(path, "findings")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"not a findings table (missing {', '.join(missing)})", source=(str(path), None))
    beside = path.parent

    def optional(name: str, what: str) -> pl.DataFrame | None:
        return _read(beside / name, what) if (beside / name).exists() else None

    return SavedFindings(frame, evidence=optional(EVIDENCE_FILE, "evidence"),
                         timelines=optional(TIMELINE_FILE, "timelines"),
                         incidents=optional(INCIDENTS_FILE, "incidents") if incidents else None)


def _read(path: Path, what: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"cannot read {what}: {exc}", source=(str(path), None)) from None
