"""Interactive logon sessions, and the hours they cover that the logs say nothing about.

Windows logs a person's interactive logon (4624, logon type 2, 10 or 11) and the logoff (4634/4647)
hours later, and little or nothing in between that a collector keeps. Hour habits read from event
times alone then hold a night-shift worker's 21:00 logon and 06:00 logoff and none of the hours
between, so the worker's 02:00 looks never seen. This module gives the hours a person was logged on
without logging anything (*idle logged-on hours*), which the hour habits count as active
(:mod:`detector.features.profiles`, ``account_session_hours``).

A session runs from an interactive logon to the next logoff of that account on that host; when
another logon of the account on the host, or :data:`SESSION_HOURS`, comes first, it runs to the
account's last event on the host before then. Everything is counted in clock hours (UTC hour
slots): a session covers the slots from its logon's to its end's, at most :data:`SESSION_HOURS` after
the logon's. An idle logged-on hour is a covered slot in which the account logged no event at all
(on any host); each is counted once, however many sessions cover it.

Both inputs are kept in forms that merge by concatenation (:func:`session_marks`, :func:`presence`),
so that profiles built a slice at a time (:mod:`detector.features.partial`) see sessions that cross
a slice boundary as one. Without interactive logons (a utility whose logs are HES and DMS only)
there are no sessions and nothing changes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import polars as pl

from detector.features.common import entity_of
from detector.features.config import FeatureConfig
from detector.schema import UTC_US, detail

# Accounts that stand for the machine itself.
MACHINE_ACCOUNTS: Final = ("system", "local service", "network service", "localsystem", "anonymous logon")
INTERACTIVE_LOGON_TYPES: Final = ("2", "10", "11")
# How long a session is assumed to last at most (also how long attribution keeps one open).
SESSION_HOURS: Final = 12

MARKS: Final = pl.Schema({"account": pl.String(), "host": pl.String(), "time": UTC_US, "logon": pl.Boolean()})
PRESENCE: Final = pl.Schema({"account": pl.String(), "host": pl.String(), "slot": UTC_US})

_SLOT: Final = "1h"


def is_machine(account: pl.Expr) -> pl.Expr:
    """Whether an account names the machine rather than a person (``NAME$``, ``SYSTEM``...)."""
    return account.str.ends_with("$") | account.is_in(MACHINE_ACCOUNTS)


def logon_type() -> pl.Expr:
    """Each event's Windows logon type (``details`` key ``logon_type``, else read from the message), or null."""
    return pl.coalesce(detail("logon_type"), pl.col("message").str.extract(r"LogonType (\d+)", 1))


def is_interactive_logon() -> pl.Expr:
    """Interactive logons of people (4624 of logon type 2, 10 or 11 by an account that is not the machine's)."""
    return ((pl.col("action") == "login_success") & pl.col("host").is_not_null() & pl.col("account").is_not_null()
            & ~is_machine(pl.col("account")) & logon_type().is_in(INTERACTIVE_LOGON_TYPES))


def session_marks(events: pl.LazyFrame) -> pl.LazyFrame:
    """Where sessions start and end (:data:`MARKS`): interactive logons, and logoffs of people that
    are not of a non-interactive logon type (a logoff without a type, 4647, may end a session)."""
    kind = logon_type()
    logoff = ((pl.col("action") == "logout") & pl.col("host").is_not_null() & pl.col("account").is_not_null()
              & ~is_machine(pl.col("account")) & (kind.is_null() | kind.is_in(INTERACTIVE_LOGON_TYPES)))
    return (events.filter(is_interactive_logon() | logoff)
            .select("account", "host", "time", logon=pl.col("action") == "login_success")
            .cast(MARKS))


def presence(events: pl.LazyFrame) -> pl.LazyFrame:
    """The clock hours in which each account logged an event, per host (:data:`PRESENCE`, host may be null)."""
    return (events.select(account=entity_of("account"), host=pl.col("host"), slot=pl.col("time").dt.truncate(_SLOT))
            .filter(pl.col("account").is_not_null()).unique()
            .cast(PRESENCE))


def active_hours(present: pl.LazyFrame) -> pl.LazyFrame:
    """Per account, the number of clock hours in which it logged an event (``account, active_hours``)."""
    return present.group_by("account").agg(active_hours=pl.col("slot").n_unique().cast(pl.Int64))


def idle_session_hours(marks: pl.LazyFrame, present: pl.LazyFrame, config: FeatureConfig) -> pl.LazyFrame:
    """Per account, local weekday and hour (as ``account_hours``), how many clock hours it was logged
    on interactively without logging anything (``account, weekday, hour, hours``).

    *marks* and *present* are :func:`session_marks` and :func:`presence` of the same events (or
    concatenations of theirs over consecutive parts of them).
    """
    cap = timedelta(hours=SESSION_HOURS)
    one = timedelta(hours=1)
    slot = pl.col("time").dt.truncate(_SLOT)
    # Each logon and the mark after it on the same account and host; a logoff sorts before a logon at the same time.
    sessions = (marks.sort("account", "host", "time", "logon")
                .with_columns(_next=pl.col("time").shift(-1).over("account", "host"),
                              _next_logon=pl.col("logon").shift(-1).over("account", "host"))
                .filter(pl.col("logon"))
                .select("account", "host", _start=slot, _cap=slot + cap,
                        _next_slot=pl.col("_next").dt.truncate(_SLOT), _next_logon=pl.col("_next_logon")))
    logged_off = (~pl.col("_next_logon")) & (pl.col("_next_slot") <= pl.col("_cap"))
    # Without its logoff in time, a session lasts to the account's last event on the host before the
    # next logon there (in the slots before that logon's), at most SESSION_HOURS.
    limit = pl.when(pl.col("_next_logon").fill_null(False)).then(
        pl.min_horizontal(pl.col("_cap"), pl.col("_next_slot") - one)).otherwise(pl.col("_cap"))
    on_host = present.filter(pl.col("host").is_not_null()).select("account", "host", _limit="slot", _last="slot")
    ends = (sessions.with_columns(_limit=limit, _logged_off=logged_off.fill_null(False)).sort("_limit")
            .join_asof(on_host.sort("_limit"), on="_limit", by=["account", "host"], strategy="backward",
                       check_sortedness=False)
            .with_columns(_end=pl.when(pl.col("_logged_off")).then(pl.col("_next_slot"))
                          .otherwise(pl.max_horizontal("_start", pl.col("_last").fill_null(pl.col("_start"))))))
    covered = (ends.select("account", slot=pl.datetime_ranges("_start", "_end", _SLOT, time_zone="UTC"))
               .explode("slot").drop_nulls("slot").unique())
    busy = present.select("account", "slot").unique()
    local = pl.col("slot")
    if config.timezone != "UTC":
        local = local.dt.convert_time_zone(config.timezone)
    return (covered.join(busy, on=["account", "slot"], how="anti")
            .group_by("account", weekday=local.dt.weekday().cast(pl.Int8), hour=local.dt.hour().cast(pl.Int8))
            .agg(hours=pl.len().cast(pl.Int64)))
