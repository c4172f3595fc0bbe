"""Vendor-access hunt: every session of the vendor's accounts or from the vendor's addresses.

The advisory's question: *when did the vendor's accounts touch our systems, from where, and what
did they do?* Events of vendor accounts (names or glob patterns) and events from vendor address
ranges (CIDRs) across VPN, jump host, Windows and HES logs are stitched into sessions: a VPN
connect runs until its disconnect, a logon until its logoff, and events of the same account that
follow within ``gap`` of what came before belong to the same session (VPN connect -> jump host ->
HES). An account seen connecting from a vendor range is followed through its VPN session even
where its later events come from internal addresses.

Called out: sessions mostly outside business hours, and VPN connections of a vendor account from
addresses outside the vendor ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Final

import polars as pl

from detector.errors import ConfigError
from detector.hunts.common import (
    EVIDENCE_CAP,
    TimeWindow,
    WeeklyWindow,
    as_lazy,
    check_zone,
    clusters,
    counted,
    describe_windows,
    distinct,
    evidence_agg,
    evidence_line,
    finish_table,
    hunt_findings,
    in_weekly_windows,
    match_networks,
    match_patterns,
    parse_networks,
    parse_windows,
    sentences,
    short_host,
    summary_lines,
    utc_text,
)

NAME: Final = "vendor-access"
DEFAULT_BUSINESS_HOURS: Final = ("Mon-Fri 07:00-18:00",)
OPENERS: Final = ("vpn_connect", "login_success")
CLOSERS: Final = ("vpn_disconnect", "logout")
DEVICE_CATEGORIES: Final = ("device_command", "firmware", "key_mgmt")

COLUMNS: Final = ("account", "first_seen", "last_seen", "duration_minutes", "path", "src_ips", "vendor_addresses",
                  "outside_addresses", "hosts", "actions", "devices", "failures", "off_hours_share", "matched_by")


def hunt_vendor_access(events: pl.DataFrame | pl.LazyFrame, *, accounts: Sequence[str] = (),
                       cidrs: Sequence[str] = (), since: datetime | date | str | None = None,
                       until: datetime | date | str | None = None,
                       business_hours: Sequence[str | WeeklyWindow] = DEFAULT_BUSINESS_HOURS, tz: str = "UTC",
                       gap: timedelta = timedelta(minutes=30), max_session: timedelta = timedelta(hours=12),
                       off_hours_threshold: float = 0.5, evidence_cap: int = EVIDENCE_CAP) -> pl.DataFrame:
    """Sessions of vendor accounts and vendor addresses, with what was done in them.

    Parameters
    ----------
    events
        Normalized events.
    accounts
        Vendor account names or glob patterns (``svc_vendor*``), matched case-insensitively.
    cidrs
        Vendor address ranges (IPv4/IPv6 CIDRs or single addresses).
    since, until
        Keep sessions that overlap this period (UTC; ``until`` exclusive).
    business_hours
        Weekly windows of business hours in local time; the rest of the week is off hours.
    tz
        IANA zone the business hours are written in.
    gap
        Silence that ends a session.
    max_session
        Longest a VPN connection or logon is followed to its disconnect or logoff.
    off_hours_threshold
        Share of a session's minutes off hours (0..1) from which it is called out.
    evidence_cap
        Most ``raw_file:raw_line`` entries kept per session (0 for all).

    Returns
    -------
    polars.DataFrame
        One row per session: ``account``, ``first_seen``, ``last_seen``, ``duration_minutes``,
        ``path`` (systems in order of first appearance, e.g. ``vpn:vpn01``, ``jumphost:JUMP01``,
        ``hes``), ``src_ips``, ``vendor_addresses``, ``outside_addresses``, ``hosts``,
        ``actions`` (``"on_demand_read (17)"``, most frequent first), ``devices``, ``failures``,
        ``off_hours_share``, ``matched_by`` (``account``, ``address``, ``session``), then the
        common columns. Called-out sessions first.

    Raises
    ------
    ConfigError
        Without any account or range, or for an invalid CIDR, window, zone or threshold.
    """
    if not any(a.strip() for a in accounts) and not cidrs:
        raise ConfigError("vendor-access needs the vendor's accounts (--account) or address ranges (--cidr)")
    if not 0.0 <= off_hours_threshold <= 1.0:
        raise ConfigError(f"the off-hours threshold is a share between 0 and 1, not {off_hours_threshold}")
    if gap <= timedelta(0) or max_session <= timedelta(0):
        raise ConfigError("the session gap and the longest session must be positive")
    networks = parse_networks(cidrs, what="--cidr")
    hours = parse_windows(business_hours)
    check_zone(tz)
    period = TimeWindow.of(since, until)

    lf = as_lazy(events)
    names = lf.select(pl.col("account").unique()).collect().to_series()
    vendor_names = match_patterns(names, accounts).get_column("name").unique().to_list()
    addresses = lf.select(pl.col("src_ip").unique()).collect().to_series()
    in_ranges = match_networks(addresses, networks).group_by("address").agg(pl.col("network").first())

    ev = (
        lf.with_row_index("_row")
        .join(in_ranges.lazy(), left_on="src_ip", right_on="address", how="left")
        .with_columns(
            _key=pl.coalesce("account", "src_ip"),
            _system=pl.col("source_system").cast(pl.String),
            _by_name=pl.col("account").is_in(vendor_names).fill_null(False),
            _by_addr=pl.col("network").is_not_null(),
        )
    )
    seeds = ev.filter(pl.col("_by_name") | pl.col("_by_addr"))
    closers = (ev.filter(pl.col("action").cast(pl.String).is_in(CLOSERS) & pl.col("_key").is_not_null())
               .select("_key", "_system", _close=pl.col("time")).sort("_close"))
    opened = (
        seeds.filter(pl.col("action").cast(pl.String).is_in(OPENERS) & pl.col("_key").is_not_null())
        .select("_row", "_key", "_system", "time", "account", "_by_name", "_by_addr").sort("time")
        .join_asof(closers, left_on="time", right_on="_close", by=["_key", "_system"], strategy="forward",
                   tolerance=max_session, check_sortedness=False)
    )
    # An account that connected from a vendor range: its other events during that connection.
    followed = (opened.filter(pl.col("_by_addr") & ~pl.col("_by_name") & pl.col("account").is_not_null())
                .select(_f_account="account", _f_start="time", _f_end=pl.coalesce("_close", "time")))
    extra = (ev.filter(~(pl.col("_by_name") | pl.col("_by_addr")) & pl.col("account").is_not_null())
             .join(followed, left_on="account", right_on="_f_account", how="inner")
             .filter(pl.col("time").is_between(pl.col("_f_start"), pl.col("_f_end")))
             .drop("_f_start", "_f_end").unique("_row"))
    vendor = (
        pl.concat([seeds, extra], how="vertical")
        .join(opened.select("_row", "_close"), on="_row", how="left")
        .with_columns(
            _end=pl.max_horizontal("time", pl.coalesce("_close", "time")),
            _matched=pl.when(pl.col("_by_name")).then(pl.lit("account"))
            .when(pl.col("_by_addr")).then(pl.lit("address")).otherwise(pl.lit("session")),
            _evidence=evidence_line(),
            _hop=pl.concat_str([pl.col("_system"), pl.lit(":"), short_host(_landing_host())],
                               ignore_nulls=False).fill_null(pl.col("_system")),
            _server=pl.when((pl.col("target_type") == "server") & (pl.col("_system") != "vpn"))
            .then(short_host("target_id")),
            _host=pl.when(pl.col("_system").is_in(["windows", "jumphost", "dms"])).then(short_host(_landing_host())),
        )
    )
    sessions = clusters(vendor, ["_key"], gap, start="time", end="_end", name="_session").sort(
        "_key", "_session", "time", "raw_file", "raw_line")
    keys = ["_key", "_session"]
    grouped = sessions.group_by(keys, maintain_order=True).agg(
        account=pl.col("account").drop_nulls().first(),
        first_seen=pl.col("time").min(),
        last_seen=pl.col("_end").max(),
        path=distinct("_hop"),
        src_ips=distinct("src_ip"),
        vendor_addresses=distinct(pl.col("src_ip").filter(pl.col("_by_addr"))),
        outside_addresses=distinct(pl.col("src_ip").filter((pl.col("_system") == "vpn") & ~pl.col("_by_addr")))
        if networks else pl.lit([], dtype=pl.List(pl.String)),
        _hosts=distinct("_host"),
        _servers=distinct("_server"),
        devices=distinct(pl.col("target_id").filter(pl.col("category").cast(pl.String).is_in(DEVICE_CATEGORIES))),
        failures=(pl.col("outcome") == "failure").sum().cast(pl.Int64),
        matched_by=distinct("_matched"),
        event_count=pl.len().cast(pl.Int64),
        evidence=evidence_agg(cap=evidence_cap),
    )
    actions = (sessions.group_by([*keys, "action"]).agg(n=pl.len())
               .sort([*keys, "n", "action"], descending=[False, False, True, False])
               .group_by(keys, maintain_order=True)
               .agg(actions=pl.concat_str([pl.col("action").cast(pl.String), pl.lit(" ("), pl.col("n").cast(pl.String),
                                           pl.lit(")")])))
    table = (grouped.join(actions, on=keys, how="left")
             .filter(period.overlaps("first_seen", "last_seen"))
             .with_columns(hosts=pl.concat_list("_hosts", "_servers").list.unique(maintain_order=True),
                           duration_minutes=((pl.col("last_seen") - pl.col("first_seen")).dt.total_milliseconds()
                                             / 60_000).round(1))
             .collect())
    table = table.join(_off_hours(table, hours, tz), on=keys, how="left")

    hours_text = describe_windows(hours, tz)
    ranges_text = ", ".join(str(n) for n in networks)
    reasons = sentences(
        pl.when(pl.col("off_hours_share") >= off_hours_threshold).then(pl.concat_str([
            (pl.col("off_hours_share") * 100).round(0).cast(pl.Int64).cast(pl.String),
            pl.lit("% of the session was outside business hours "), pl.lit(hours_text)])),
        pl.when(pl.col("outside_addresses").list.len() > 0).then(pl.concat_str([
            pl.lit("connected over the VPN from "), pl.col("outside_addresses").list.join(", "),
            pl.lit(", outside the vendor address ranges "), pl.lit(ranges_text)])),
    )
    who = pl.coalesce("account", "_key")
    description = pl.concat_str([
        who, pl.lit(": "), pl.col("path").list.join(" -> "), pl.lit(", "), utc_text("first_seen", "%Y-%m-%d %H:%M"),
        pl.lit(" to "), utc_text("last_seen", "%Y-%m-%d %H:%M"), pl.lit(" UTC ("),
        pl.col("duration_minutes").round(0).cast(pl.Int64).cast(pl.String), pl.lit(" min) from "),
        pl.col("src_ips").list.head(4).list.join(", "), pl.lit("; "), counted("event_count", "event"), pl.lit(": "),
        # Every action: the one that matters (a setting change, a firmware push) is often the rarest.
        pl.col("actions").list.join(", ")])
    table = table.with_columns(reasons=reasons).with_columns(
        called_out=pl.col("reasons").list.len() > 0,
        description=description,
    )
    return finish_table(table, COLUMNS, ["first_seen", "account"])


def _landing_host() -> pl.Expr:
    """The host a session hop lands on.

    A jump host's records often reach the SIEM through a syslog relay, whose name is then the
    record's ``host``; the jump host itself is the session's source host (CEF ``shost``) there. A
    VPN's own name is its host (else the address it terminates on); everything else logs on itself.
    """
    system = pl.col("_system")
    return (pl.when(system == "vpn").then(pl.coalesce("host", "target_id"))
            .when(system == "jumphost").then(pl.coalesce("src_host", "host"))
            .otherwise(pl.col("host")))


def _off_hours(sessions: pl.DataFrame, hours: Sequence[WeeklyWindow], tz: str) -> pl.DataFrame:
    """Share of each session's minutes outside *hours*, sampled each minute from its start (a session
    of one moment: 0 or 1)."""
    spans = pl.col("last_seen") > pl.col("first_seen")
    minutes = (sessions.select("_key", "_session", _t=pl.when(spans)
                               .then(pl.datetime_ranges("first_seen", "last_seen", "1m", closed="left"))
                               .otherwise(pl.concat_list("first_seen")))
               .explode("_t"))
    return (minutes.group_by("_key", "_session")
            .agg(off_hours_share=(1.0 - in_weekly_windows("_t", hours, tz).cast(pl.Float64).mean()).round(3)))


def to_findings(table: pl.DataFrame, severity: str = "high", *, called_out_only: bool = True) -> pl.DataFrame:
    """Vendor sessions as findings: the account is the entity (the address when no account is known)."""
    has_account = pl.col("account").is_not_null()
    entity = pl.coalesce("account", pl.col("src_ips").list.first())
    return hunt_findings(table, detector=NAME, severity=severity,
                         entity_kind=pl.when(has_account).then(pl.lit("account")).otherwise(pl.lit("device")),
                         entity_id=entity,
                         key=pl.concat_str([entity, utc_text("first_seen", "%Y-%m-%dT%H:%M:%S%.f")]),
                         called_out_only=called_out_only)


def summary(table: pl.DataFrame) -> list[str]:
    """The vendor sessions for the terminal, each with every action (never cut: the rarest one, a
    setting change or a firmware push, is often the one that matters)."""
    return summary_lines(NAME, table, noun="sessions", width=100_000)
