"""Pieces the account and device window builders share: which rows are devices, the per-event
columns every window computation starts from, novelty flags, rarity and dormancy.

Shape of the computation
------------------------
Each builder makes one pass: per-event columns and novelty flags are added to the events (looked
up with ``is_in`` on the profile tables' known keys, or, when events lie in the baseline, left joins
that subtract each window's own uses), the events are sorted by time once when the detail columns
are built, and a single group-by per ``(entity_id, window_start)`` computes counts, lists and
flags. Its rows are sorted by entity and window right away, while they have the fewest columns,
and every join after it keeps that order (:func:`dormancy` reads the previous row). Only bursts
and hour/weekday rarity need small numeric group-bys of their own, joined back per window; after
the baseline, rarity is computed once per entity. Building many sub-aggregations with list
columns and joining them back was several times slower on a million events with 800,000 device
windows, and so were window functions over all events for bursts.

"In the baseline" semantics
---------------------------
A window's events may themselves lie inside the baseline period: that is how a model is trained
(profiles and training windows come from the same events). Comparing a window with a profile that
already contains it would make every training window look perfectly familiar, and the forest would
then treat any novelty at scan time as extreme. So every comparison is *leave-window-out*: an event
whose time lies within ``[baseline_start, baseline_end]`` is assumed to be part of the baseline, and
its own contribution is subtracted before the comparison. A source IP is "new" when the baseline
holds no use of it for this account outside this window; hour shares are computed from the
baseline minus this window. For windows after the baseline (scanning) nothing is subtracted, and
the features read exactly as "never seen in the baseline".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import polars as pl

from detector.errors import ConfigError
from detector.features.catalog import CONTROL_ACTIONS, EntityKind, measures
from detector.features.config import FeatureConfig, parse_duration
from detector.schema import ACTIONS, CATEGORIES, UTC_US

DEVICE_KINDS: Final = ("meter", "collector", "router", "breaker", "recloser", "capbank", "regulator")
# A group (a route, a feeder, "ALL_NORTH") is treated as one device entity: commands go to it as a
# unit and the events never list its members, so it gets its own windows keyed by the group name,
# with the ``devices`` measure (the sum of target_count) telling how far its commands went.
DEVICE_TARGET_TYPES: Final = (*DEVICE_KINDS, "group")

# Categories of events that send something to field devices.
COMMAND_CATEGORIES: Final = ("device_command", "firmware", "key_mgmt")

_MICROS_PER_DAY: Final = 86_400_000_000

# Every window row is keyed by these two columns until the final select.
KEY: Final = ("entity_id", "window_start")


def check_window(profile_window: str, has_baseline: bool, config: FeatureConfig) -> None:
    """Refuse to compare windows of one length with typical counts measured over another."""
    if has_baseline and parse_duration(profile_window) != config.window_length:
        raise ConfigError(f"the baseline profiles were built with {profile_window!r} windows but the features "
                          f"are asked for {config.window!r} windows; use window = {profile_window!r} or retrain")


def as_lazy(events: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Return *events* as a LazyFrame (a DataFrame is wrapped, a LazyFrame passed through)."""
    return events.lazy() if isinstance(events, pl.DataFrame) else events


def is_device_target() -> pl.Expr:
    """Rows whose target is a device or group with an id: they belong to that device's windows."""
    return pl.col("target_type").is_in(DEVICE_TARGET_TYPES) & pl.col("target_id").is_not_null()


# Actions that matter even when the log names no account (Windows writes some 104s, 7045s and 4719s
# without one): the machine that logged them stands in, as ``HOST$``, the name of its own account.
ACTORLESS: Final = ("log_cleared", "audit_policy_changed", "service_installed", "service_config_changed",
                    "task_created", "task_modified")


def entity_of(kind: EntityKind) -> pl.Expr:
    """Each event's entity of *kind*: who acted (the interactive user an event logged by a machine was
    attributed to, else its ``account``; see :mod:`detector.attribution`; for an :data:`ACTORLESS`
    action with no account at all, the host's machine account), or its device target's id; null if
    it has none."""
    if kind == "account":
        return pl.coalesce("attributed_account", "account",
                           pl.when(pl.col("action").is_in(ACTORLESS) & pl.col("host").is_not_null())
                           .then(pl.col("host").str.to_lowercase() + pl.lit("$")))
    return pl.when(is_device_target()).then(pl.col("target_id"))


def devices_reached() -> pl.Expr:
    """Per-row devices a command reached: target_count for device and group targets, else 0.

    A missing count on a device target means one device; negative counts (corrupt input) count as 0.
    """
    return (pl.when(is_device_target())
            .then(pl.col("target_count").cast(pl.Int64).fill_null(1).clip(lower_bound=0))
            .otherwise(0))


def image_hash() -> pl.Expr:
    """An event's image SHA-256 in one spelling (trimmed, lower case), as profiles and windows compare it."""
    return pl.col("image_sha256").str.strip_chars().str.to_lowercase()


def is_command() -> pl.Expr:
    # Compared as the schema's Enum (no string per event); a String column compares the same.
    return pl.col("category").is_in(COMMAND_CATEGORIES)


def in_baseline(baseline_start: object, baseline_end: object) -> pl.Expr:
    """Whether an event's time lies within the baseline period (see the module docstring)."""
    if baseline_start is None or baseline_end is None:
        return pl.lit(False)
    return pl.col("time").is_between(pl.lit(baseline_start, UTC_US), pl.lit(baseline_end, UTC_US), closed="both")


_NEEDED: Final = ("time", "account", "attributed_account", "host", "src_ip", "src_host", "category", "action", "outcome", "target_type",
                  "target_id", "target_count", "old_value", "new_value", "image_sha256", "raw_file", "raw_line")


def _local(config: FeatureConfig) -> pl.Expr:
    """Event times in the utility's own zone (``config.timezone``), for hour and weekday habits."""
    time = pl.col("time")
    return time if config.timezone == "UTC" else time.dt.convert_time_zone(config.timezone)


def prepare(events: pl.LazyFrame, entity: pl.Expr, config: FeatureConfig, baseline_start: object,
            baseline_end: object) -> pl.LazyFrame:
    """Add the per-event columns window computations need; *entity* becomes ``entity_id``.

    Rows where *entity* is null are dropped: they belong to the other entity kind.
    """
    return (
        events.select(_NEEDED)
        .with_columns(entity_id=entity)
        .filter(pl.col("entity_id").is_not_null())
        .with_columns(
            window_start=pl.col("time").dt.truncate(config.window),
            burst_start=pl.col("time").dt.truncate(config.burst),
            hour=_local(config).dt.hour().cast(pl.Int8),
            weekday=_local(config).dt.weekday().cast(pl.Int8),
            action=pl.col("action").cast(pl.String),
            image_sha256=image_hash(),
            _in_base=in_baseline(baseline_start, baseline_end),
            # concat_str, not pl.format: polars 2.1's streaming engine panics on pl.format after a
            # filter over the many-chunk frames the parsers return (index out of bounds in a string view).
            _evidence=pl.concat_str([pl.col("raw_file"), pl.lit(":"), pl.col("raw_line").cast(pl.String)]),
            _devices=devices_reached(),
            _control=pl.col("action").is_in(CONTROL_ACTIONS),  # the events' Enum, before the cast above
            _config_target=pl.when(pl.col("category") == "config_change").then(pl.col("target_id")),
        )
        .with_columns(_control_devices=pl.when("_control").then(pl.col("_devices")).otherwise(0))
    )


def src_network(ip: pl.Expr) -> pl.Expr:
    """The network of a textual address: its /24 for IPv4 (``"10.20.3.0/24"``), its /64 for IPv6
    (``"2001:db8:44a:28::/64"``, leading zeros dropped). Null stays null.

    A new address inside a known network is routine (DHCP, a VPN pool handing out a fresh address
    each session); a network never seen for an account is a new place. The IPv6 prefix is read by
    expanding ``::`` (the parsers validate addresses but keep their spelling).
    """
    parts = ip.str.split("::")
    nonempty = pl.element().filter(pl.element() != "")
    left = parts.list.first().str.split(":").list.eval(nonempty)
    right = parts.list.get(1, null_on_oob=True).fill_null("").str.split(":").list.eval(nonempty)
    # An embedded dotted IPv4 tail ("::ffff:1.2.3.4") fills two groups.
    missing = (8 - left.list.len() - right.list.len() - ip.str.contains(r"\.").cast(pl.Int64)).clip(lower_bound=0)
    prefix = (pl.concat_list(left, pl.lit("0").repeat_by(missing), right).list.head(4)
              .list.eval(pl.element().str.strip_chars_start("0").replace("", "0")).list.join(":"))
    return (pl.when(ip.str.contains(":")).then(pl.concat_str([prefix, pl.lit("::/64")]))
            .otherwise(pl.concat_str([ip.str.replace(r"\.\d+$", ""), pl.lit(".0/24")])))


def in_time_order(flagged: pl.LazyFrame) -> pl.LazyFrame:
    """Sort events by time, then file and line (for determinism).

    One sort here instead of a sort per window: polars keeps the row order inside each group, so
    evidence, value lists and first appearances come out in time order.
    """
    return flagged.sort("time", "raw_file", "raw_line")


def prefixed(frame: pl.LazyFrame, prefix: str) -> pl.LazyFrame:
    """Rename a sub-aggregation's private columns ``_x`` to ``_<prefix>_x`` so several can be joined."""
    return frame.rename(lambda c: c if c in KEY else f"_{prefix}{c}")


def window_basics(config: FeatureConfig) -> list[pl.Expr]:
    """Aggregations every window row has besides its measures: time span, evidence, action counts."""
    return [
        pl.len().cast(pl.Int64).alias("event_count"),
        pl.col("time").min().alias("first_time"),
        pl.col("time").max().alias("last_time"),
        pl.col("_evidence").head(config.evidence_cap).alias("evidence"),
        pl.col("_in_base").sum().cast(pl.Int64).alias("_n_in"),
        # Every action's count, for explanations ("12 remote_disconnect").
        pl.struct(*[(pl.col("action") == a).sum().cast(pl.Int64).alias(a) for a in ACTIONS]).alias("action_counts"),
    ]


def measure_aggs(kind: EntityKind) -> list[pl.Expr]:
    """The window aggregations of the measures of *kind* except the burst (see :func:`window_measures`),
    as Int64 columns ``_m_<measure>``. Expects events from :func:`prepare`."""
    category, action = pl.col("category"), pl.col("action")
    exprs: dict[str, pl.Expr] = {
        "events": pl.len(),
        **{c: (category == c).sum() for c in CATEGORIES},
        **{a: (action == a).sum() for a in ACTIONS},
        "privilege_grant": action.is_in(["role_granted", "group_member_added"]).sum(),
        "commands": is_command().sum(),
        "failures": (pl.col("outcome") == "failure").sum(),
        "targets": pl.col("target_id").drop_nulls().n_unique(),
        "devices": pl.col("_control_devices").sum(),
        "src_ips": pl.col("src_ip").drop_nulls().n_unique(),
        "src_hosts": pl.col("src_host").drop_nulls().n_unique(),
        "issuers": pl.col("account").drop_nulls().n_unique(),
    }
    return [exprs[m].fill_null(0).cast(pl.Int64).alias(f"_m_{m}") for m in measures(kind) if m != "burst_commands"]


def window_measures(events: pl.LazyFrame, prepared: pl.LazyFrame, kind: EntityKind,
                    *aggs: pl.Expr) -> pl.LazyFrame:
    """Group *events* by entity and window into *aggs* plus every measure of *kind*.

    The burst measure comes from *prepared* (the same events, any order): control commands of the
    entity per burst sub-window, the window keeping its biggest.
    Only control commands count (:data:`~detector.features.catalog.CONTROL_ACTIONS`): a service
    account's thousands of reads are not a burst in the sense that matters. A separate small
    group-by of the control commands only is much cheaper than a window function over all events.
    """
    per_burst = (
        prepared.filter("_control")
        .group_by(*KEY, "burst_start")  # a burst lies inside one window: burst divides window
        .agg(_n=pl.len())
        .group_by(*KEY)
        .agg(_m_burst_commands=pl.col("_n").max().cast(pl.Int64))
    )
    return (events.group_by(*KEY).agg(*aggs, *measure_aggs(kind))
            .join(per_burst, on=list(KEY), how="left")
            .with_columns(pl.col("_m_burst_commands").fill_null(0)))


def typical_aggs(kind: EntityKind) -> list[pl.Expr]:
    """Per entity, over its windows from :func:`window_measures`: the median of each measure over the
    windows where it is non-zero (null if it never occurred), named by the measure."""
    return [pl.col(f"_m_{m}").filter(pl.col(f"_m_{m}") > 0).median().cast(pl.Float64).alias(m)
            for m in measures(kind)]


def median_entity(typical: pl.LazyFrame, kind: EntityKind) -> pl.LazyFrame:
    """The typical values of the median entity: one row, one column per measure of *kind*."""
    return typical.select(*[pl.col(m).median().cast(pl.Float64) for m in measures(kind)])


def with_typical(frame: pl.LazyFrame, kind: EntityKind, own: pl.LazyFrame, peers: pl.DataFrame,
                 everyone: pl.DataFrame, group: str, has_data: bool) -> pl.LazyFrame:
    """Add the ``typical`` and ``counts`` structs, ``typical_source`` and the ``excess_<m>`` features.

    Parameters
    ----------
    frame
        Window rows with ``_m_<measure>`` counts, ``has_baseline`` and the peer-group column *group*.
    kind
        Entity kind (selects the measures).
    own
        The entities' own typical values: ``entity_id`` and one column per measure.
    peers
        Typical values of the median entity per peer group: *group* and one column per measure.
        A group missing from it falls back to *everyone*.
    everyone
        The typical values of the median entity over all groups (:func:`median_entity`).
    group
        Column naming the peer group (``role`` for accounts, ``device_type`` for devices).
    has_data
        Whether the profiles hold any baseline at all (else ``typical_source`` is ``"none"``).
    """
    names = measures(kind)

    def logged(table: pl.LazyFrame, prefix: str) -> pl.LazyFrame:
        # Each typical value, and its log1p taken here, once per entity (or group), rather than once
        # per window; null means the measure never occurred in that baseline: its typical count is 0.
        return table.with_columns(
            **{f"_{prefix}_{m}": pl.col(m) for m in names},
            **{f"_l{prefix}_{m}": pl.col(m).cast(pl.Float64).fill_null(0.0).log1p() for m in names},
        ).drop(names)

    # For windows whose peer group has none: one row, taken as literals rather than joined onto every window.
    median = everyone.row(0, named=True)
    log_median = everyone.select(pl.col(m).cast(pl.Float64).fill_null(0.0).log1p() for m in names).row(0, named=True)
    frame = (
        frame.join(logged(own, "own"), on="entity_id", how="left", validate="m:1", maintain_order="left")
        .join(logged(peers.lazy(), "peer").with_columns(_peer_found=pl.lit(True)),
              on=group, how="left", validate="m:1", maintain_order="left")
    )
    use_own = pl.lit(has_data) & pl.col("has_baseline")
    use_peers = pl.lit(has_data) & ~pl.col("has_baseline") & pl.col("_peer_found").fill_null(False)

    def chosen(prefix: str, fallback: dict[str, Any], m: str) -> pl.Expr:
        return (pl.when("_use_own").then(pl.col(f"_{prefix}own_{m}")).when("_use_peers")
                .then(pl.col(f"_{prefix}peer_{m}")).otherwise(pl.lit(fallback[m], pl.Float64)).fill_null(0.0))

    frame = frame.with_columns(_use_own=use_own, _use_peers=use_peers).with_columns(
        typical_source=pl.when(~pl.lit(has_data)).then(pl.lit("none")).when("_use_own").then(pl.lit("own"))
        .when("_use_peers").then(pl.lit("peers")).otherwise(pl.lit("all")),
    )
    return frame.with_columns(
        typical=pl.struct(*[chosen("", median, m).alias(m) for m in names]),
        counts=pl.struct(*[pl.col(f"_m_{m}").alias(m) for m in names]),
        # log_ratio(count, typical), with the typical value's log1p chosen rather than computed.
        **{f"excess_{m}": (pl.col(f"_m_{m}").cast(pl.Float64).log1p() - chosen("l", log_median, m)).clip(lower_bound=0.0)
           for m in names},
    )


def touches_baseline(events: pl.LazyFrame, baseline_start: object, baseline_end: object) -> bool:
    """Whether any of *events* lies in the baseline period (training windows do; scanned windows
    after the baseline do not, and then leave-window-out has nothing to subtract)."""
    if baseline_start is None or baseline_end is None:
        return False
    return bool(events.select(in_baseline(baseline_start, baseline_end).any()).collect().item())


def flag_new(events: pl.LazyFrame, value: str, known: Mapping[str, pl.LazyFrame | None], *,
             leave_window_out: bool) -> pl.LazyFrame:
    """Add Boolean flag columns: the event's *value* is missing from a baseline table.

    Parameters
    ----------
    events
        Output of :func:`prepare`.
    value
        The column compared with the baseline (``src_ip``, ``action``, an issuing ``account``...).
    known
        Flag column name → baseline use counts, columns ``[entity_id,] <value>, _known``: with an
        ``entity_id`` column the comparison is per entity, without one it is global. ``None`` means
        there is no baseline at all, and nothing is flagged new (cold start is reported
        separately). Null values of *value* are never new.
    leave_window_out
        Whether some events may lie in the baseline (:func:`touches_baseline`), whose own uses are
        then subtracted, each event joined to the table. Without any, the per-window sums are
        skipped (over all of a day's events they were most of the cost of building its windows)
        and the table's known keys are looked up with ``is_in`` (:func:`_unknown`).
    """
    tables = {flag: table for flag, table in known.items() if table is not None}
    events = events.with_columns(*[pl.lit(False).alias(flag) for flag, table in known.items() if table is None])
    if not tables:
        return events
    if not leave_window_out:
        return events.with_columns(**_unknown(value, tables))
    # Leave-window-out: the baseline's uses of this value outside this window.
    events = events.with_columns(_in_window=pl.col("_in_base").sum().over(*KEY, value))
    for flag, table in tables.items():
        on = [c for c in ("entity_id", value) if c in table.collect_schema().names()]
        # Summing per key costs little (profile tables are small) and guarantees that the join
        # cannot multiply events, whatever table it is given.
        table = table.group_by(on).agg(pl.col("_known").sum())
        events = (events.join(table, on=on, how="left")
                  .with_columns((pl.col(value).is_not_null()
                                 & ((pl.col("_known").fill_null(0) - pl.col("_in_window")) <= 0)).alias(flag))
                  .drop("_known"))
    return events.drop("_in_window")


def _unknown(value: str, tables: Mapping[str, pl.LazyFrame]) -> dict[str, pl.Expr]:
    """Per flag, whether each event's key is missing from the keys its table knows a use of.

    With nothing to leave out, an event's value is new exactly when no row of its key has a use
    (counts are never negative, so no sum is needed). The known keys are collected here, and
    looked up with ``is_in``: joining every event to the table cost three times as much, mostly
    in carrying all the events' columns through the join.
    """
    def key(table: pl.LazyFrame) -> pl.Expr:  # per entity (with an entity_id column) or global
        return (pl.struct("entity_id", value) if "entity_id" in table.collect_schema().names()
                else pl.col(value))

    keys = {flag: key(table) for flag, table in tables.items()}
    known = pl.collect_all([table.filter(pl.col("_known") > 0).select(keys[flag]) for flag, table in tables.items()],
                           engine="in-memory")
    return {flag: pl.col(value).is_not_null() & ~keys[flag].is_in(seen.to_series().implode())
            for flag, seen in zip(tables, known, strict=True)}


def value_aggs(value: str, prefix: str, flags: Mapping[str, str], cap: int) -> list[pl.Expr]:
    """Aggregations over the distinct values of column *value* in a window (rows in time order).

    Produces ``_<prefix>_distinct`` and ``_<prefix>_values`` (list, first appearance first), and
    for each ``name: flag`` in *flags* ``_<prefix>_<name>_new_events`` (events flagged),
    ``_<prefix>_<name>_new_count`` (distinct flagged values) and ``_<prefix>_<name>_new_values``.
    """
    v = pl.col(value)
    aggs = [v.drop_nulls().n_unique().cast(pl.Int64).alias(f"_{prefix}_distinct"),
            v.drop_nulls().unique(maintain_order=True).head(cap).alias(f"_{prefix}_values")]
    for name, flag in flags.items():
        new = v.filter(flag)
        aggs += [pl.col(flag).sum().cast(pl.Int64).alias(f"_{prefix}_{name}_new_events"),
                 new.n_unique().cast(pl.Int64).alias(f"_{prefix}_{name}_new_count"),
                 new.unique(maintain_order=True).head(cap).alias(f"_{prefix}_{name}_new_values")]
    return aggs


# How many events of everyone's habits an entity's own hour (weekday) histogram is blended with:
# with a short history, a never-seen hour is only as rare as it is for everyone (see rarity()).
RARITY_PRIOR_EVENTS: Final = 24.0
_UNITS: Final = {"hour": 24, "weekday": 7}


def units_present(prepared: pl.LazyFrame) -> pl.LazyFrame:
    """The hours and weekdays of each window's events, with how many of them lie in the baseline
    (``entity_id, window_start, hour, weekday, _n_in``): what :func:`rarity` reads of the events."""
    return prepared.group_by(*KEY, "hour", "weekday").agg(_n_in=pl.col("_in_base").sum().cast(pl.Int64))


def rarity(present: pl.LazyFrame, unit: str, histogram: pl.LazyFrame,
           prior: pl.LazyFrame | None = None, *, leave_window_out: bool = True) -> pl.LazyFrame:
    """How unusual the hours (or weekdays) of each window are against the entity's own history.

    For each hour present in the window, ``share`` is the fraction of the entity's baseline activity
    (outside this window) that fell in that hour, blended with everyone's habits (*prior*, the share
    of all baseline activity in each hour) as if the entity had :data:`RARITY_PRIOR_EVENTS` more
    events spread like everyone's; ``rarity = 1 - share / peak_share`` with ``peak_share`` the share
    of its busiest hour (also outside this window): 0 in the entity's usual peak hour, 1 in an hour
    neither it nor anyone is active. The blend matters for short baselines: after a few days most
    hours of the day are "never seen" for a person, and an hour never seen but common for everyone
    (14:00) must not look as rare as 03:00. With a long history the entity's own habits dominate.
    Normalizing by the peak (rather than ``1 - share``) keeps the scale comparable between a
    nine-to-five operator (peak share ~12 %) and a 24/7 service account (~4 %). The window reports
    its rarest hour.

    Parameters
    ----------
    present
        Output of :func:`units_present`.
    unit
        ``"hour"`` or ``"weekday"``.
    histogram
        Baseline activity, columns ``entity_id, <unit>, _b`` (events, and logged-on hours weighted
        as events: :func:`~detector.features.profiles.habit_histogram`).
    prior
        Everyone's share per unit, columns ``<unit>, _p`` (summing to 1) and ``_p_total`` (that sum),
        or None for no blending.
    leave_window_out
        Whether some events may lie in the baseline (:func:`touches_baseline`). Without any, nothing
        is left out, every window of an entity has the same shares, and they are computed once per
        entity instead of once per window.

    Returns
    -------
    pl.LazyFrame
        Keyed by ``entity_id, window_start`` with ``_rarity`` (null when no baseline is left after
        leaving the window out), ``_rarest`` (the rarest unit value) and ``_share`` (its blended share).
    """
    per_unit = present.group_by(*KEY, unit).agg(pl.col("_n_in").sum())
    # The shares are computed per group: a window, or an entity when no window holds baseline events.
    group = list(KEY) if leave_window_out else ["entity_id"]
    values = pl.LazyFrame({unit: list(range(1, 8) if unit == "weekday" else range(24))},
                          schema={unit: pl.Int8})
    prior = prior if prior is not None else values.with_columns(_p=pl.lit(0.0), _p_total=pl.lit(0.0))
    weight = RARITY_PRIOR_EVENTS
    # Every hour of each group's entity, so that the peak is taken over the whole (blended) day.
    dense = per_unit.select(*group).unique().join(values, how="cross")
    dense = (dense.join(per_unit, on=[*KEY, unit], how="left") if leave_window_out
             else dense.with_columns(_n_in=pl.lit(0, pl.Int64)))
    dense = (
        dense.join(histogram, on=["entity_id", unit], how="left")
        .join(prior, on=unit, how="left")
        .with_columns(_b_out=(pl.col("_b").fill_null(0) - pl.col("_n_in").fill_null(0)).clip(lower_bound=0),
                      _p=pl.col("_p").fill_null(0.0), _p_total=pl.col("_p_total").max().fill_null(0.0))
        # Sorted before summing: logged-on hours make the counts fractional, and a float sum's order
        # would make windows differ by an ulp from one run to the next (polars drops a sort() right
        # before a sum(), so the rows are sorted instead).
        .sort(*group, "_b_out")
        .with_columns(_total=pl.col("_b_out").sum().over(*group))
        .with_columns(_share=pl.when(pl.col("_total") > 0).then(
            (pl.col("_b_out") + weight * pl.col("_p")) / (pl.col("_total") + weight * pl.col("_p_total"))))
        .with_columns(_peak=pl.col("_share").max().over(*group))
        .with_columns(_rarity=pl.when(pl.col("_peak") > 0).then((1 - pl.col("_share") / pl.col("_peak")).clip(0.0, 1.0)))
    )
    rarest = pl.col("_rarity") == pl.col("_rarity").max()
    if leave_window_out:
        dense = dense.filter(pl.col("_n_in").is_not_null())
    else:
        dense = per_unit.select(*KEY, unit).join(dense.drop("_n_in"), on=["entity_id", unit], how="inner")
    return (
        dense
        # Sorted so that among equally rare hours the earliest is reported.
        .sort(unit)
        .group_by(*KEY)
        .agg(
            _rarity=pl.col("_rarity").max(),
            _rarest=pl.col(unit).filter(rarest).first(),
            _share=pl.col("_share").filter(rarest).first(),
        )
    )


def dormancy(frame: pl.LazyFrame, earlier: pl.DataFrame | None) -> pl.LazyFrame:
    """Add ``previous_activity`` and ``_dormancy_days`` (days from it to the window's first event).

    Previous activity is the latest of the entity's last event in an earlier window of *frame*,
    its last event in logs scanned before *frame*'s (*earlier*: ``entity_id, last_seen``, which a
    scan carries from one slice to the next), and its baseline ``_last_seen`` when that lies before
    this window. A baseline ``_last_seen`` at or after the window (training windows) says nothing
    about the time before it and is ignored. Without any earlier activity the dormancy is 0: there
    is nothing to have been dormant from, and cold start is reported by ``has_baseline``.

    *frame* comes sorted by entity and window (:func:`window_measures` of the builders is sorted
    right away, while it has the fewest columns, and every join after it keeps that order).
    """
    if earlier is not None:
        frame = frame.join(earlier.lazy().select("entity_id", _earlier="last_seen"), on="entity_id", how="left",
                           validate="m:1", maintain_order="left")
    else:
        frame = frame.with_columns(_earlier=pl.lit(None, UTC_US))
    # Sorted by entity and window (the order the rows end in), the previous window is the row
    # above when it is the same entity's; several times cheaper than a window function per entity.
    same_entity = pl.col("entity_id") == pl.col("entity_id").shift(1)
    previous_in_frame = pl.when(same_entity).then(pl.col("last_time").shift(1))
    before = [pl.when(pl.col(c) < pl.col("first_time")).then(pl.col(c)) for c in ("_last_seen", "_earlier")]
    return frame.with_columns(
        previous_activity=pl.max_horizontal(previous_in_frame, *before)).with_columns(
        _dormancy_days=((pl.col("first_time") - pl.col("previous_activity")).dt.total_microseconds()
                        / _MICROS_PER_DAY).fill_null(0.0).clip(lower_bound=0.0)
    )


def with_baseline(frame: pl.LazyFrame, config: FeatureConfig) -> pl.LazyFrame:
    """Add ``window_end``, ``baseline_events``, ``has_baseline`` and ``baseline_days``.

    *frame* carries the entity's profile columns ``_baseline_events`` and ``_active_days`` (null for
    an entity the profiles do not know) and the window's baseline-period event count ``_n_in``.
    """
    baseline_events = (pl.col("_baseline_events").fill_null(0) - pl.col("_n_in")).clip(lower_bound=0)
    return frame.with_columns(
        window_end=pl.col("window_start").dt.offset_by(config.window),
        baseline_events=baseline_events,
        has_baseline=baseline_events >= config.min_baseline_events,
    ).with_columns(
        # Days with activity, of the whole baseline (the window's own day is not left out).
        baseline_days=pl.when("has_baseline").then(pl.col("_active_days").cast(pl.Float64)).otherwise(0.0),
    )


def log1p(column: str) -> pl.Expr:
    """A count column (null meaning none) as ``log1p`` Float64."""
    return pl.col(column).fill_null(0).cast(pl.Float64).log1p()


def gated(expr: pl.Expr) -> pl.Expr:
    """*expr* where the row has a baseline, else 0.

    Features relative to the entity's own history are neutral without a history; ``has_baseline``
    tells scoring that they were not measured rather than found normal.
    """
    return pl.when("has_baseline").then(expr).otherwise(0.0)


def log_ratio(value: pl.Expr, baseline: pl.Expr) -> pl.Expr:
    """``log1p(value) - log1p(baseline)``: 0 at the baseline, symmetric, bounded for large counts."""
    return value.cast(pl.Float64).log1p() - baseline.cast(pl.Float64).log1p()


def finish(frame: pl.LazyFrame, kind: str, context: list[str], features: list[str],
           feature_exprs: dict[str, pl.Expr], leave_out: Sequence[str] = ()) -> pl.LazyFrame:
    """Compute the feature columns, fill them, and put the columns in their documented order, without
    the columns in *leave_out* (whose aggregations polars then skips).

    *frame* comes sorted by entity and window, the order :func:`dormancy` needs anyway; sorting the
    windows again cost a sixth of building them.
    """
    keys = ["entity_id", "window_start", "window_end", "event_count", "evidence"]
    kept = [pl.col(c) for c in [*keys, *context] if c not in leave_out]
    # fill_nan/fill_null: a feature must never be null or NaN, or the forest cannot use the row.
    numeric = [feature_exprs[name].cast(pl.Float64).fill_nan(0.0).fill_null(0.0).alias(name) for name in features]
    return frame.select(pl.lit(kind).alias("entity_kind"), *kept, *numeric)
