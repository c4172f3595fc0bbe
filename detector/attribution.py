"""Attribution: events a machine logged on its own behalf, given to the person logged on there.

Windows logs removable-media events (6416), process, service and task events and Sysmon's sensor
events under the machine account (``PC-1234$``), ``SYSTEM`` or no account at all, although a person
at the keyboard caused them. Scored against the machine account, a user's first thumb drive is
noise in a machine's busy hour; scored against the user, it is a first. So such an event gets an
``attributed_account``: the interactive user logged on at that host at that time.

* By **logon id** where the event carries one (``details`` key ``logon_id``) that matches the
  ``target_logon_id`` of an interactive logon (4624, logon type 2, 10 or 11) on the same host;
* else the **latest interactive logon** on that host at most :data:`SESSION_HOURS` before the event
  (logoffs are not matched: a session that ended is rarely followed by machine activity that a new
  session would not also explain).

The original ``account`` is kept; :func:`detector.features.entity_of` reads ``attributed_account``
first, so the user's windows see the events. A scan carries the open sessions from one slice of
logs to the next (:func:`attribute` returns them).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import polars as pl

from detector.features.sessions import (
    INTERACTIVE_LOGON_TYPES,
    MACHINE_ACCOUNTS,
    SESSION_HOURS,
    is_interactive_logon,
    is_machine,
)
from detector.schema import UTC_US, detail

# Actions a person's session causes but the machine logs.
ATTRIBUTABLE: Final = (
    "removable_media", "process_created", "file_created", "network_connection", "registry_set",
    "service_installed", "service_config_changed", "task_created", "task_modified",
    # Windows writes some of these without a user (a 104 for a cleared channel often has none).
    "log_cleared", "audit_policy_changed",
)
__all__ = ["ATTRIBUTABLE", "INTERACTIVE_LOGON_TYPES", "MACHINE_ACCOUNTS", "SESSIONS", "SESSION_HOURS", "attribute",
           "interactive_logons", "is_machine"]

SESSIONS: Final = pl.Schema({"host": pl.String(), "time": UTC_US, "user": pl.String(), "logon_id": pl.String()})


def interactive_logons(events: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Interactive logons of people, as sessions (:data:`SESSIONS`)."""
    logins = events.lazy().filter(pl.col("action") == "login_success")
    if isinstance(events, pl.DataFrame):
        # Logins first, by the action's Enum (collected apart: polars would fuse the two filters): the
        # logon type, read from details or the message, is then looked for in logins only.
        logins = logins.collect().lazy()
    return (logins
            .filter(is_interactive_logon())
            .select("host", "time", pl.col("account").alias("user"),
                    pl.coalesce(detail("target_logon_id"), detail("logon_id")).str.to_lowercase().alias("logon_id"))
            .cast(SESSIONS))


def attribute(events: pl.DataFrame, earlier: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """*events* with ``attributed_account`` filled where a machine acted for a person, and the
    sessions to carry to the next slice.

    Parameters
    ----------
    events
        Events in the normalized schema, any order.
    earlier
        Sessions carried from logs before *events* (as returned by an earlier call), or None.
    """
    sessions = pl.concat([earlier.lazy() if earlier is not None else pl.LazyFrame(schema=SESSIONS),
                          interactive_logons(events)]).collect()
    needs = (pl.col("action").is_in(ATTRIBUTABLE) & pl.col("host").is_not_null()
             & pl.col("attributed_account").is_null()
             & (pl.col("account").is_null() | is_machine(pl.col("account"))))
    carried = _recent(sessions, events)
    if sessions.height == 0:
        return events, carried
    # The actions first (the Enum, no strings built): the account checks then read those events only.
    todo = (events.lazy().select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"), "action", "host", "time",
                                 "account", "attributed_account", "details")
            .filter(pl.col("action").is_in(ATTRIBUTABLE)).collect().filter(needs)
            .select("_row", "host", "time", detail("logon_id").str.to_lowercase().alias("logon_id")))
    if todo.height == 0:
        return events, carried
    indexed = events.with_row_index("_row")
    by_id = (todo.drop_nulls("logon_id")
             .join(sessions.drop_nulls("logon_id").group_by("host", "logon_id").agg(pl.col("user").last()),
                   on=["host", "logon_id"], how="inner")
             .select("_row", "user"))
    by_time = (todo.sort("time")
               .join_asof(sessions.sort("time").select("host", "time", "user", _start="time"), on="time", by="host",
                          strategy="backward", tolerance=timedelta(hours=SESSION_HOURS), check_sortedness=False)
               .filter(pl.col("user").is_not_null()).select("_row", "user"))
    found = pl.concat([by_id, by_time]).unique("_row", keep="first", maintain_order=True)
    if found.height == 0:
        return events, carried
    out = (indexed.join(found, on="_row", how="left")
           .with_columns(attributed_account=pl.coalesce("attributed_account", "user"))
           .drop("_row", "user"))
    return out.select(events.columns), carried


def _recent(sessions: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The sessions that may still be open after *events*: those started in their last SESSION_HOURS."""
    if sessions.height == 0 or events.height == 0:
        return sessions.clear()
    end = events.get_column("time").max()
    return sessions.filter(pl.col("time") > pl.lit(end, UTC_US) - timedelta(hours=SESSION_HOURS))
