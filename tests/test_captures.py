"""Real Windows captures of a lab domain under attack (OTRF Security-Datasets, ``../shared/data/otrf``),
scanned as a responder would: no model, no ``--tz``, nothing but the capture.

What a capture holds decides what must be found: every log clear, account created, service installed
and scheduled task created or changed in the events must appear among the signals of a finding at
medium or above, attributed to the account the events name. Nothing may crash.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl
import pytest

import detector

OTRF = Path(__file__).resolve().parents[2] / "shared" / "data" / "otrf"
CAPTURES = sorted(OTRF.glob("*.zip")) if OTRF.is_dir() else []
# Action in the events -> the signal a finding must carry for it.
MUST_FIND = {
    "log_cleared": "log_cleared",
    "account_created": "account_created",
    "service_installed": "service_installed",
    "task_created": "task_created",
    "task_modified": "task_created",
}

pytestmark = pytest.mark.skipif(not CAPTURES, reason=f"the OTRF captures are not at {OTRF}")


def _extract(archive: Path, into: Path) -> Path:
    with zipfile.ZipFile(archive) as zipped:
        members = [m for m in zipped.namelist() if m.endswith(".json") and "__MACOSX" not in m]
        zipped.extractall(into, members)
    return into


@pytest.mark.parametrize("archive", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_a_capture_gives_findings_for_what_it_holds(archive: Path, tmp_path: Path) -> None:
    folder = _extract(archive, tmp_path)
    events, rejects = detector.read_logs(folder)
    lines = sum(sum(1 for line in p.open(encoding="utf-8", errors="replace") if line.strip())
                for p in folder.rglob("*.json"))
    assert events.height + rejects.height == lines  # nothing lost
    found = detector.scan(events)
    try:
        alerts = found.df.filter(pl.col("severity").cast(pl.String).is_in(["medium", "high", "critical"]))
        signalled = set(alerts.select(pl.col("signals").list.eval(pl.element().struct.field("signal")))
                        .to_series().explode().drop_nulls())
        held = set(events.get_column("action").cast(pl.String)) & set(MUST_FIND)
        assert {MUST_FIND[a] for a in held} <= signalled, (held, signalled)
        # Incidents group them, and each finding names its account in its first reason.
        assert alerts.get_column("incident_id").null_count() == 0
        for row in alerts.iter_rows(named=True):
            assert row["reasons"][0].startswith(f"{row['entity_id']}: ")
    finally:
        found.close()
