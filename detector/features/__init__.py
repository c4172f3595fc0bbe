"""Feature stage: events → one row per entity and window, with features relative to a baseline.

Everything here is a polars LazyFrame → LazyFrame function (no Python loop over rows), so the
caller decides when and how to collect, streaming included::

    profiles = build_profiles(training_events, config)      # Profiles, stored with the model
    frames = build_features(events, profiles, config)        # {"account": LazyFrame, "device": ...}
    X = frames["account"].select(feature_columns("account")).collect().to_numpy()

Entities
--------
*account*: the actor of an event (rows with a non-null ``account``). *device*: the ``target_id`` of
an event whose ``target_type`` is a device kind or a ``group`` (a group is one entity, keyed by its
name). An event with both counts in both: a disconnect is in its operator's window and its meter's.

Windows
-------
Fixed, epoch-aligned, half-open windows of ``config.window`` (default 1 h) with burst sub-windows of
``config.burst`` (default 5 min). Only windows with events become rows.

Features
--------
Volumes enter the model as ``excess_<measure>``: how far a window's count exceeds the entity's own
typical count (see :mod:`detector.features.catalog`), so that a service account's routine volume is
as ordinary as an operator's. Novelty (``new_*``), hour and weekday rarity and dormancy compare with
the entity's own history; ``feature_columns(kind)`` lists them and ``FEATURE_DESCRIPTIONS`` labels them.

Cold start
----------
``has_baseline`` is False when the entity has fewer than ``config.min_baseline_events`` baseline
events outside the window. Features relative to its own history (new IP/host/action/issuer, hour
and weekday rarity) are then 0 (neutral), and scoring should say "no baseline" rather than
"normal". Its volumes are compared with its peers instead (``typical_source`` says ``"peers"``: the
median account of the same inferred role, the median device of the same type, or ``"all"``), and
global novelty (a source IP no account used, a firmware image never seen) still applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from detector.features import account, device
from detector.features.account import ACCOUNT_CONTEXT, ACCOUNT_DETAIL, account_windows
from detector.features.catalog import (
    ACCOUNT_MEASURES,
    CONTROL_ACTIONS,
    DEVICE_MEASURES,
    ENTITY_KINDS,
    FEATURE_BASELINE,
    FEATURE_DESCRIPTIONS,
    FEATURE_MEASURE,
    FEATURES,
    LOG1P_FEATURES,
    MEASURE_LABELS,
    MEASURES,
    TAIL_FEATURES,
    EntityKind,
    Feature,
    feature_columns,
    measures,
)
from detector.features.common import DEVICE_KINDS, DEVICE_TARGET_TYPES, as_lazy, entity_of
from detector.features.config import FeatureConfig, parse_duration
from detector.features.device import DEVICE_CONTEXT, DEVICE_DETAIL, device_windows
from detector.features.profiles import PROFILE_KEYS, PROFILE_SCHEMAS, Profiles, build_profiles

__all__ = [
    "ACCOUNT_CONTEXT",
    "ACCOUNT_MEASURES",
    "CONTROL_ACTIONS",
    "DETAIL_COLUMNS",
    "DEVICE_CONTEXT",
    "DEVICE_KINDS",
    "DEVICE_MEASURES",
    "DEVICE_TARGET_TYPES",
    "ENTITY_KINDS",
    "FEATURES",
    "FEATURE_BASELINE",
    "FEATURE_DESCRIPTIONS",
    "FEATURE_MEASURE",
    "LOG1P_FEATURES",
    "MEASURES",
    "MEASURE_LABELS",
    "PROFILE_KEYS",
    "PROFILE_SCHEMAS",
    "TAIL_FEATURES",
    "EntityKind",
    "Feature",
    "FeatureConfig",
    "Profiles",
    "account_windows",
    "build_features",
    "build_profiles",
    "device_windows",
    "entity_of",
    "feature_columns",
    "measures",
    "parse_duration",
    "prepare",
]

# Per entity kind, the window columns only findings and explanations read (see ACCOUNT_DETAIL).
DETAIL_COLUMNS: dict[EntityKind, tuple[str, ...]] = {"account": ACCOUNT_DETAIL, "device": DEVICE_DETAIL}

_BUILDERS = {"account": account_windows, "device": device_windows}


def build_features(events: pl.LazyFrame | pl.DataFrame, profiles: Profiles, config: FeatureConfig,
                   earlier: Mapping[str, pl.DataFrame] | None = None, *, detail: bool = True,
                   kinds: Sequence[EntityKind] = ENTITY_KINDS) -> dict[str, pl.LazyFrame]:
    """Build the window tables of each entity kind in *kinds* (every kind by default).

    Parameters
    ----------
    events
        Events in the normalized schema.
    profiles
        Baseline profiles from :func:`build_profiles` (or :meth:`Profiles.empty`).
    config
        Feature configuration.
    earlier
        Per entity kind, each entity's last event in logs scanned before *events*
        (``entity_id, last_seen``): a scan carries it from one slice to the next, for dormancy.
    detail
        Whether to build the columns only findings read (:data:`DETAIL_COLUMNS`); scoring leaves
        them out, which spares sorting the events and aggregating value lists.
    kinds
        The entity kinds to build. Planning a kind is not free (it reads the events' times once to
        see whether they touch the baseline), so a caller that needs one kind asks for that one.

    Returns
    -------
    dict[str, pl.LazyFrame]
        ``{"account": account_windows(...), "device": device_windows(...)}`` for the kinds asked;
        nothing is collected.
    """
    lf = as_lazy(events)
    return {kind: _BUILDERS[kind](lf, profiles, config, (earlier or {}).get(kind), detail=detail) for kind in kinds}


def prepare(profiles: Profiles) -> Profiles:
    """*profiles* with what windows of every kind derive from them alone computed now (peer medians,
    everyone's habits, the device index) instead of in the first windows built: a scan prepares the
    model's profiles while it parses its logs. Returns *profiles*."""
    account.derive(profiles)
    device.derive(profiles)
    return profiles
