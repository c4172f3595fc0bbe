"""Fixtures of the hunt tests: the sample month, parsed once for the whole package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"


@pytest.fixture(scope="package")
def sample_events(sample_logs) -> pl.DataFrame:
    """The events of sample_logs/ (parsed once per worker by tests/conftest.py)."""
    return sample_logs[0]


@pytest.fixture(scope="package")
def sample_parquet(sample_events: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample events as a Parquet event table, as `ami-detector parse` writes it (for fast CLI tests)."""
    path = tmp_path_factory.mktemp("sample") / "events.parquet"
    sample_events.write_parquet(path)
    return path


@pytest.fixture(scope="package")
def incidents() -> dict[str, dict[str, Any]]:
    """The planted incidents of sample_logs/labels.json by kind."""
    labels = json.loads((SAMPLE / "labels.json").read_text())
    return {incident["kind"]: incident for incident in labels["incidents"]}
