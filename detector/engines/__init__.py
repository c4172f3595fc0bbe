"""Engines run the scan's heavy stages: parsing files into an event spill, and scoring it slice by slice.

The interface agreed for the runner (the local engine and the runner's choice of engine by name
live with the runner); :mod:`detector.engines.spark` runs the stages on Apache Spark.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import polars as pl

if TYPE_CHECKING:
    from detector.config import Config
    from detector.model_store import Model
    from detector.pipeline import ParseRun
    from detector.slices import SliceSource
    from detector.spill import EventSpill


class Engine(Protocol):
    """Runs the scan's heavy stages: parsing files into an event spill, and scoring it slice by slice."""

    name: str

    def parse(self, run: ParseRun, spill: EventSpill) -> pl.DataFrame:
        """Parse run.files into spill (detector.spill layout), fill run.reports; return the rejects."""

    def score(self, slices: SliceSource | EventSpill, model: Model, config: Config | None, *,
              min_severity: str, scored_from: datetime | None,
              on_slice: Callable[[int], None] | None) -> tuple[pl.DataFrame, int]:
        """Ranked findings of every slice (with incident ids, as slices.score_slices returns) and
        the number of events scored."""

    def close(self) -> None: ...
