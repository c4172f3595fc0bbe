"""Synthetic event tables of any size, for timing the feature stage (not a test module).

Run ``python benchmarks/synthetic_events.py [N] [ENGINE]`` to time build_profiles and build_features
on N events (default 1,000,000: 28 days of baseline plus 2 days scanned), collecting with the polars
engine ENGINE (default ``auto``; ``in-memory`` or ``streaming``).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import numpy as np
import polars as pl

from detector.schema import ACTION_CATEGORY, EVENT_SCHEMA, validate_events

_ACTIONS = np.array(["on_demand_read", "ping", "time_sync", "remote_disconnect", "remote_connect", "login_success",
                     "logout", "login_failure", "setting_changed", "fw_download", "key_renewal", "status_change",
                     "breaker_open", "vpn_connect", "privileged_logon"])
_WEIGHTS = np.array([40, 10, 5, 2, 2, 8, 7, 1, 1, 0.2, 0.2, 3, 0.3, 1, 1], dtype=float)


def synthetic_events(n: int, *, days: int = 30, accounts: int = 200, meters: int = 50_000,
                     seed: int = 0) -> pl.DataFrame:
    """*n* events over *days* days: one service account does most reads, people work office hours."""
    rng = np.random.default_rng(seed)
    start = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1_000_000)
    span = days * 86_400_000_000
    actions = rng.choice(_ACTIONS, size=n, p=_WEIGHTS / _WEIGHTS.sum())
    # Routine reads mostly by the service account; the rest spread over the human accounts.
    routine = np.isin(actions, ["on_demand_read", "ping", "time_sync"])
    account_ids = np.where(routine & (rng.random(n) < 0.9), 0, rng.integers(1, accounts, n))
    account = np.char.add("user", account_ids.astype(str)).astype(object)
    account[account_ids == 0] = "svc_read"
    account[actions == "status_change"] = None
    human_hour = rng.normal(13, 3, n).clip(0, 23.99)
    day = rng.integers(0, days, n)
    offset = np.where(account_ids == 0, rng.integers(0, span, n),
                      day * 86_400_000_000 + (human_hour * 3_600_000_000).astype(np.int64))
    times = np.sort(start + offset)
    device = rng.random(n) < 0.85
    target_type = np.where(device, np.where(np.isin(actions, ["status_change", "breaker_open"]), "breaker", "meter"),
                           None).astype(object)
    target_id = np.char.add("M", rng.integers(0, meters, n).astype(str)).astype(object)
    target_id[~device] = None
    ip = np.char.add("10.0.", (account_ids % 250).astype(str))
    ip = np.char.add(np.char.add(ip, "."), rng.integers(1, 4, n).astype(str)).astype(object)
    frame = pl.DataFrame({
        "time": pl.Series(times, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
        "source_system": "hes",
        "source_format": "synthetic",
        "account": pl.Series(account, dtype=pl.String),
        "src_ip": pl.Series(ip, dtype=pl.String),
        "src_host": pl.Series(np.char.add("WS", (account_ids % 40).astype(str)), dtype=pl.String),
        "action": pl.Series(actions, dtype=pl.String),
        "outcome": pl.Series(np.where(rng.random(n) < 0.03, "failure", "success"), dtype=pl.String),
        "target_type": pl.Series(target_type, dtype=pl.String),
        "target_id": pl.Series(target_id, dtype=pl.String),
        "target_count": pl.Series(np.ones(n, dtype=np.int32)),
        "raw_file": "synthetic.log",
        "raw_line": pl.int_range(1, n + 1, eager=True),
    })
    frame = frame.with_columns(category=pl.col("action").replace_strict(ACTION_CATEGORY))
    return validate_events(frame.select(
        pl.col(c).cast(d) if c in frame.columns else pl.lit(None, d).alias(c) for c, d in EVENT_SCHEMA.items()))


def main(n: int, engine: str = "auto") -> None:
    from detector.features import FeatureConfig, build_features, build_profiles

    events = synthetic_events(n)
    first, last = events.get_column("time").min(), events.get_column("time").max()
    cut = first + (last - first) * 28 / 30  # type: ignore[operator]
    config = FeatureConfig()
    t0 = time.perf_counter()
    profiles = build_profiles(events.filter(pl.col("time") < cut), config)
    t1 = time.perf_counter()
    lazy = build_features(events, profiles, config)
    frames = {k: f.collect(engine=engine) for k, f in lazy.items()}  # type: ignore[call-overload]
    t2 = time.perf_counter()
    print(f"{n:,} events: build_profiles {t1 - t0:.2f} s, build_features (all events, collected with engine "
          f"{engine!r}) {t2 - t1:.2f} s; "
          + ", ".join(f"{k} windows {f.height:,}" for k, f in frames.items()))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, sys.argv[2] if len(sys.argv) > 2 else "auto")
