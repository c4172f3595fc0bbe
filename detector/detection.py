"""Training and scoring: events in, a model or ranked and explained findings out.

``train`` builds baseline profiles and fits one scorer per entity kind on the baseline's own
windows; ``score`` turns the windows of new events into findings per the DESIGN.md contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from detector.config import Config
from detector.errors import DetectorError
from detector.explain import reasons
from detector.features import (
    ENTITY_KINDS,
    PROFILE_SCHEMAS,
    TAIL_FEATURES,
    Profiles,
    build_features,
    build_profiles,
    feature_columns,
)
from detector.findings import FINDINGS_SCHEMA, SEVERITIES, empty_findings, finding_ids, rank
from detector.model_store import Model
from detector.scoring import ColdStartError, SeverityThresholds, severity

DETECTOR = "iforest"


class NoBaselineError(DetectorError, ValueError):
    """There are not enough baseline events or windows to train on."""


def _collect(frame: pl.LazyFrame) -> pl.DataFrame:
    # The in-memory engine runs these window plans about 1.5x faster than the streaming one here.
    return frame.collect(engine="in-memory")


def profiles_of(model: Model) -> Profiles:
    """The baseline profiles stored in a model."""
    scalars = model.metadata.get("profiles", {})

    def when(key: str) -> datetime | None:
        value = scalars.get(key)
        return datetime.fromisoformat(value) if value else None

    return Profiles(
        **{name: model.tables[name] for name in PROFILE_SCHEMAS},
        baseline_start=when("baseline_start"), baseline_end=when("baseline_end"),
        window=scalars.get("window", "1h"), event_count=int(scalars.get("event_count", 0)),
    )


# The baseline is cut into this many + 1 equal parts; each part after the first is turned into
# training windows against the profiles of everything before it (see _training_windows).
TRAINING_FOLDS = 3


def _training_windows(events: pl.LazyFrame, start: datetime, end: datetime, config: Config
                      ) -> list[dict[str, pl.LazyFrame]]:
    """Training windows that meet their baseline the way scanned windows will: from the outside.

    Scored windows are compared with profiles of an earlier period, so a meter's first disconnect,
    an account's first new address or a first-ever setting change look new. Training windows
    compared with profiles that contain them would never look new, and the model would learn that
    novelty does not happen. So the baseline is split in time: each later part is featurized
    against the profiles of all the parts before it (an expanding window), and the scorer learns
    how often novelty happens in ordinary weeks.
    """
    span = end - start
    cuts = [start + span * k / (TRAINING_FOLDS + 1) for k in range(1, TRAINING_FOLDS + 1)] + [None]
    folds = []
    for lower, upper in zip(cuts, cuts[1:], strict=False):
        history = events.filter(pl.col("time") < lower)
        part = events.filter(pl.col("time") >= lower)
        if upper is not None:
            part = part.filter(pl.col("time") < upper)
        profiles = build_profiles(history, config.features)
        if profiles.has_baseline:
            folds.append(build_features(part, profiles, config.features))
    return folds


def train(events: pl.DataFrame | pl.LazyFrame, config: Config | None = None,
          metadata: dict[str, Any] | None = None) -> Model:
    """Learn baseline profiles and fit a scorer per entity kind on the baseline's windows.

    Raises
    ------
    NoBaselineError
        When the events hold no entity kind with enough windows to calibrate a scorer.
    """
    config = config or Config()
    events = events.lazy()
    profiles = build_profiles(events, config.features)
    if not profiles.has_baseline:
        raise NoBaselineError("no events to learn a baseline from")
    assert profiles.baseline_start is not None and profiles.baseline_end is not None
    folds = _training_windows(events, profiles.baseline_start, profiles.baseline_end, config)
    scorers = {}
    skipped = {}
    for kind in ENTITY_KINDS:
        windows = pl.concat([_collect(fold[kind].select(feature_columns(kind))) for fold in folds])
        try:
            scorers[kind] = config.scoring.make_scorer().fit(
                windows.to_numpy(), feature_columns(kind), tail_features=TAIL_FEATURES[kind])
        except ColdStartError as exc:
            skipped[kind] = exc.message
    if not scorers:
        raise NoBaselineError("not enough baseline windows to train any scorer: " + "; ".join(
            f"{kind}: {why}" for kind, why in skipped.items()))
    assert profiles.baseline_start is not None and profiles.baseline_end is not None
    return Model(
        training_span=(profiles.baseline_start, profiles.baseline_end),
        scorers=scorers,
        config=config.to_dict(),
        metadata={**(metadata or {}), "skipped_kinds": skipped, "profiles": {
            "baseline_start": profiles.baseline_start.isoformat(), "baseline_end": profiles.baseline_end.isoformat(),
            "window": profiles.window, "event_count": profiles.event_count},
            "training_windows": {k: s.n_training_windows for k, s in scorers.items()}},
        tables={name: getattr(profiles, name) for name in PROFILE_SCHEMAS},
    )


def score(events: pl.DataFrame | pl.LazyFrame, model: Model, config: Config | None = None,
          min_severity: str = "low") -> pl.DataFrame:
    """Score the windows of *events* against *model* and return the findings, most anomalous first.

    Only windows whose calibrated score reaches *min_severity* become findings.
    """
    config = config or Config.from_dict({k: v for k, v in model.config.items() if k in ("features", "scoring")})
    thresholds = SeverityThresholds.from_dict(model.config.get("scoring", {}).get("severity", {}))
    profiles = profiles_of(model)
    frames = build_features(events.lazy(), profiles, config.features)
    kinds = sorted(model.scorers)
    # Together: the two plans share the events and keep both cores busy where one plan would not.
    collected = dict(zip(kinds, pl.collect_all([frames[kind] for kind in kinds], engine="in-memory"), strict=True))
    parts = [empty_findings()]
    for kind in kinds:
        scorer, windows = model.scorers[kind], collected[kind]
        if windows.height == 0:
            continue
        names = feature_columns(kind)
        matrix = windows.select(names).to_numpy()
        scores, rarest, tail_driven = scorer.combined(matrix)
        labels = severity(scores, thresholds)
        if kind == "device":
            # A meter that heard from two operators in an hour is odd but not a security event:
            # devices rise above low only on a security signal (the tail component), never on
            # volume alone. There are several times more device windows than account windows, so
            # their forest alone would spend most of the alarm budget.
            labels = np.where(~tail_driven & np.isin(labels, SEVERITIES[1:]), "low", labels)
        keep = np.isin(labels, SEVERITIES[SEVERITIES.index(min_severity):])
        if not keep.any():
            continue
        index = np.flatnonzero(keep)
        explained = scorer.explain(matrix[index], top_k=config.scoring.top_k)
        rows = windows[index].to_dicts()
        records = []
        for i, row, top in zip(index, rows, explained, strict=True):
            if tail_driven[i] and rarest[i] >= 0:
                # The tail component raised the score: its feature leads, the forest's follow.
                j = int(rarest[i])
                lead = {"feature": names[j], "value": float(matrix[i, j]),
                        "baseline": float(scorer.feature_median_[j]), "contribution": 0.5}
                top = [lead] + [dict(t, contribution=t["contribution"] * 0.5) for t in top if t["feature"] != names[j]]
            records.append({
                "entity_kind": kind, "entity_id": row["entity_id"], "window_start": row["window_start"],
                "window_end": row["window_end"], "score": float(scores[i]), "severity": str(labels[i]),
                "detector": DETECTOR, "reasons": reasons(row, top, float(scores[i])), "top_features": top,
                "event_count": int(row["event_count"]), "evidence": row["evidence"], "model_id": model.model_id,
            })
        frame = pl.DataFrame(records, schema={k: v for k, v in FINDINGS_SCHEMA.items() if k != "finding_id"})
        parts.append(frame.with_columns(finding_ids(frame)).select(list(FINDINGS_SCHEMA)))
    return rank(pl.concat(parts))
