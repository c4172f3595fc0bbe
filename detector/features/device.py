"""Windows per device: what was done to a meter, collector, breaker or group in each window."""

from __future__ import annotations

from typing import Final

import polars as pl

from detector.features.catalog import DEVICE_MEASURES, feature_columns
from detector.features.common import (
    KEY,
    as_lazy,
    check_window,
    dormancy,
    entity_of,
    finish,
    flag_new,
    gated,
    in_time_order,
    log1p,
    median_entity,
    prepare,
    touches_baseline,
    value_aggs,
    window_basics,
    window_measures,
    with_baseline,
    with_typical,
)
from detector.features.config import FeatureConfig
from detector.features.lean_device import known_issuers_and_images, lean_device_windows
from detector.features.profiles import Profiles

# Context columns of a device window row, in output order (between the keys and the features).
DEVICE_CONTEXT: Final = (
    "device_type", "has_baseline", "baseline_events", "baseline_days", "typical_source",
    "first_time", "last_time", "previous_activity",
    "counts", "typical", "action_counts",
    "actions", "issuers", "new_issuers", "new_image_hashes",
)

# As ACCOUNT_DETAIL: what only findings and explanations read.
DEVICE_DETAIL: Final = (
    "evidence", "counts", "typical", "action_counts", "actions", "issuers", "new_issuers", "new_image_hashes",
)


def _peers(profiles: Profiles) -> pl.LazyFrame:
    """The typical values of the median device of each device type (meter, breaker, group...)."""
    return (profiles.device_typical.lazy()
            .join(profiles.device_activity.lazy().select("device_id", "device_type"), on="device_id", how="left")
            .group_by("device_type").agg(*[pl.col(m).median() for m in DEVICE_MEASURES]))


def device_windows(events: pl.LazyFrame, profiles: Profiles, config: FeatureConfig,
                  earlier: pl.DataFrame | None = None, *, detail: bool = True) -> pl.LazyFrame:
    """One row per device and window with events, with features against the device's baseline.

    A device is the ``target_id`` of an event whose ``target_type`` is a device kind (meter,
    collector, router, breaker, recloser, capbank, regulator) or a ``group``: a group is one entity
    keyed by its name, and its ``devices`` measure is the sum of ``target_count``. Events without an
    account (device-originated, e.g. DMS status changes) count here too. A device without a
    baseline is compared with the median device of its type.

    Parameters
    ----------
    events
        Events in the normalized schema; rows without a device target are ignored.
    profiles
        Baseline profiles; :meth:`Profiles.empty` makes every device a cold start.
    config
        Window, burst and caps.
    earlier
        Each device's last event in logs scanned before these (``entity_id, last_seen``), for dormancy.
    detail
        Whether to build the columns only findings read (:data:`DEVICE_DETAIL`). Without them, and
        with no event in the baseline period (every scan and training fold), the windows come from
        :func:`~detector.features.lean_device.lean_device_windows`, the same table at a fraction of
        the cost; otherwise from the general query.

    Returns
    -------
    pl.LazyFrame
        Columns ``entity_kind`` (``"device"``), ``entity_id``, ``window_start``, ``window_end``,
        ``event_count``, ``evidence``, then the context columns :data:`DEVICE_CONTEXT`, then
        ``feature_columns("device")`` as Float64 without nulls; sorted by entity and window.
    """
    p = profiles
    check_window(p.window, p.has_baseline, config)
    overlap = touches_baseline(as_lazy(events), p.baseline_start, p.baseline_end)
    if not detail and not overlap:
        return lean_device_windows(as_lazy(events), p, config, earlier, *_medians(p))
    return general_device_windows(events, p, config, earlier, detail=detail, overlap=overlap)


def _medians(p: Profiles) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The typical values of the median device of each type and of the median device, once per model."""
    return (p.derived("device_peers", _peers),
            p.derived("device_everyone", lambda q: median_entity(q.device_typical.lazy(), "device")))


def derive(p: Profiles) -> None:
    """Compute now what device windows derive from the profiles alone: the medians (kept by
    :meth:`Profiles.derived`) and the device index (:meth:`Profiles.device_index`)."""
    _medians(p)
    p.device_index()


def general_device_windows(events: pl.LazyFrame, p: Profiles, config: FeatureConfig, earlier: pl.DataFrame | None,
                           *, detail: bool, overlap: bool) -> pl.LazyFrame:
    """:func:`device_windows` as one polars query, for any events (*overlap*: some lie in the baseline
    period, :func:`~detector.features.common.touches_baseline`) and with or without the detail."""
    cap = config.context_cap
    issuers, images = known_issuers_and_images(p)
    prepared = prepare(as_lazy(events), entity_of("device"), config, p.baseline_start, p.baseline_end)
    flagged = flag_new(flag_new(prepared, "account", {"_new_issuer": issuers}, leave_window_out=overlap),
                       "image_sha256", {"_new_image": images}, leave_window_out=overlap)
    frame = window_measures(
        in_time_order(flagged) if detail else flagged, prepared, "device",
        *window_basics(config),
        pl.col("target_type").min().alias("device_type"),
        *value_aggs("action", "act", {}, cap),
        *value_aggs("account", "iss", {"own": "_new_issuer"}, cap),
        *value_aggs("image_sha256", "img", {"global": "_new_image"}, cap),
    ).sort(*KEY)  # the order the windows leave in, sorted while they have the fewest columns
    frame = frame.join(p.device_activity.lazy().select(
        pl.col("device_id").alias("entity_id"), _baseline_events=pl.col("events"),
        _active_days=pl.col("active_days"), _last_seen=pl.col("last_seen"),
    ), on="entity_id", how="left", validate="m:1", maintain_order="left")
    frame = with_baseline(frame, config)
    peers, everyone = _medians(p)
    frame = with_typical(frame, "device", p.device_typical.lazy().rename({"device_id": "entity_id"}), peers, everyone,
                         "device_type", p.has_baseline)
    frame = dormancy(frame, earlier)
    frame = frame.with_columns(
        actions=pl.col("_act_values"),
        issuers=pl.col("_iss_values"),
        new_issuers=pl.col("_iss_own_new_values"),
        new_image_hashes=pl.col("_img_global_new_values"),
    )
    exprs: dict[str, pl.Expr] = {
        **{f"excess_{m}": pl.col(f"excess_{m}") for m in DEVICE_MEASURES},
        "failure_ratio": pl.col("_m_failures") / pl.col("event_count"),
        "new_issuer_count": gated(log1p("_iss_own_new_count")),
        "new_image_hash_count": log1p("_img_global_new_count"),
        "dormancy_days": pl.col("_dormancy_days").log1p(),
    }
    return finish(frame, "device", list(DEVICE_CONTEXT), feature_columns("device"), exprs,
                  leave_out=() if detail else DEVICE_DETAIL)
