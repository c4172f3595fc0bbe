"""The local engine: the scan's heavy stages in this process, on its threads (polars' and the
parse-ahead / window-ahead overlap of :mod:`detector.overlap`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import polars as pl

from detector.config import Config
from detector.model_store import Model
from detector.pipeline import ParseRun, parse_to_spill
from detector.slices import Carried, SliceSource, score_slices
from detector.spill import EventSpill


class LocalEngine:
    """:func:`~detector.pipeline.parse_to_spill` and :func:`~detector.slices.score_slices`."""

    name = "local"

    def parse(self, run: ParseRun, spill: EventSpill) -> pl.DataFrame:
        return parse_to_spill(run, spill)

    def score(self, slices: SliceSource | EventSpill, model: Model, config: Config | None, *,
              min_severity: str = "low", scored_from: datetime | None = None,
              on_slice: Callable[[int], None] | None = None,
              carried: Carried | None = None) -> tuple[pl.DataFrame, int]:
        source = slices.slices() if isinstance(slices, EventSpill) else slices
        return score_slices(source, model, config, min_severity=min_severity, scored_from=scored_from,
                            on_slice=on_slice, carried=carried)

    def close(self) -> None:
        """Nothing to release: the local engine holds no resources between scans."""
