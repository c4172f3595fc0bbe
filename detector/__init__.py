"""ami-detector: explainable anomaly detection for AMI head-end (HES) and DMS logs.

The public Python API; every table is a polars DataFrame or LazyFrame::

    import detector

    events, rejects = detector.read_logs("sample_logs/", tz="UTC")
    model = detector.load_model("models/default")          # or detector.train(events, ...)
    findings = detector.scan(events, model)                 # detector.Findings
    findings.explain(findings.df["finding_id"][0])          # reasons, events, raw lines
    findings.timeline("eprice"); findings.plot_timeline("eprice")
    detector.write_report(findings, "report.html")

Importing this package is cheap: the pipeline (scikit-learn, the parsers) loads on first use of
one of the names below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detector.api import Explanation, FindingNotFound, Findings, build_features, read_logs, scan, train
    from detector.config import Config
    from detector.errors import DetectorError, InputError, ParseError
    from detector.findings import FINDINGS_SCHEMA
    from detector.model_store import Model, load_model, save_model
    from detector.report import render_report, write_report
    from detector.schema import EVENT_SCHEMA

_EXPORTS: dict[str, str] = {
    "read_logs": "detector.api",
    "build_features": "detector.api",
    "train": "detector.api",
    "scan": "detector.api",
    "Findings": "detector.api",
    "Explanation": "detector.api",
    "FindingNotFound": "detector.api",
    "load_model": "detector.model_store",
    "save_model": "detector.model_store",
    "Model": "detector.model_store",
    "Config": "detector.config",
    "render_report": "detector.report",
    "write_report": "detector.report",
    "DetectorError": "detector.errors",
    "InputError": "detector.errors",
    "ParseError": "detector.errors",
    "FINDINGS_SCHEMA": "detector.findings",
    "EVENT_SCHEMA": "detector.schema",
}

__all__ = [
    "EVENT_SCHEMA", "FINDINGS_SCHEMA", "Config", "DetectorError", "Explanation", "FindingNotFound", "Findings",
    "InputError", "Model", "ParseError", "build_features", "load_model", "read_logs", "render_report", "save_model",
    "scan", "train", "write_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'detector' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
