"""Engines run the scan's heavy stages: parsing files (or reading an event store) into an event spill,
and scoring it slice by slice.

The runner (:mod:`detector.runner`) does everything else the same way whatever the engine: it
resolves the settings and the model, learns a baseline when there is none, and turns the ranked
findings an engine returns into a :class:`~detector.result.Findings`. ``"local"`` runs the stages in
this process (:mod:`detector.engines.local`); ``"spark"`` runs them on Apache Spark
(:mod:`detector.engines.spark`, imported only when asked for: pyspark is an optional extra).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import polars as pl

from detector.errors import DetectorError

if TYPE_CHECKING:
    from detector.config import Config
    from detector.event_store import EventStore
    from detector.model_store import Model
    from detector.pipeline import ParseRun
    from detector.slices import Carried, SliceSource
    from detector.spill import EventSpill

ENGINES = ("local", "spark")


@runtime_checkable
class Engine(Protocol):
    """Runs the scan's heavy stages: parsing files into an event spill, and scoring it slice by slice."""

    name: str

    def parse(self, run: ParseRun, spill: EventSpill) -> pl.DataFrame:
        """Parse run.files into spill (detector.spill layout), fill run.reports; return the rejects."""
        ...

    def read_store(self, store: EventStore, spill: EventSpill) -> None:
        """Copy the events of an event store (detector.event_store) into spill, in the store's order."""
        ...

    def score(self, slices: SliceSource | EventSpill, model: Model, config: Config | None, *,
              min_severity: str, scored_from: datetime | None,
              on_slice: Callable[[int], None] | None, carried: Carried | None = None) -> tuple[pl.DataFrame, int]:
        """Ranked findings of every slice (with incident ids, as slices.score_slices returns) and
        the number of events scored; carried, if given, is what the first slice carries in, updated in
        place to what a slice after the last would carry in (the nightly job's state between nights)."""
        ...

    def train(self, spill: EventSpill, config: Config | None, *, until: datetime | None,
              metadata: Mapping[str, Any] | None, sample: int | None) -> Model:
        """The model learned from the events of *spill* before *until* (as detection.train_slices
        learns it), its metadata *metadata* with ``training_events`` first."""
        ...

    def close(self) -> None: ...


def engine_named(name: str, **options: Any) -> Engine:
    """The engine called *name* (one of :data:`ENGINES`), made with *options*.

    Raises
    ------
    DetectorError
        For an unknown name, or an engine whose optional dependencies are not installed.
    """
    if name == "local":
        from detector.engines.local import LocalEngine

        return LocalEngine(**options)
    if name == "spark":
        try:
            spark = importlib.import_module("detector.engines.spark")
        except ImportError as exc:
            raise DetectorError(f"the spark engine needs pyspark: pip install 'ami-detector[spark]' ({exc})") from None
        engine: Engine = spark.SparkEngine(**options)
        return engine
    raise DetectorError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


@contextmanager
def running(engine: str | Engine, **options: Any) -> Iterator[Engine]:
    """*engine*, or the engine it names (made with *options*); one made here is closed on leaving,
    one given is the caller's to close."""
    if not isinstance(engine, str):
        yield engine
        return
    made = engine_named(engine, **options)
    try:
        yield made
    finally:
        made.close()
