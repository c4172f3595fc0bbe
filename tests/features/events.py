"""Hand-made event tables for feature tests: give the columns that matter, the helper fills the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from detector.schema import ACTION_CATEGORY, EVENT_SCHEMA, validate_events


def t(text: str) -> datetime:
    """``"2026-04-14 02:13"`` or ``"2026-04-14 02:13:07"`` as an aware UTC datetime."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def make_events(rows: list[dict[str, Any]], raw_file: str = "test.log") -> pl.DataFrame:
    """Build a valid event table from partial rows.

    ``time`` may be a string for :func:`t`; ``category`` follows from ``action`` (default
    ``login_success``); ``outcome`` defaults to success, ``raw_line`` to the row's 1-based position.
    """
    full = []
    for i, row in enumerate(rows, start=1):
        row = dict(row)
        if isinstance(row.get("time"), str):
            row["time"] = t(row["time"])
        action = row.setdefault("action", "login_success")
        row.setdefault("category", ACTION_CATEGORY[action])
        row.setdefault("outcome", "success")
        row.setdefault("source_system", "hes")
        row.setdefault("source_format", "test")
        row.setdefault("raw_file", raw_file)
        row.setdefault("raw_line", i)
        unknown = set(row) - set(EVENT_SCHEMA.names())
        assert not unknown, f"not schema columns: {unknown}"
        full.append({name: row.get(name) for name in EVENT_SCHEMA.names()})
    frame = pl.DataFrame(full, schema={n: (pl.String if isinstance(d, pl.Enum) else d)
                                       for n, d in EVENT_SCHEMA.items()})
    return validate_events(frame.cast(dict(EVENT_SCHEMA)))
