"""The model's life in the state directory: adopt the initial one, train the first, retrain, roll back."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from detector.atomic import fsync_dir
from detector.detection import NoBaselineError, train
from detector.errors import DetectorError
from detector.features.common import is_device_target
from detector.model_store import Model, load_model, save_model
from detector.nightly.config import _format_duration
from detector.nightly.files import iso, remove_tree, utc_now
from detector.nightly.lock import Lock
from detector.nightly.state import (
    Layout,
    Night,
    NightlyError,
    committed_parts,
    load_state,
    save_state,
    scan_events,
)
from detector.pipeline import write_model_card
from detector.schema import EVENT_SCHEMA


def _activate(night: Night, model_id: str, how: str) -> None:
    models = night.state["models"]
    if models["active"] != model_id:
        models["previous"], models["active"] = models["active"], model_id
    models["last_trained"] = iso(night.now)
    models["history"] = (models["history"] + [{"model_id": model_id, "at": iso(night.now), "how": how}])[-20:]

def _commit_models(night: Night) -> None:
    """Save the state naming the active and previous model, then remove every other model."""
    night.save()
    keep = {night.state["models"]["active"], night.state["models"]["previous"]}
    for directory in night.layout.models.iterdir():
        if directory.name not in keep:
            remove_tree(directory, night.layout.tmp)

def _adopt(night: Night, source: Path) -> str:
    copy = night.layout.tmp / f"adopt-{uuid.uuid4().hex[:8]}"
    shutil.copytree(source, copy)
    model = load_model(copy)  # verifies every file before the copy is trusted
    target = night.layout.models / model.model_id
    if target.exists():
        shutil.rmtree(copy)
    else:
        os.replace(copy, target)
        fsync_dir(night.layout.models)
    return model.model_id

def _store_span(night: Night) -> tuple[datetime, datetime] | None:
    parts = [p for paths in committed_parts(night.layout, night.state).values() for p in paths]
    if not parts:
        return None
    span = scan_events(parts).select(pl.col("time").min().alias("a"), pl.col("time").max().alias("b")).collect()
    first, last = span.row(0)
    return None if first is None else (first, last)

def _train_from_store(night: Night, how: str) -> dict[str, Any] | None:
    """Train on the last ``baseline`` of the store, minus windows the ledger flagged >= high."""
    span = _store_span(night)
    if span is None:
        return None
    anchor = min(night.now, span[1])
    start = anchor - night.config.baseline
    parts = [p for day, paths in committed_parts(night.layout, night.state).items()
             if day >= start.date().isoformat() for p in paths]
    events = (scan_events(parts).filter((pl.col("time") > start) & (pl.col("time") <= anchor))
              .sort(["time", "raw_file", "raw_line"]).collect().with_row_index("_i"))
    flagged = _flagged(night)
    bad = pl.concat([
        events.lazy().filter(pl.col("account").is_not_null()).select("_i", "time", entity_id=pl.col("account"))
        .join(flagged.filter(pl.col("entity_kind") == "account"), on="entity_id"),
        events.lazy().filter(is_device_target()).select("_i", "time", entity_id=pl.col("target_id"))
        .join(flagged.filter(pl.col("entity_kind") == "device"), on="entity_id"),
    ]).filter((pl.col("time") >= pl.col("window_start")) & (pl.col("time") < pl.col("window_end")))
    excluded = bad.select("entity_kind", "entity_id", "window_start").unique().collect().height
    bad_rows = bad.select("_i").unique()
    training = events.lazy().join(bad_rows, on="_i", how="anti").drop("_i").collect()
    info = {"how": how, "events": training.height, "excluded_windows": excluded,
            "excluded_events": events.height - training.height,
            "from": iso(start), "until": iso(anchor)}
    try:
        model = train(training, night.config.detector, metadata={
            "trained_by": "ami-detector nightly", "training_events": training.height,
            "excluded_windows_at_high": excluded, "excluded_events": info["excluded_events"]})
    except NoBaselineError as exc:
        night.summary.notes.append(f"model not trained: {exc.message}")
        return None
    saved = save_model(model, night.layout.tmp / f"model-{uuid.uuid4().hex[:8]}")
    target = night.layout.models / model.model_id
    if target.exists():
        shutil.rmtree(saved)
    else:
        write_model_card(model, saved, f"ami-detector nightly ({how}: {info['from']} to {info['until']}, "
                                       f"{excluded} flagged windows left out)")
        os.replace(saved, target)
        fsync_dir(night.layout.models)
    info["model_id"] = model.model_id
    return info

def _flagged(night: Night) -> pl.LazyFrame:
    """Windows the ledger holds at high or critical: never part of a training baseline."""
    parts = sorted(str(p) for p in night.layout.findings.glob("day=*/part-*.parquet"))
    columns: dict[str, Any] = {"entity_kind": pl.String, "entity_id": pl.String,
                               "window_start": EVENT_SCHEMA["time"], "window_end": EVENT_SCHEMA["time"]}
    if not parts:
        return pl.DataFrame(schema=columns).lazy()
    return (pl.scan_parquet(parts, hive_partitioning=False)
            .filter(pl.col("severity").cast(pl.String).is_in(["high", "critical"]))
            .select(list(columns)).unique())

def ensure_model(night: Night) -> Model | None:
    models = night.state["models"]
    if models["active"] is None and night.config.model is not None:
        _activate(night, _adopt(night, night.config.model), "initial model")
        _commit_models(night)
    if models["active"] is None:
        span = _store_span(night)
        collected = span[1] - span[0] if span else timedelta()
        if span is not None and collected >= night.config.min_baseline:
            info = _train_from_store(night, "first model")
            if info is not None:
                _activate(night, info["model_id"], "first model")
                night.summary.retrained = info
                night.summary.notes.append(
                    f"first model {info['model_id']} trained on {info['events']} events from "
                    f"{info['from']} to {info['until']}; those events are its baseline and are not scored, "
                    "scoring starts with the next new events")
                if night.state["job"] is not None:
                    night.state["job"]["baseline"] = True
                _commit_models(night)
        if models["active"] is None:
            night.summary.status = "baseline"
            night.summary.notes.append(
                f"baseline building: not scoring yet ({_format_duration(collected)} of events stored, "
                f"{_format_duration(night.config.min_baseline)} needed; or pass --model)")
            if night.state["job"] is not None:
                night.state["job"]["baseline"] = True
            night.timed("model")
            return None
    night.summary.model_id = models["active"]
    model_dir = night.layout.models / models["active"]
    try:
        model = load_model(model_dir)
    except DetectorError as exc:
        raise NightlyError(f"the active model cannot be loaded ({exc}); roll back with "
                           "`ami-detector nightly --rollback`") from None
    night.timed("model")
    return model

def retrain_if_due(night: Night) -> None:
    models = night.state["models"]
    every = night.config.retrain_every
    if every is None or models["active"] is None or models["last_trained"] is None:
        return
    if night.now - datetime.fromisoformat(models["last_trained"]) < every:
        return
    info = _train_from_store(night, "retrain")
    night.hook("retrain")
    if info is None:
        return
    previous = models["active"]
    _activate(night, info["model_id"], "retrain")
    _commit_models(night)
    night.summary.retrained = info
    night.summary.notes.append(f"model retrained: {info['model_id']} is active, {previous} kept as previous "
                              f"({info['excluded_windows']} windows flagged at high or above left out)")
    night.timed("retrain")


def rollback_model(state_dir: str | Path, *, now: datetime | None = None) -> tuple[str, str]:
    """Make the previous model active again (and the active one previous); returns (active, previous).

    The retraining cadence restarts from now, so the next retrain is a full period away.

    Raises
    ------
    NightlyError
        When there is no previous model; :class:`LockedError` when a run is active.
    """
    layout = Layout(Path(state_dir))
    if not layout.state_file.exists():
        raise NightlyError(f"no nightly state in {state_dir}")
    now = (now or utc_now()).astimezone(UTC)
    with Lock(layout.root):
        state = load_state(layout)
        models = state["models"]
        if not models.get("previous") or not (layout.models / models["previous"]).is_dir():
            raise NightlyError("there is no previous model to roll back to")
        if not models.get("active") or not (layout.models / models["active"]).is_dir():
            raise NightlyError(f"the active model {models.get('active')} is missing from {layout.models}")
        models["active"], models["previous"] = models["previous"], models["active"]
        models["last_trained"] = iso(now)
        models["history"] = (models["history"] + [{"model_id": models["active"], "at": iso(now),
                                                   "how": "rollback"}])[-20:]
        save_state(layout, state)
    line = f"{iso(now)} rollback: active model {models['active']} (was {models['previous']})\n"
    with contextlib.suppress(OSError), open(layout.log, "a", encoding="utf-8") as handle:
        handle.write(line)
    return models["active"], models["previous"]
