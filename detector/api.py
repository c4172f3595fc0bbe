"""The notebook API: every stage as a function over polars tables, and findings that explain themselves.

::

    import detector

    events, rejects = detector.read_logs("sample_logs/")        # polars DataFrames
    model = detector.load_model("models/default")
    findings = detector.scan(events, model)                      # a Findings
    findings.df.head()                                           # the findings contract
    ex = findings.explain(findings.df["finding_id"][0])          # reasons, events, raw lines
    findings.timeline("eprice")                                  # hourly activity around its windows
    findings.plot_timeline("eprice")                             # the same as a matplotlib Figure
    findings.to_arrow()                                          # pyarrow.Table, without copying

The work is done elsewhere; this module keeps the names notebooks import: the scan runner
(:mod:`detector.runner`), its result (:mod:`detector.result`), evidence and raw lines
(:mod:`detector.evidence`) and timelines (:mod:`detector.timelines`).
"""

from __future__ import annotations

import polars as pl

from detector.config import Config
from detector.detection import profiles_of
from detector.evidence import EVIDENCE_FILE, cited_events, evidence_locations, read_raw_lines
from detector.features import build_features as _build_features
from detector.features import build_profiles
from detector.model_store import Model, load_model
from detector.result import Explanation, FindingNotFound, Findings, ProgressCallback
from detector.runner import plan, read_logs, read_with_reports, scan, train
from detector.safe_text import escape_html
from detector.timelines import CONTEXT, TIMELINE_FILE, TIMELINE_SCHEMA, entity_timeline, timeline_counts

__all__ = [
    "CONTEXT",
    "EVIDENCE_FILE",
    "TIMELINE_FILE",
    "TIMELINE_SCHEMA",
    "Explanation",
    "FindingNotFound",
    "Findings",
    "ProgressCallback",
    "build_features",
    "cited_events",
    "entity_timeline",
    "escape_html",
    "evidence_locations",
    "load_model",
    "plan",
    "read_logs",
    "read_raw_lines",
    "read_with_reports",
    "scan",
    "timeline_counts",
    "train",
]


def build_features(events: pl.DataFrame | pl.LazyFrame, model: Model | None = None, *,
                   config: Config | None = None) -> dict[str, pl.LazyFrame]:
    """The behaviour windows of *events*: one row per entity and window, with its features.

    Parameters
    ----------
    events
        Events in the normalized schema.
    model
        Compare each window with this model's baseline profiles (what scoring does). Without a
        model, the events are their own baseline: each window is compared with the rest of the
        events of its entity (leave-window-out), which is what training does.
    config
        Feature settings; by default the model's, or the defaults.

    Returns
    -------
    dict[str, polars.LazyFrame]
        ``{"account": ..., "device": ...}``; nothing is computed until you ``.collect()``.
        ``detector.features.feature_columns(kind)`` lists the model's input columns and
        ``detector.features.FEATURE_DESCRIPTIONS`` says what each one means.
    """
    if config is None:
        config = model.settings if model is not None else Config()
    profiles = profiles_of(model) if model is not None else build_profiles(events, config.features)
    return _build_features(events, profiles, config.features)


