"""Lean device windows (no detail columns) for events after the baseline, in one pass.

A scan and every training fold build a device window for almost every device event (a day of a
sparse fleet: 326k events, 272k windows), and each row is a handful of counts compared with the
device's own profile row, its type's median device or everyone's. The general query
(:func:`~detector.features.device.device_windows`) pays a polars group-by with a per-group cost for
each of some thirty aggregations, three profile joins and a chain of conditional expressions per
measure. Here instead:

- each event's device and account are found in the model's device index
  (:meth:`~detector.features.profiles.Profiles.device_index`, built once per model) and the events
  sorted by integer keys of device, window and account once, so a window is a run of rows: the
  runs' starts give every count with one ``numpy`` reduction over whole arrays
  (``reduceat``/``bincount``), distinct issuers included, and a new issuer is a (device, account)
  pair of integers the index does not hold;
- a device's profile rows are taken by index from the whole tables, and every typical value a window may be compared with (its own, its type's median device's, the
  median device's) is one stacked array per measure, from which a window takes one element by
  index rather than choosing between three joined columns; only windows where the measure
  occurred need it (no count, no excess).

Every value is the general query's: log1p and the division of dormancy are polars' own, the rest
is integer arithmetic, IEEE subtraction and division, and a clip at 0 (tested column by column
against the general query). Only events
that all lie after the baseline take this path: for events inside it, each comparison leaves the
window's own events out, which the general query does.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

from detector.features.catalog import CONTROL_ACTIONS, DEVICE_COMMAND_ACTIONS, DEVICE_MEASURES, feature_columns
from detector.features.common import (
    COMMAND_CATEGORIES,
    DEVICE_TARGET_TYPES,
    devices_reached,
    flag_new,
    image_hash,
    is_device_target,
)
from detector.features.config import FeatureConfig
from detector.features.profiles import Profiles
from detector.schema import ACTIONS, CATEGORIES, OUTCOMES, UTC_US

# Window columns of the lean table, between the keys and the features (DEVICE_CONTEXT without detail).
LEAN_CONTEXT: Final = (
    "device_type", "has_baseline", "baseline_events", "baseline_days", "typical_source",
    "first_time", "last_time", "previous_activity",
)

_MICROS_PER_DAY: Final = 86_400_000_000
# Device target types in string order, so that the smallest code is the smallest name (device_type
# is the window's smallest target type, as the general query's min() of strings).
_TYPES: Final = tuple(sorted(DEVICE_TARGET_TYPES))
# typical_source values, by their code in lean_device_windows.
_SOURCES: Final = ("own", "peers", "all", "none")


def _device_events(events: pl.LazyFrame, p: Profiles, config: FeatureConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The events with a device target, sorted by device and window, with what the windows read:
    Enum codes for action, category and outcome, a code for the target type, the novelty flags and
    the device's index in the model (``_device``, -1 for a device it does not know); and the device
    id and account of each event in their first order (``_row`` of the sorted rows is a row there).

    Devices and accounts are sorted by integer keys that sort as their strings
    (:meth:`~detector.features.dictionary.Dictionary.order_keys`), so the windows come out in the
    general query's order.
    """
    selected = events.filter(is_device_target()).select(
        "time", "account",
        # Their Enums (a no-op for events in the normalized schema): the counts compare codes.
        category=pl.col("category").cast(pl.Enum(CATEGORIES)),
        action=pl.col("action").cast(pl.Enum(ACTIONS)),
        outcome=pl.col("outcome").cast(pl.Enum(OUTCOMES)),
        _type=pl.col("target_type").replace_strict(_TYPES, range(len(_TYPES)), return_dtype=pl.UInt8),
        entity_id=pl.col("target_id"),
        window_start=pl.col("time").dt.truncate(config.window),
        image_sha256=image_hash(),
        _devices=devices_reached(),
    )
    _, images = known_issuers_and_images(p)
    devices = flag_new(selected, "image_sha256", {"_new_image": images}, leave_window_out=False).collect()
    names = devices.select("entity_id", "account")
    index = p.device_index()
    ids, accounts = names.get_column("entity_id"), names.get_column("account")
    device, issuer = index.devices.find(ids), index.accounts.find(accounts)
    keyed = devices.drop("entity_id", "account").with_columns(
        pl.Series("_device", device), pl.Series("_device_key", index.devices.order_keys(ids, device)),
        pl.Series("_issuer", issuer), pl.Series("_account_key", index.accounts.order_keys(accounts, issuer)),
        pl.Series("_row", np.arange(devices.height)))
    # By account too (at no extra cost): a window's distinct issuers are then its runs of accounts.
    keyed = keyed.sort("_device_key", "window_start", "_account_key")
    # An issuer is new for a device unless the baseline holds the pair (nothing is new without a
    # baseline); looked up in device order. Null accounts have the only negative key.
    device, issuer = keyed.get_column("_device").to_numpy(), keyed.get_column("_issuer").to_numpy()
    new_issuer = ((keyed.get_column("_account_key").to_numpy() >= 0) & ~index.known_pairs(device, issuer)
                  if p.has_baseline else np.zeros(keyed.height, dtype=np.bool_))
    return keyed.with_columns(pl.Series("_new_issuer", new_issuer)), names


def known_issuers_and_images(p: Profiles) -> tuple[pl.LazyFrame | None, pl.LazyFrame | None]:
    """What a device's new-issuer and new-image flags look up (:func:`~detector.features.common.flag_new`):
    the baseline's (device, account) pairs and image hashes, or None without a baseline."""
    if not p.has_baseline:
        return None, None
    return (p.device_issuers.lazy().select(pl.col("device_id").alias("entity_id"), "account", _known=pl.col("events")),
            p.image_hashes.lazy().select("image_sha256", _known=pl.col("events")))


def _codes(values: tuple[str, ...], wanted: tuple[str, ...] | str) -> list[int]:
    """The Enum codes of *wanted* among *values* (the categories of an Enum column, in order)."""
    return [values.index(v) for v in ((wanted,) if isinstance(wanted, str) else wanted)]


class _Runs:
    """The windows of events sorted by device and window: each a run of rows, found by its start."""

    def __init__(self, devices: pl.DataFrame) -> None:
        entity, window = devices.get_column("_device_key"), devices.get_column("window_start")
        new_device = entity.ne_missing(entity.shift(1)).to_numpy()
        new_window = self.new_window = new_device | window.ne_missing(window.shift(1)).to_numpy()
        self.starts = np.flatnonzero(new_window)
        self.count = len(self.starts)
        # Each row's window number, and whether each window is its device's first.
        self.window_of = np.cumsum(new_window) - 1
        self.device_first = new_device[self.starts]

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.window_of, weights=values, minlength=self.count).astype(np.int64)

    def count_of(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.window_of[mask], minlength=self.count)

    def min(self, values: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(values, self.starts) if self.count else values[:0]

    def max(self, values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values, self.starts) if self.count else values[:0]


def _measures(devices: pl.DataFrame, runs: _Runs, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Each window's count of every device measure (``measure_aggs`` and the burst of ``window_measures``)."""
    action = devices.get_column("action").to_physical().to_numpy()
    category = devices.get_column("category").to_physical().to_numpy()
    outcome = devices.get_column("outcome").to_physical().to_numpy()
    control = np.isin(action, _codes(ACTIONS, CONTROL_ACTIONS))
    counts = {
        "events": np.diff(np.append(runs.starts, devices.height)),
        "commands": runs.count_of(np.isin(category, _codes(CATEGORIES, COMMAND_CATEGORIES))),
        **{a: runs.count_of(action == ACTIONS.index(a)) for a in DEVICE_COMMAND_ACTIONS},
        "config_change": runs.count_of(category == CATEGORIES.index("config_change")),
        "failures": runs.count_of(outcome == OUTCOMES.index("failure")),
        "devices": runs.sum(np.where(control, devices.get_column("_devices").to_numpy(), 0)),
    }
    # The biggest burst of control commands: a burst sub-window lies inside one window.
    burst = np.zeros(runs.count, dtype=np.int64)
    if control.any():
        per_burst = (devices.lazy().with_columns(_window=pl.Series(runs.window_of)).filter(pl.Series(control))
                     .group_by("_window", pl.col("time").dt.truncate(config.burst)).agg(_n=pl.len())
                     .group_by("_window").agg(pl.col("_n").max()).collect(engine="in-memory"))
        burst[per_burst.get_column("_window").to_numpy()] = per_burst.get_column("_n").to_numpy()
    # Distinct issuers: the first row of each account's run in a window (rows sorted by account in
    # it); an issuer is new or not for the whole run (the flag is per device and account).
    account = devices.get_column("_account_key").to_numpy()
    first_of_account = runs.new_window | (account != np.roll(account, 1))
    issuing = first_of_account & (account >= 0)  # null accounts have the only negative key
    # New image hashes are rare: counted over their few rows.
    new_images = np.zeros(runs.count, dtype=np.int64)
    per_image = (devices.lazy().with_columns(_window=pl.Series(runs.window_of)).filter("_new_image")
                 .group_by("_window").agg(_n=pl.col("image_sha256").n_unique()).collect(engine="in-memory"))
    new_images[per_image.get_column("_window").to_numpy()] = per_image.get_column("_n").to_numpy()
    return {**counts, "burst_commands": burst, "issuers": runs.count_of(issuing),
            "_iss_new": runs.count_of(issuing & devices.get_column("_new_issuer").to_numpy()), "_img_new": new_images}


def _log1p(values: np.ndarray) -> np.ndarray:
    """``log1p`` as polars computes it (the general query's values, to the last bit)."""
    return pl.Series(values).cast(pl.Float64).log1p().to_numpy()


# Counts up to this are put through log1p as a table of every count from 0.
_LOG1P_TABLE: Final = 1 << 16


def _log1p_counts(count: np.ndarray) -> np.ndarray:
    """:func:`_log1p` of non-negative integer counts."""
    if not len(count) or count.max() >= _LOG1P_TABLE:
        return _log1p(count)
    return _log1p(np.arange(count.max() + 1))[count]


def _excess(count: np.ndarray, typical: np.ndarray, source: np.ndarray, negative: bool) -> np.ndarray:
    """``max(0, log1p(count) - log1p(typical))`` per window, with each window's typical value at its
    *source* row of *typical* (nulls already read as 0: the measure never occurred); *negative*:
    whether any typical value is negative.

    Typical values are medians of positive counts, so their log1p is never negative and a count of
    0 has no excess: only the windows with a count are computed (a window has a few of the measures).
    """
    excess = np.zeros(len(count))
    at = np.flatnonzero(count) if not negative else np.arange(len(count))
    # fmax: a NaN (a corrupt typical value) gives 0, as the general query's fill_nan.
    rows = source[at]
    # log1p of each typical value once, or of those the windows read when they are fewer.
    logged = _log1p(typical)[rows] if len(rows) > len(typical) else _log1p(typical[rows])
    excess[at] = np.fmax(_log1p_counts(count[at]) - logged, 0.0)
    return excess


def _nullable_times(values: np.ndarray) -> pl.Series:
    """Microsecond stamps with ``_NONE`` for null as a UTC datetime Series."""
    return pl.Series(values).set(pl.Series(values == _NONE), None).cast(UTC_US)


_NONE: Final = np.iinfo(np.int64).min  # a null stamp, below every real one


def _stamps(series: pl.Series) -> np.ndarray:
    """A datetime Series as microseconds, null as ``_NONE``."""
    return series.dt.epoch("us").fill_null(_NONE).to_numpy()


def lean_device_windows(events: pl.LazyFrame, p: Profiles, config: FeatureConfig,
                        earlier: pl.DataFrame | None, peers: pl.DataFrame, everyone: pl.DataFrame) -> pl.LazyFrame:
    """``device_windows(events, p, config, earlier, detail=False)`` for *events* none of which lie in
    the baseline period; *peers* and *everyone* are the typical values of the median device per
    type and overall (as :func:`~detector.features.device.device_windows` derives them)."""
    devices, names = _device_events(events, p, config)
    runs = _Runs(devices)
    counts = _measures(devices, runs, config)
    starts = runs.starts

    # The slice's distinct devices and their rows in the (whole) profile tables (-1: none).
    device_of = np.cumsum(runs.device_first) - 1
    index, whole = p.device_index(), p.whole
    heads = starts[runs.device_first]
    first_device = devices.get_column("_device").to_numpy()[heads]
    activity_rows, typical_rows = index.activity.first_of(first_device), index.typical.first_of(first_device)
    rows = devices.get_column("_row").to_numpy()
    distinct = names.select(pl.col("entity_id").gather(rows[heads]))
    earlier_seen = (_stamps(distinct.join(earlier.select("entity_id", "last_seen"), on="entity_id", how="left",
                                          validate="m:1", maintain_order="left").get_column("last_seen"))
                    if earlier is not None else np.full(distinct.height, _NONE))
    activity = whole.device_activity.select("events", "active_days", "last_seen")[activity_rows[activity_rows >= 0]]
    # The slice's own typical rows, then the medians: a window's typical value is one of these rows.
    typical = whole.device_typical.select(DEVICE_MEASURES)[typical_rows[typical_rows >= 0]]
    own_typical = np.where(typical_rows >= 0, np.cumsum(typical_rows >= 0) - 1, -1)
    row = np.where(activity_rows >= 0, np.cumsum(activity_rows >= 0) - 1, activity.height)[device_of]

    def looked_up(values: np.ndarray, missing: object) -> np.ndarray:  # each window's device's value
        return np.append(values, np.array([missing], dtype=values.dtype))[row]

    baseline_events = looked_up(activity.get_column("events").to_numpy(), 0).clip(min=0)
    has_baseline = baseline_events >= config.min_baseline_events
    baseline_days = np.where(has_baseline, looked_up(activity.get_column("active_days").cast(pl.Float64).to_numpy(), 0.0),
                             0.0)

    # Every typical value a window may be compared with, one column per measure: the devices' own
    # (rows 0..n-1), each device type's median device, the median device, and 0 (activity without
    # a typical row).
    peers = peers.filter(pl.col("device_type").is_not_null())
    n, k = typical.height, peers.height
    medians = pl.concat([peers.select(DEVICE_MEASURES), everyone.select(DEVICE_MEASURES),
                         pl.DataFrame({m: [0.0] for m in DEVICE_MEASURES})], how="vertical_relaxed")

    # One measure a column of that stack, nulls read as 0.
    stack = pl.concat([frame.select(pl.col(DEVICE_MEASURES).cast(pl.Float64)) for frame in (typical, medians)]
                      ).fill_null(0.0).to_numpy(order="fortran")
    negative = np.asarray((stack < 0).any(axis=0))

    device_type = pl.Series("device_type", _TYPES, pl.String).gather(runs.min(devices.get_column("_type").to_numpy()))
    peer_row = device_type.replace_strict(peers.get_column("device_type"), range(k), default=-1,
                                          return_dtype=pl.Int64).to_numpy()
    has_data = p.has_baseline
    use_own = has_data & has_baseline
    use_peers = has_data & ~has_baseline & (peer_row >= 0)
    own_typical = own_typical[device_of]
    source = np.where(use_own, np.where(own_typical >= 0, own_typical, n + k + 1),
                      np.where(use_peers, n + peer_row, n + k))
    typical_source = np.where(use_own, 0, np.where(use_peers, 1, 2)) if has_data else np.full(runs.count, 3)

    # Dormancy: the latest earlier activity (this device's previous window, its last event in logs
    # scanned before, its baseline last event) before the window's first event.
    first_time, last_time = runs.min(_stamps(devices.get_column("time"))), runs.max(_stamps(devices.get_column("time")))
    previous_window = np.where(runs.device_first, _NONE, np.roll(last_time, 1))
    last_seen = looked_up(_stamps(activity.get_column("last_seen")), _NONE)
    before = [np.where(t < first_time, t, _NONE) for t in (last_seen, earlier_seen[device_of])]
    previous = np.maximum(previous_window, np.maximum(*before))
    # Days since then, by the general query's own expression: polars may divide by a scalar through
    # its reciprocal, and the last bit must agree.
    dormancy_days = pl.DataFrame([pl.Series("first_time", first_time).cast(UTC_US),
                                  _nullable_times(previous).alias("previous_activity")]).select(
        dormancy_days=((pl.col("first_time") - pl.col("previous_activity")).dt.total_microseconds() / _MICROS_PER_DAY)
        .fill_null(0.0).clip(lower_bound=0.0).log1p()).to_series()

    # Each feature a Series as soon as it is computed (a day's windows: 2 MB a column).
    features = {
        **{f"excess_{m}": pl.Series(_excess(counts[m], stack[:, j], source, bool(negative[j])))
           for j, m in enumerate(DEVICE_MEASURES)},
        "failure_ratio": pl.Series(counts["failures"]) / pl.Series(counts["events"]),
        "new_issuer_count": pl.Series(np.where(has_baseline, _log1p(counts["_iss_new"]), 0.0)),
        "new_image_hash_count": pl.Series(_log1p(counts["_img_new"])),
    }
    keys = devices.select(pl.col("window_start").gather(starts))
    return pl.DataFrame([
        pl.Series("entity_kind", ["device"] * runs.count, pl.String),
        names.get_column("entity_id").gather(rows[starts]),
        keys.get_column("window_start"),
        keys.get_column("window_start").dt.offset_by(config.window).alias("window_end"),
        pl.Series("event_count", counts["events"], pl.Int64),
        device_type,
        pl.Series("has_baseline", has_baseline, pl.Boolean),
        pl.Series("baseline_events", baseline_events, pl.Int64),
        pl.Series("baseline_days", baseline_days, pl.Float64),
        pl.Series("typical_source", _SOURCES, pl.String).gather(typical_source),
        pl.Series("first_time", first_time).cast(UTC_US),
        pl.Series("last_time", last_time).cast(UTC_US),
        _nullable_times(previous).alias("previous_activity"),
        # Never null or NaN (a window has an event; _excess reads a NaN as 0): nothing to fill.
        *[features[name].cast(pl.Float64).alias(name) for name in feature_columns("device") if name != "dormancy_days"],
        dormancy_days,
    ]).lazy()

