"""Windows per account: what an account did in each window, against its own baseline (or, for an
account without one, against its peers)."""

from __future__ import annotations

import functools
from typing import Final

import polars as pl

from detector.features.catalog import ACCOUNT_MEASURES, feature_columns
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
    prefixed,
    prepare,
    rarity,
    src_network,
    touches_baseline,
    units_present,
    value_aggs,
    window_basics,
    window_measures,
    with_baseline,
    with_typical,
)
from detector.features.config import FeatureConfig
from detector.features.controls import weakened_change
from detector.features.profiles import Profiles, habit_histogram

UNKNOWN_ROLE: Final = "unknown"

# Context columns of an account window row, in output order (between the keys and the features).
ACCOUNT_CONTEXT: Final = (
    "has_baseline", "baseline_events", "baseline_days", "role", "typical_source",
    "first_time", "last_time", "previous_activity",
    "counts", "typical", "action_counts",
    "actions", "src_ips", "src_hosts",
    "new_src_ips", "new_src_nets", "new_src_hosts", "new_global_src_ips", "new_actions", "new_image_hashes",
    "new_settings", "weakened_settings",
    "rarest_hour", "hour_share", "rarest_weekday", "weekday_share",
)

# The columns only findings and explanations read (value lists, count structs, cited lines): most of
# a window row's size and about 30% of the time to build it. Scoring builds windows without them
# (polars then skips their aggregations) and adds them to the windows it flags only.
ACCOUNT_DETAIL: Final = (
    "evidence", "counts", "typical", "action_counts", "actions", "src_ips", "src_hosts", "new_src_ips",
    "new_src_nets", "new_src_hosts", "new_global_src_ips", "new_actions", "new_image_hashes", "new_settings",
    "weakened_settings",
)


def _peers(profiles: Profiles) -> pl.LazyFrame:
    """The typical values of the median account of each role."""
    return (profiles.account_typical.lazy()
            .join(profiles.account_activity.lazy().select("account", "role"), on="account", how="left")
            .group_by("role").agg(*[pl.col(m).median() for m in ACCOUNT_MEASURES]))


def _everyone(profiles: Profiles, unit: str) -> pl.LazyFrame:
    """Everyone's share of baseline events per hour (weekday): the habits a short history is blended with.

    Events only, not the hours people were logged on: the blend stands for the events an entity's
    short history lacks (RARITY_PRIOR_EVENTS of them), and a few night workers' sessions must not
    make 03:00 an ordinary hour for everyone else. An entity's own logged-on hours count in its own
    habits (:func:`~detector.features.profiles.habit_histogram`).
    """
    return (profiles.account_hours.lazy().group_by(unit).agg(_n=pl.col("events").sum()).sort(unit)
            .with_columns(_p=pl.col("_n") / pl.col("_n").sum()).select(unit, "_p")
            # Summed once here, not per window: a float sum's order would make windows differ by an ulp.
            .with_columns(_p_total=pl.col("_p").sum()))


def _histogram(profiles: Profiles, unit: str) -> pl.LazyFrame:
    """Each account's activity per hour (weekday), logged-on hours included: ``entity_id, <unit>, _b``."""
    # Summed as sorted lists: logged-on hours make the activity fractional, a float sum's order changes
    # its last bit, and polars drops a sort() right before a sum() in an aggregation.
    return (habit_histogram(profiles).rename({"account": "entity_id"})
            .group_by("entity_id", unit).agg(_b=pl.col("activity").sort()).with_columns(pl.col("_b").list.sum()))


def _habits(p: Profiles, unit: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each account's histogram and everyone's prior per hour (weekday), once per model."""
    return (p.derived(f"account_{unit}_histogram", functools.partial(_histogram, unit=unit)),
            p.derived(f"account_{unit}_prior", functools.partial(_everyone, unit=unit)))


def _medians(p: Profiles) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The typical values of the median account of each role and of the median account, once per model."""
    return (p.derived("account_peers", _peers),
            p.derived("account_everyone", lambda q: median_entity(q.account_typical.lazy(), "account")))


def derive(p: Profiles) -> None:
    """Compute now what account windows derive from the profiles alone (kept by :meth:`Profiles.derived`)."""
    for unit in ("hour", "weekday"):
        _habits(p, unit)
    _medians(p)


def account_windows(events: pl.LazyFrame, profiles: Profiles, config: FeatureConfig,
                   earlier: pl.DataFrame | None = None, *, detail: bool = True) -> pl.LazyFrame:
    """One row per account and window with events, with features against the account's baseline.

    Parameters
    ----------
    events
        Events in the normalized schema; rows without an ``account`` are ignored.
    profiles
        Baseline profiles (:func:`~detector.features.build_profiles`); :meth:`Profiles.empty` makes
        every account a cold start.
    config
        Window, burst and caps.
    earlier
        Each account's last event in logs scanned before these (``entity_id, last_seen``), for dormancy.
    detail
        Whether to build the columns only findings read (:data:`ACCOUNT_DETAIL`). Without them the events
        need no sorting: every other column is a count, a sum or a minimum.

    Returns
    -------
    pl.LazyFrame
        Columns ``entity_kind`` (``"account"``), ``entity_id``, ``window_start``, ``window_end``,
        ``event_count``, ``evidence``, then the context columns :data:`ACCOUNT_CONTEXT`, then
        ``feature_columns("account")`` as Float64 without nulls; sorted by entity and window.
    """
    p = profiles
    check_window(p.window, p.has_baseline, config)
    cap = config.context_cap

    def own(table: pl.DataFrame, value: str) -> pl.LazyFrame | None:
        if not p.has_baseline:
            return None
        return table.lazy().select(pl.col("account").alias("entity_id"), pl.col(value), _known=pl.col("events"))

    global_ips = (p.account_ips.lazy().group_by("src_ip").agg(_known=pl.col("events").sum())
                  if p.has_baseline else None)
    images = p.image_hashes.lazy().select("image_sha256", _known=pl.col("events")) if p.has_baseline else None
    # The account's known networks are those of its known addresses.
    networks = (p.account_ips.lazy().select(pl.col("account").alias("entity_id"),
                                            _src_net=src_network(pl.col("src_ip")), _known=pl.col("events"))
                if p.has_baseline else None)
    settings = (p.config_targets.lazy().select(pl.col("target_id").alias("_config_target"), _known=pl.col("events"))
                if p.has_baseline else None)

    prepared = prepare(as_lazy(events), entity_of("account"), config, p.baseline_start, p.baseline_end)
    overlap = touches_baseline(as_lazy(events), p.baseline_start, p.baseline_end)
    # The network of each distinct address, not of each event (string work on every event was a
    # sixth of building a day's account windows).
    networks_of = prepared.select("src_ip").unique().with_columns(_src_net=src_network(pl.col("src_ip")))
    flagged = prepared.join(networks_of, on="src_ip", how="left", maintain_order="left")
    for value, known in (
        ("src_ip", {"_new_ip": own(p.account_ips, "src_ip"), "_new_global_ip": global_ips}),
        ("_src_net", {"_new_net": networks}),
        ("src_host", {"_new_host": own(p.account_hosts, "src_host")}),
        ("action", {"_new_action": own(p.account_actions, "action")}),
        ("image_sha256", {"_new_image": images}),
        ("_config_target", {"_new_setting": settings}),
    ):
        flagged = flag_new(flagged, value, known, leave_window_out=overlap)
    frame = window_measures(
        in_time_order(flagged) if detail else flagged, prepared, "account",
        *window_basics(config),
        *value_aggs("src_ip", "ip", {"own": "_new_ip", "global": "_new_global_ip"}, cap),
        *value_aggs("_src_net", "net", {"own": "_new_net"}, cap),
        *value_aggs("src_host", "host", {"own": "_new_host"}, cap),
        *value_aggs("action", "act", {"own": "_new_action"}, cap),
        *value_aggs("image_sha256", "img", {"global": "_new_image"}, cap),
        *value_aggs("_config_target", "cfg", {"global": "_new_setting"}, cap),
    ).sort(*KEY)  # the order the windows leave in, sorted while they have the fewest columns
    # Weakened controls are read from configuration changes only (their pattern tests on every
    # event's target were another sixth), joined per window.
    changes = prepared.filter(pl.col("category") == "config_change").with_columns(_weakened=weakened_change())
    weak = (in_time_order(changes) if detail else changes).group_by(*KEY).agg(*value_aggs("_weakened", "weak", {}, cap))
    frame = frame.join(weak, on=list(KEY), how="left", maintain_order="left").with_columns(
        pl.col("_weak_distinct").fill_null(0), pl.col("_weak_values").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    present = units_present(prepared)
    for unit, prefix in (("hour", "hr"), ("weekday", "wd")):
        histogram, prior = (table.lazy() for table in _habits(p, unit))
        frame = frame.join(prefixed(rarity(present, unit, histogram, prior, leave_window_out=overlap), prefix),
                           on=list(KEY), how="left", maintain_order="left")
    frame = frame.join(p.account_activity.lazy().select(
        pl.col("account").alias("entity_id"), _baseline_events=pl.col("events"), _active_days=pl.col("active_days"),
        _last_seen=pl.col("last_seen"), role=pl.col("role"),
    ), on="entity_id", how="left", validate="m:1", maintain_order="left").with_columns(
        role=pl.col("role").fill_null(UNKNOWN_ROLE))
    frame = with_baseline(frame, config)
    peers, everyone = _medians(p)
    frame = with_typical(frame, "account", p.account_typical.lazy().rename({"account": "entity_id"}), peers, everyone,
                         "role", p.has_baseline)
    frame = dormancy(frame, earlier)
    frame = frame.with_columns(
        actions=pl.col("_act_values"), src_ips=pl.col("_ip_values"), src_hosts=pl.col("_host_values"),
        new_src_ips=pl.col("_ip_own_new_values"), new_src_nets=pl.col("_net_own_new_values"),
        new_src_hosts=pl.col("_host_own_new_values"),
        new_global_src_ips=pl.col("_ip_global_new_values"), new_actions=pl.col("_act_own_new_values"),
        new_image_hashes=pl.col("_img_global_new_values"), new_settings=pl.col("_cfg_global_new_values"),
        weakened_settings=pl.col("_weak_values"),
        rarest_hour=pl.col("_hr_rarest"), hour_share=pl.col("_hr_share"),
        rarest_weekday=pl.col("_wd_rarest"), weekday_share=pl.col("_wd_share"),
    )
    exprs: dict[str, pl.Expr] = {
        **{f"excess_{m}": pl.col(f"excess_{m}") for m in ACCOUNT_MEASURES},
        "failure_ratio": pl.col("_m_failures") / pl.col("event_count"),
        "new_src_ip_events": gated(log1p("_ip_own_new_events")),
        "new_src_net_events": gated(log1p("_net_own_new_events")),
        "new_src_host_events": gated(log1p("_host_own_new_events")),
        # Global novelty needs no history of this account, so it also speaks for new accounts.
        "new_global_src_ip_events": log1p("_ip_global_new_events"),
        "new_action_count": gated(log1p("_act_own_new_count")),
        "new_image_hash_count": log1p("_img_global_new_count"),
        "new_setting_count": log1p("_cfg_global_new_count"),
        # Read from the change itself, so it needs no baseline (see detector.features.controls).
        "weakened_setting_count": log1p("_weak_distinct"),
        "hour_rarity": gated(pl.col("_hr_rarity")),
        "weekday_rarity": gated(pl.col("_wd_rarity")),
        "dormancy_days": pl.col("_dormancy_days").log1p(),
    }
    return finish(frame, "account", list(ACCOUNT_CONTEXT), feature_columns("account"), exprs,
                  leave_out=() if detail else ACCOUNT_DETAIL)
