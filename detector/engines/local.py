"""The local engine: the scan's heavy stages in this process, on its threads (polars' and the
parse-ahead / window-ahead overlap of :mod:`detector.overlap`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import polars as pl

from detector.config import Config
from detector.detection import train_slices
from detector.event_store import EventStore, read_part
from detector.model_store import Model
from detector.pipeline import ParseRun, parse_to_spill
from detector.slices import Carried, SliceSource, score_slices
from detector.spill import EventSpill


class LocalEngine:
    """:func:`~detector.pipeline.parse_to_spill` (or an event store's parts read with polars),
    :func:`~detector.slices.score_slices` and :func:`~detector.detection.train_slices`."""

    name = "local"

    def parse(self, run: ParseRun, spill: EventSpill) -> pl.DataFrame:
        return parse_to_spill(run, spill)

    def read_store(self, store: EventStore, spill: EventSpill) -> None:
        # A part (a nightly batch's events of one day) at a time: memory follows a part.
        for part in store.parts:
            spill.add(read_part(part))

    def score(self, slices: SliceSource | EventSpill, model: Model, config: Config | None, *,
              min_severity: str = "low", scored_from: datetime | None = None,
              on_slice: Callable[[int], None] | None = None,
              carried: Carried | None = None) -> tuple[pl.DataFrame, int]:
        source = slices.slices() if isinstance(slices, EventSpill) else slices
        return score_slices(source, model, config, min_severity=min_severity, scored_from=scored_from,
                            on_slice=on_slice, carried=carried)

    def train(self, spill: EventSpill, config: Config | None, *, until: datetime | None = None,
              metadata: Mapping[str, Any] | None = None, sample: int | None = None) -> Model:
        """:func:`~detector.detection.train_slices` over the slices of *spill*, read here one at a time."""
        slices = [(start, count, events if until is None else events.filter(pl.col("time") < until))
                  for start, count, events in spill.slices() if until is None or start < until]
        training_events = sum(frame.item() for frame in pl.collect_all([lf.select(pl.len()) for _, _, lf in slices]))
        return train_slices(slices, config, {"training_events": training_events, **(metadata or {})}, sample)

    def close(self) -> None:
        """Nothing to release: the local engine holds no resources between scans."""
